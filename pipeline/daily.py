"""botify-daily: one day's pipeline run, for cron on a cluster gateway.

    botify-daily [--date YYYY-MM-DD] [--master yarn] [--from-step S] [--only S ...] [--set key=value ...]

Steps (``daily.steps`` in conf/pipeline.yml): upload botify's completed logs,
stage_events (the uploaded logs parsed once into Parquet by date, the dates
they hold replaced), extract_interactions and analyze_ab on the staged events,
train_multidae, infer_recommendations, and botify reload. Every output is named after the date, so a re-run for the same
date replaces that day's outputs instead of duplicating them. A lock file
keeps two runs from overlapping; each step writes its own log; the first
failing step stops the run with a non-zero exit.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from common.config import add_config_arguments, load_config
from pipeline import processes
from pipeline.processes import REPO, StepFailed, command

log = logging.getLogger("daily")

STEPS = ("upload", "stage_events", "extract_interactions", "train_multidae", "infer_recommendations", "analyze_ab", "reload")


def step_commands(config: dict, date: str, master: str, overrides: List[str]) -> Dict[str, List[str]]:
    """The argv of each step for ``date`` (pure: tested without running anything)."""
    daily = config["daily"]
    sets: List[str] = []
    for item in overrides:
        sets += ["--set", item]
    submit = [str(REPO / "spark-submit.sh")]
    master_args = ["--master", master]
    staged = f"events/{daily['dataset']}"
    return {
        "upload": [command("botify-upload"), daily["dataset"], "--log-dir", daily["botify_log_dir"],
                   "--no-progress", *sets],
        "stage_events": [*submit, "stage_events", *master_args, "--run", date, "--input", f"logs/{daily['dataset']}",
                         "--dataset", daily["dataset"], *sets],
        "extract_interactions": [*submit, "extract_interactions", *master_args, "--run", date, "--input", staged, *sets],
        "train_multidae": [*submit, "train_multidae", *master_args, "--interactions", date, "--version", date, *sets],
        "infer_recommendations": [*submit, "infer_recommendations", *master_args, "--model-version", date,
                                  "--version", date, *sets],
        "analyze_ab": [*submit, "analyze_ab", *master_args, "--experiment", daily["experiment"],
                       "--control", daily["control"], "--input", staged, "--run", date, *sets],
        "reload": [command("botify"), "reload", "--url", daily["botify_url"], "--version", date],
    }


class Lock:
    """An exclusive, non-blocking lock: a second run while one is active exits at once."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise StepFailed(f"another daily run holds {self.path}; not starting a second one")
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"{os.getpid()}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="botify-daily", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--date", default=(dt.datetime.now(dt.timezone.utc).date()).isoformat(),
                        help="the day to run (default: today, UTC); outputs are named after it")
    parser.add_argument("--master", help="Spark master (default: daily.master)")
    parser.add_argument("--from-step", choices=STEPS, help="skip the steps before this one (resume after a failure)")
    parser.add_argument("--only", choices=STEPS, action="append", help="run only these steps (repeatable)")
    args = parser.parse_args(argv)
    try:
        dt.date.fromisoformat(args.date)
    except ValueError:
        parser.error(f"--date {args.date!r} is not YYYY-MM-DD")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    daily = config["daily"]
    master = args.master or daily["master"]
    selected = [s for s in daily["steps"] if s in STEPS]
    if args.from_step:
        selected = selected[selected.index(args.from_step):] if args.from_step in selected else []
    if args.only:
        selected = [s for s in selected if s in args.only]
    commands = step_commands(config, args.date, master, args.overrides)
    log_dir = Path(daily["log_dir"]) / args.date
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with Lock(Path(daily["lock_file"])):
            for name in selected:
                start = time.monotonic()
                log.info("step %s (log: %s)", name, log_dir / f"{name}.log")
                processes.run(commands[name], log_file=log_dir / f"{name}.log", cwd=REPO)
                log.info("step %s done in %.0fs", name, time.monotonic() - start)
    except StepFailed as exc:
        log.error("daily run %s stopped: %s", args.date, exc)
        return 1
    log.info("daily run %s complete: %s", args.date, ", ".join(selected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
