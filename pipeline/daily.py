"""botify-daily: one night's pipeline run for a date, or a backfill of a range of dates, for cron.

    botify-daily [--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD] [--master yarn] [--profile P]
                 [--from-step S] [--only S ...] [--dry-run] [--set key=value ...]

Steps (``daily.steps`` in conf/pipeline.yml): upload botify's completed logs,
stage_events (only the files not staged before; the dates they touch merged),
extract_interactions over the training window (the ``daily.train_window_days``
days up to the date), train_multidae, infer_recommendations, analyze_ab over
the experiment's window with tonight's sequential look, botify reload, and
retention (``--dry-run``: plan only). Every output is named after the date and
every read ends at it, so a night gives the same outputs whenever it runs: a
re-run replaces that day's outputs, and ``--from D1 --to D2`` runs each date in
order as its own night. A backfill remembers the dates done and the step that
failed (``<log_dir>/backfill-D1_D2.json``), so the same command resumes there.
While serving is held (``botify hold``, ``botify rollback``) the jobs move no
pointer and the reload step is skipped ("held"). A lock file keeps two runs
from overlapping; each step writes its own log; the first failing step stops
the run with a non-zero exit naming it. Each night is printed as one table
from the steps' run records (``<root>/runs/<job>/<start>-daily-<date>.json``,
common.run_record); a step skipped by ``--from-step`` shows the record of its
last run for the date.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from common import run_record, serving_control
from common.config import add_config_arguments, load_config
from common.event_log_reader import STAGED_MANIFEST
from common.storage import FsspecStorage, join, to_uri
from pipeline import night_metrics, processes
from pipeline.processes import PYTHON, REPO, StepFailed, command

log = logging.getLogger("daily")

STEPS = ("upload", "stage_events", "extract_interactions", "train_multidae", "infer_recommendations", "analyze_ab",
         "reload", "retention")
HELD = "held"


def train_window(date: str, days: Optional[int]) -> List[str]:
    """--from-date/--to-date of the training window ending on ``date`` (everything up to it without ``days``)."""
    if not days:
        return ["--to-date", date]
    first = dt.date.fromisoformat(date) - dt.timedelta(days=int(days) - 1)
    return ["--from-date", first.isoformat(), "--to-date", date]


def step_commands(config: dict, date: str, master: str, overrides: List[str],
                  record_id: Optional[str] = None, profile: Optional[str] = None,
                  dry_run: bool = False) -> Dict[str, List[str]]:
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
        "extract_interactions": [*submit, "extract_interactions", *master_args, "--run", date, "--input", staged,
                                 *train_window(date, daily.get("train_window_days")), *sets],
        "train_multidae": [*submit, "train_multidae", *master_args, "--interactions", date, "--version", date, *sets],
        "infer_recommendations": [*submit, "infer_recommendations", *master_args, "--model-version", date,
                                  "--version", date, *sets],
        "analyze_ab": [*submit, "analyze_ab", *master_args, "--experiment", daily["experiment"],
                       "--control", daily["control"], "--input", staged, "--run", date, "--to-date", date, *sets],
        "reload": [command("botify"), "reload", "--url", daily["botify_url"], "--version", date],
        "retention": [PYTHON, "-m", "pipeline.retention", "--date", date, *(["--dry-run"] if dry_run else []), *sets],
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


def held_row(step: str, hold: dict) -> dict:
    return {"step": step, "status": HELD, "error": None, "seconds": "-", "rows read": "-", "rows written": "-",
            "quarantined": "-", "run record": f"hold since {hold.get('since')}: {hold.get('reason')}"}


def retention_table(log_file: Path, date: str, ran: bool) -> str:
    """The retention step's own table (what it deleted or would, per kind), from its log, for the night's."""
    if not ran or not log_file.exists():
        return ""
    text = log_file.read_text(errors="replace")
    at = text.rfind(f"retention {date}")
    return "" if at < 0 else text[at:].rstrip("\n") + "\n"


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
    parser.add_argument("--date", help="the day to run (default: today, UTC); outputs are named after it")
    parser.add_argument("--from", dest="from_date", help="backfill: the first date of a range run night by night")
    parser.add_argument("--to", dest="to_date", help="backfill: the last date of the range (inclusive)")
    parser.add_argument("--master", help="Spark master (default: daily.master)")
    parser.add_argument("--profile", help="Spark profile in conf/spark/ for the jobs (default: from the master)")
    parser.add_argument("--from-step", choices=STEPS, help="skip the steps before this one (resume after a failure)")
    parser.add_argument("--only", choices=STEPS, action="append", help="run only these steps (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="the retention step plans and deletes nothing")
    args = parser.parse_args(argv)
    if args.date and (args.from_date or args.to_date):
        parser.error("--date runs one night; --from/--to a range: not both")
    if bool(args.from_date) != bool(args.to_date):
        parser.error("a backfill needs both --from and --to")
    for flag, value in (("--date", args.date), ("--from", args.from_date), ("--to", args.to_date)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                parser.error(f"{flag} {value!r} is not YYYY-MM-DD")
    if args.from_date and args.from_date > args.to_date:
        parser.error(f"--from {args.from_date} is after --to {args.to_date}")
    return args


def nights(args: argparse.Namespace, today: dt.date) -> List[str]:
    if not args.from_date:
        return [args.date or today.isoformat()]
    first, last = dt.date.fromisoformat(args.from_date), dt.date.fromisoformat(args.to_date)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def first_staged_date(config: dict) -> Optional[str]:
    """The first date the dataset holds, from its staging manifest (None before anything was staged)."""
    uri = join(to_uri(config["storage"]["root"], base=str(REPO)), "events", config["daily"]["dataset"],
               STAGED_MANIFEST)
    storage = FsspecStorage()
    try:
        dates = json.loads(storage.read_text(uri))["dates"] if storage.exists(uri) else {}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("could not read %s: %s", uri, exc)
        return None
    return min(dates) if dates else None


def refused_dates(first: str, last: str, today: dt.date, first_staged: Optional[str]) -> Optional[str]:
    """Why the nights ``first``..``last`` cannot run: one in the future, or one before the first staged log."""
    if last > today.isoformat():
        future = max(dt.date.fromisoformat(first), today + dt.timedelta(days=1)).isoformat()
        return f"{future} is in the future (today is {today.isoformat()} UTC): its logs do not exist yet"
    if first_staged and first < first_staged:
        return f"{first} is before the first staged log ({first_staged}): nothing to run it on"
    return None


class Backfill:
    """What a backfill has done, kept in the log folder so that the same command resumes where it failed."""

    def __init__(self, log_dir: Path, dates: Sequence[str]):
        self.path = log_dir / f"backfill-{dates[0]}_{dates[-1]}.json" if len(dates) > 1 else None
        self.state = json.loads(self.path.read_text()) if self.path and self.path.exists() else {"done": [],
                                                                                                   "failed": None}

    def resume_step(self, date: str) -> Optional[str]:
        failed = self.state["failed"]
        return failed["step"] if failed and failed["date"] == date else None

    def save(self, date: str, failed_step: Optional[str]) -> None:
        if self.path is None:
            return
        if failed_step:
            self.state["failed"] = {"date": date, "step": failed_step}
        else:
            self.state["done"] = sorted(set(self.state["done"]) | {date})
            self.state["failed"] = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.state, indent=2))


def serving_hold(config: dict) -> Optional[dict]:
    root = to_uri(config["storage"]["root"], base=str(REPO))
    try:
        return serving_control.held(FsspecStorage(), join(root, "recommendations"))
    except (OSError, ValueError) as exc:  # unreadable: assume held, never reload over an operator's decision
        return {"since": "?", "reason": f"hold marker unreadable ({exc})"}


def run_night(config: dict, args: argparse.Namespace, date: str, master: str, from_step: Optional[str]) -> tuple:
    """One night: its steps in order until one fails; (exit code, failed step or None)."""
    daily = config["daily"]
    selected = [s for s in daily["steps"] if s in STEPS]
    if from_step:
        selected = selected[selected.index(from_step):] if from_step in selected else []
    if args.only:
        selected = [s for s in selected if s in args.only]
    night = run_record.new_id(f"daily-{date}")
    commands = step_commands(config, date, master, args.overrides, night, args.profile, args.dry_run)
    log_dir = Path(daily["log_dir"]) / date
    log_dir.mkdir(parents=True, exist_ok=True)
    ran: Dict[str, dict] = {}
    held: Dict[str, dict] = {}
    for name in selected:
        hold = serving_hold(config) if name == "reload" else None
        if hold is not None:
            log.warning("step reload skipped: serving is held since %s (%s)", hold.get("since"), hold.get("reason"))
            held[name] = hold
            continue
        start = time.monotonic()
        log.info("%s step %s (log: %s)", date, name, log_dir / f"{name}.log")
        try:
            processes.run(commands[name], log_file=log_dir / f"{name}.log", cwd=REPO)
        except StepFailed as exc:
            ran[name] = {"status": run_record.FAILED, "seconds": time.monotonic() - start, "error": str(exc)}
            break
        ran[name] = {"status": run_record.SUCCEEDED, "seconds": time.monotonic() - start}
        log.info("step %s done in %.0fs", name, ran[name]["seconds"])
    records = night_records(config, commands, date, night, ran)
    rows = [held_row(step, held[step]) if step in held else night_row(step, ran.get(step), records.get(step))
            for step in daily["steps"] if step in STEPS]
    print(render_night(date, rows) + retention_table(log_dir / "retention.log", date, "retention" in ran),
          end="", flush=True)
    if daily.get("metrics_textfile") and not args.dry_run:
        try:
            night_metrics.write_textfile(daily["metrics_textfile"], date, rows)
        except (OSError, ValueError) as exc:  # a report: it must not fail the night
            log.warning("nightly metrics not written to %s: %s", daily["metrics_textfile"], exc)
    failed = next((row for row in rows if row["step"] in ran and ran[row["step"]]["status"] == run_record.FAILED), None)
    if failed:
        log.error("daily run %s failed at step %s: %s", date, failed["step"], failed["error"])
        return 1, failed["step"]
    log.info("daily run %s complete: %s", date, ", ".join(selected))
    return 0, None


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    master = args.master or config["daily"]["master"]
    today = dt.datetime.now(dt.timezone.utc).date()
    first = args.from_date or args.date or today.isoformat()
    refused = refused_dates(first, args.to_date or first, today, first_staged_date(config))
    if refused:  # checked before the range is expanded: --to far ahead costs nothing
        log.error("botify-daily: not run: %s", refused)
        return 2
    dates = nights(args, today)
    backfill = Backfill(Path(config["daily"]["log_dir"]), dates)
    try:
        with Lock(Path(config["daily"]["lock_file"])):
            todo = [d for d in dates if d not in backfill.state["done"]] if len(dates) > 1 else dates
            if len(todo) < len(dates):
                log.info("backfill: %d of %d dates done by an earlier run of the same command", len(dates) - len(todo),
                         len(dates))
            for i, date in enumerate(todo):
                from_step = (args.from_step if i == 0 else None) or backfill.resume_step(date)
                code, failed_step = run_night(config, args, date, master, from_step)
                backfill.save(date, failed_step)
                if code:
                    if len(dates) > 1:
                        log.error("backfill stopped at %s, step %s: the same command resumes there", date,
                                  failed_step)
                    return code
    except StepFailed as exc:  # the lock
        log.error("daily run %s not started: %s", dates[0], exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
