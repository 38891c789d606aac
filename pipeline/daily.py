"""botify-daily: one day's pipeline run, for cron on a cluster gateway.

    botify-daily [--date YYYY-MM-DD] [--master yarn] [--profile P] [--from-step S] [--only S ...] [--set key=value ...]

Steps (``daily.steps`` in conf/pipeline.yml): upload botify's completed logs,
stage_events (the uploaded logs parsed once into Parquet by date, the dates
they hold replaced), extract_interactions and analyze_ab on the staged events,
train_multidae, infer_recommendations, and botify reload. Every output is named after the date, so a re-run for the same
date replaces that day's outputs instead of duplicating them. A lock file
keeps two runs from overlapping; each step writes its own log; the first
failing step stops the run with a non-zero exit naming it. At the end the
night is printed as one table from the steps' run records
(``<root>/runs/<job>/<start>-daily-<date>.json``, common.run_record); a step
skipped by ``--from-step`` shows the record of its last run for the date.
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

from common import run_record
from common.config import add_config_arguments, load_config
from common.storage import FsspecStorage, to_uri
from pipeline import processes
from pipeline.processes import REPO, StepFailed, command

log = logging.getLogger("daily")

STEPS = ("upload", "stage_events", "extract_interactions", "train_multidae", "infer_recommendations", "analyze_ab", "reload")


def step_commands(config: dict, date: str, master: str, overrides: List[str],
                  record_id: Optional[str] = None, profile: Optional[str] = None) -> Dict[str, List[str]]:
    """The argv of each step for ``date`` (pure: tested without running anything); Spark steps name their
    run record ``record_id``."""
    daily = config["daily"]
    sets: List[str] = []
    for item in overrides:
        sets += ["--set", item]
    submit = [str(REPO / "spark-submit.sh")]
    master_args = ["--master", master, *(["--profile", profile] if profile else [])]
    staged = f"events/{daily['dataset']}"
    record = ["--record-id", record_id] if record_id else []
    commands = {
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
    return {name: argv + record if argv[0] == submit[0] else argv for name, argv in commands.items()}


def spark_job(argv: Sequence[str]) -> Optional[str]:
    """The job a step's command submits (None for a step that is not a Spark job)."""
    return argv[1] if Path(argv[0]).name == "spark-submit.sh" else None


# ---- the night's table ----------------------------------------------------------------------

COLUMNS = ("step", "status", "seconds", "rows read", "rows written", "quarantined", "run record")


def _rows(entries: Sequence[dict]) -> str:
    counted = [e["rows"] for e in entries if e.get("rows") is not None]
    return f"{sum(counted):,}" if counted else "-"


def night_row(step: str, ran: Optional[dict], record: Optional[dict]) -> dict:
    """One step's line: how its process ended in this run (``ran``), and what its run record says.

    A failed step's error is its job's own (the record's) when there is one; a
    record still ``running`` after its process failed means the driver was
    stopped before it could write its end (a killed application).
    """
    if ran is not None:
        status, seconds, error = ran["status"], ran["seconds"], ran.get("error")
        if status == run_record.FAILED and record is not None:
            error = record.get("error") or (f"{error} (record left running: the driver was stopped)"
                                            if record["status"] == run_record.RUNNING else error)
    elif record is not None:
        status, seconds, error = f"{record['status']} (earlier run)", record.get("seconds"), record.get("error")
    else:
        status, seconds, error = "not run", None, None
    return {"step": step, "status": status, "error": error,
            "seconds": "-" if seconds is None else f"{seconds:.0f}",
            "rows read": _rows(record["inputs"]) if record else "-",
            "rows written": _rows(record["outputs"]) if record else "-",
            "quarantined": f"{sum(record['quarantined'].values()):,}" if record else "-",
            "run record": f"{record['job']}/{record['run_id']}.json" if record else "-"}


def render_night(date: str, rows: Sequence[dict]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    numeric = COLUMNS[2:-1]

    def line(values: dict) -> str:
        cells = [str(values[c]).rjust(widths[c]) if c in numeric else str(values[c]).ljust(widths[c]) for c in COLUMNS]
        return "  ".join(cells).rstrip()

    out = [f"botify-daily {date}", line({c: c for c in COLUMNS}), *(line(r) for r in rows)]
    out += [f"  {r['step']}: {r['error']}" for r in rows if r["error"] and r["status"].startswith(run_record.FAILED)]
    return "\n".join(out) + "\n"


def night_records(config: dict, commands: Dict[str, List[str]], date: str, night: str, ran: Dict[str, dict]) -> Dict[str, dict]:
    """Each Spark step's record: this run's own (``night``) for the steps it ran, the date's latest for the others."""
    root = to_uri(config["storage"]["root"], base=str(REPO))  # the steps run in REPO: relative roots are its
    storage, found = FsspecStorage(), {}
    for step, argv in commands.items():
        job = spark_job(argv)
        if job is None:
            continue
        try:
            if step in ran:
                uri = run_record.record_uri(root, job, night)
                found[step] = run_record.load(storage, uri) if storage.exists(uri) else None
            else:
                earlier = run_record.find(storage, root, job, f"-daily-{date}")
                found[step] = run_record.load(storage, earlier[-1]) if earlier else None
        except (OSError, ValueError, ImportError) as exc:  # the table is a report: it must not fail the night
            log.warning("run record of %s not read: %s", step, exc)
    return found


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
    parser.add_argument("--profile", help="Spark profile in conf/spark/ for the jobs (default: from the master)")
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
    night = run_record.new_id(f"daily-{args.date}")
    commands = step_commands(config, args.date, master, args.overrides, night, args.profile)
    log_dir = Path(daily["log_dir"]) / args.date
    log_dir.mkdir(parents=True, exist_ok=True)
    ran: Dict[str, dict] = {}
    try:
        with Lock(Path(daily["lock_file"])):
            for name in selected:
                start = time.monotonic()
                log.info("step %s (log: %s)", name, log_dir / f"{name}.log")
                try:
                    processes.run(commands[name], log_file=log_dir / f"{name}.log", cwd=REPO)
                except StepFailed as exc:
                    ran[name] = {"status": run_record.FAILED, "seconds": time.monotonic() - start, "error": str(exc)}
                    break
                ran[name] = {"status": run_record.SUCCEEDED, "seconds": time.monotonic() - start}
                log.info("step %s done in %.0fs", name, ran[name]["seconds"])
    except StepFailed as exc:  # the lock
        log.error("daily run %s not started: %s", args.date, exc)
        return 1
    records = night_records(config, commands, args.date, night, ran)
    rows = [night_row(step, ran.get(step), records.get(step)) for step in daily["steps"] if step in STEPS]
    print(render_night(args.date, rows), end="", flush=True)
    failed = next((row for row in rows if row["step"] in ran and ran[row["step"]]["status"] == run_record.FAILED), None)
    if failed:
        log.error("daily run %s failed at step %s: %s", args.date, failed["step"], failed["error"])
        return 1
    log.info("daily run %s complete: %s", args.date, ", ".join(selected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
