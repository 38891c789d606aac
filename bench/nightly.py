"""bench/nightly: the nightly pipeline over N consecutive nights, as it runs now ("after") and as it ran ("before").

    .venv/bin/python bench/nightly.py [--nights 30] [--events 50000] [--window-days 7] [--retention-days 7]
                                      [--before-nights 1,10,20,30] [--ab-window window|experiment]
                                      [--files 2] [--keep DIR]

Issue 33 item 8: does a night cost the same on night 30 as on night 3, does it
read only its window, and does storage stop growing once the windows are full?
The simulator's calendar (``python -m sim bulk --start D --days N``) writes
``--events`` events a day in one small world up front; night *d* then finds day
*d*'s files in a local botify log folder, named as botify names its completed
files, and runs botify-daily's steps in this process on one shared
``local[*]`` Spark session, calling each job's ``run`` as the tests do:

- **after** (the product now), every night: upload (pipeline/upload_logs.py),
  stage_events (incremental: only the new files), extract_interactions over the
  ``--window-days`` days up to the night, train_multidae (a tiny model, one
  epoch, one process), infer_recommendations, analyze_ab over the same window
  (``--ab-window experiment``: from the experiment's start, as botify-daily
  runs it), retention (every kind kept ``--retention-days``: days, or versions
  for models and recommendations; staged events 3 days more; retention's own
  protections apply, the training and experiment windows among them).
- **before** (how it was), on ``--before-nights`` only (default night 1, every
  10th and the last): staging rewrites the dataset from every uploaded file
  (its directory removed first: everything re-read), extract_interactions and
  analyze_ab read every date, nothing is deleted. Its logs are uploaded every
  night, so the data a timed night reads is all there; the other steps run on
  the timed nights only, so its root holds their outputs alone (its growth is
  a lower bound).

One line per night: seconds per step, the rows extract_interactions and
analyze_ab read (the events they aggregated or sessionised, from their
manifests) next to the window's count taken independently, from the
simulator's files (and checked against ``_STAGED.json``'s count of the
window's dates), the bytes under the storage root, the staged dates kept and
the entries retention deleted. Then one summary line: the after mode's night N
/ night 3 step time, whether every night read exactly its window, the root's
growth over the last 10 nights; the before mode's last / first timed night and
its root's growth. No thresholds: the ratios are the result.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from common.config import load_config  # noqa: E402
from common.paths import resolve  # noqa: E402
from common.spark import get_session  # noqa: E402
from common.storage import local_path  # noqa: E402

START = dt.date(2025, 3, 1)  # night 1's date; every date is fixed, so reruns generate the same logs
DATASET = "botify"
STAGED_MANIFEST = "_STAGED.json"
# A tiny model: tests/multidae/conftest.py's TINY, one epoch, one training process.
TINY_MODEL = [
    "multidae.dims=[32, 8]", "multidae.epochs=1", "multidae.patience=0", "multidae.batch_size=16",
    "multidae.partitions=2", "multidae.threads_per_process=1", "multidae.petastorm.workers_count=1",
    "multidae.petastorm.shuffle_buffer=32", "multidae.split.validation_fraction=0.15",
    "multidae.split.test_fraction=0.15", "multidae.distributor.num_processes=1", "multidae.distributor.local_mode=true",
    "infer.torch_threads=1",
]
# Every kind kept --retention-days (days, or versions), staged dates 3 days longer (the training window protects
# its own dates whatever these say).
RETENTION_KINDS = ("raw_logs_days", "quarantine_days", "interactions_days", "models_versions",
                   "recommendations_versions", "run_records_days", "reports_days", "local_logs_days")
STAGED_EXTRA_DAYS = 3
STEPS = ("upload", "stage", "extract", "train", "infer", "analyze", "retention")


def night_date(night: int) -> str:
    return (START + dt.timedelta(days=night - 1)).isoformat()


def days_before(date: str, days: int) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=days)).isoformat()


def root_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def in_window(date: str, window: Optional[tuple]) -> bool:
    first, last = window or (None, None)
    return (first is None or date >= first) and (last is None or date <= last)


def staged_dates(root_path: str) -> Dict[str, dict]:
    with open(os.path.join(root_path, "events", DATASET, STAGED_MANIFEST)) as fh:
        return json.load(fh)["dates"]


def staged_window_events(root_path: str, window: Optional[tuple]) -> int:
    """The staged events whose date is inside ``window`` (inclusive; None ends open), from ``_STAGED.json``."""
    return sum(int(info["events"]) for d, info in staged_dates(root_path).items() if in_window(d, window))


def count_lines(path: str) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def default_before_nights(nights: int) -> List[int]:
    return sorted({1, nights, *range(10, nights + 1, 10)})


def parse_nights(text: str, nights: int) -> List[int]:
    chosen = sorted({int(n) for n in text.split(",") if n.strip()})
    if any(n < 1 for n in chosen):
        raise SystemExit(f"--before-nights {text!r}: nights count from 1")
    return [n for n in chosen if n <= nights]


def sim(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sim", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python -m sim {' '.join(args[:1])} failed:\n{done.stderr[-3000:]}")


class Mode:
    """One storage root and the local botify log folder its uploads come from."""

    def __init__(self, name: str, work: str, world: str, window_days: int, retention_days: int,
                 day_events: Dict[str, int]):
        self.name = name
        self.day_events = day_events  # events the simulator wrote per date (one event a line, none copied)
        self.base = os.path.join(work, name)
        self.root_path = os.path.join(self.base, "root")
        self.botify_logs = os.path.join(self.base, "botify-logs")
        os.makedirs(self.botify_logs)
        shutil.copytree(world, os.path.join(self.root_path, "world"))
        self.window_days = window_days
        self.config = load_config("pipeline.yml", [
            f"storage.root=file://{self.root_path}", f"daily.dataset={DATASET}",
            f"daily.train_window_days={window_days}", f"daily.botify_log_dir={self.botify_logs}",
            *(f"retention.{k}={retention_days}" for k in RETENTION_KINDS),
            f"retention.staged_events_days={retention_days + STAGED_EXTRA_DAYS}", *TINY_MODEL])
        self.logs_uri = resolve(self.config, f"logs/{DATASET}")
        self.events_uri = resolve(self.config, f"events/{DATASET}")
        self.catalog_uri = resolve(self.config, self.config["datasets"]["catalog"])
        self.rows: Dict[int, dict] = {}

    def deliver(self, day_files: Sequence[str], night: int) -> None:
        """Day ``night``'s logs appear in botify's log folder, named as botify names its completed files (the
        date in the name is what retention ages raw logs by)."""
        stamp = night_date(night).replace("-", "")
        for part, src in enumerate(day_files):
            name = f"events-{stamp}T{part:012d}-bench-{night}-{part}.jsonl"
            shutil.copyfile(src, os.path.join(self.botify_logs, name))

    def upload(self) -> None:
        from pipeline import upload_logs

        upload_logs.upload(self.botify_logs, self.logs_uri, progress=False)


def run_night(spark, mode: Mode, night: int, incremental: bool, ab_from_start: bool = False) -> dict:
    """One night's steps on ``mode``'s root: (after) incremental staging, windowed reads, retention; (before)
    everything re-staged and read, nothing deleted. ``ab_from_start``: the after mode's analyze_ab reads from the
    experiment's start, as botify-daily's does, instead of the window. Returns seconds per step and the rows read."""
    from jobs import analyze_ab, extract_interactions, infer_recommendations, stage_events, train_multidae
    from pipeline import retention

    date, config = night_date(night), mode.config
    window = (days_before(date, mode.window_days - 1), date) if incremental else None
    ab_window = window if incremental and not ab_from_start else (None, date)
    seconds: Dict[str, Optional[float]] = {}

    def timed(step: str, fn):
        start = time.perf_counter()
        result = fn()
        seconds[step] = time.perf_counter() - start
        return result

    timed("upload", mode.upload)
    if incremental:
        timed("stage", lambda: stage_events.run(spark, config, mode.logs_uri, DATASET, date))
    else:
        def restage():
            shutil.rmtree(local_path(mode.events_uri), ignore_errors=True)
            return stage_events.run(spark, config, mode.logs_uri, DATASET, date)
        timed("stage", restage)
    # The window's events counted from the simulator's files (every date up to tonight's), and as staging counted them.
    extract_window = sum(n for d, n in mode.day_events.items() if d <= date and in_window(d, window))
    ab_window_count = sum(n for d, n in mode.day_events.items() if d <= date and in_window(d, ab_window))
    staged_window = staged_window_events(mode.root_path, window)
    extracted = timed("extract", lambda: extract_interactions.run(spark, config, mode.events_uri, date,
                                                                  mode.catalog_uri, window))
    with contextlib.redirect_stdout(sys.stderr):  # TorchDistributor echoes the rank's output: keep stdout to the lines
        timed("train", lambda: train_multidae.run(spark, config, date, date))
    timed("infer", lambda: infer_recommendations.run(spark, config, date, date))
    daily = config["daily"]
    ab = timed("analyze", lambda: analyze_ab.run(spark, config, mode.events_uri, daily["experiment"], daily["control"],
                                                 date, None, ab_window))
    deleted = None
    if incremental:  # tonight's version is the one botify serves after the reload step
        counts = timed("retention", lambda: retention.run(config, date, False, [date]))
        deleted = sum(c["deleted"] for c in counts.values())
    else:
        seconds["retention"] = None
    facts = ab["manifest"]
    row = {"seconds": seconds, "total": sum(s for s in seconds.values() if s is not None),
           "extract_read": int(extracted["events"]), "unknown_tracks": int(extracted["unknown_tracks"]),
           "extract_window": extract_window, "staged_window": staged_window,
           # every event sessionised, of any status: the lines minus what staging rejected and the copies dropped
           "ab_read": int(facts["lines"]) - int(facts["malformed_lines"]) - int(facts["duplicates_dropped"]),
           "ab_window": ab_window_count, "deleted": deleted, "bytes": root_bytes(mode.root_path),
           "staged_dates": len(staged_dates(mode.root_path))}
    mode.rows[night] = row
    return row


def render(night: int, name: str, row: dict) -> str:
    steps = " ".join(f"{s} {'-' if row['seconds'].get(s) is None else format(row['seconds'][s], '.1f') + 's'}"
                     for s in STEPS)
    unknown = f" +{row['unknown_tracks']:,} unknown tracks" if row["unknown_tracks"] else ""
    deleted = "" if row["deleted"] is None else f", {row['deleted']} entries deleted"
    dates = f"{row['staged_dates']} staged date{'' if row['staged_dates'] == 1 else 's'}"
    staged = "" if row["staged_window"] == row["extract_window"] else f", _STAGED.json says {row['staged_window']:,}"
    return (f"night {night} {name}: {steps} = {row['total']:.1f}s; rows read extract {row['extract_read']:,}{unknown} "
            f"(window {row['extract_window']:,}{staged}) ab {row['ab_read']:,} (window {row['ab_window']:,}); "
            f"root {row['bytes'] / 1e6:.1f} MB ({dates}){deleted}")


def reads_window(row: dict) -> bool:
    return (row["extract_read"] + row["unknown_tracks"] == row["extract_window"] == row["staged_window"]
            and row["ab_read"] == row["ab_window"])


def summary(args: argparse.Namespace, after: Mode, before: Mode, wall: float) -> str:
    n = args.nights
    base = min(3, n)
    rows = after.rows
    steps = rows[n]["total"] / rows[base]["total"]
    wrong = [f"{m.name} night {k}" for m in (after, before) for k, r in sorted(m.rows.items()) if not reads_window(r)]
    reads = "rows read = window on every night" if not wrong else f"rows read != window on {', '.join(wrong)}"
    span = min(10, n - 1)
    growth = "root bytes: one night"
    if span:
        growth = (f"root bytes last {span} nights {rows[n]['bytes'] / rows[n - span]['bytes'] - 1:+.0%} "
                  f"({rows[n - span]['bytes'] / 1e6:.1f} -> {rows[n]['bytes'] / 1e6:.1f} MB)")
    shown = sorted({base, min(args.window_days, n), n})  # and the first night whose window is full
    times = ", ".join(f"night{k} {rows[k]['total']:.0f}s" for k in shown)
    line = (f"nightly: {n} nights x {args.events} events/day, window {args.window_days} days: "
            f"after night{n}/night{base} steps {steps:.2f}x ({times}), {reads}, {growth}")
    if before.rows:
        first, last = min(before.rows), max(before.rows)
        b = before.rows
        line += (f"; before night{last}/night{first} steps {b[last]['total'] / b[first]['total']:.2f}x "
                 f"({b[first]['total']:.0f}s -> {b[last]['total']:.0f}s), "
                 f"root {b[last]['bytes'] / b[first]['bytes'] - 1:+.0%} "
                 f"({b[first]['bytes'] / 1e6:.1f} -> {b[last]['bytes'] / 1e6:.1f} MB; after's root at night{last} "
                 f"{rows[last]['bytes'] / 1e6:.1f} MB), before/after steps at night{last} "
                 f"{b[last]['total'] / rows[last]['total']:.2f}x")
    return line + f"; wall {wall:.0f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--events", type=int, default=50_000,
                        help="events per day (50,000: ~22 min for 30 nights on 2 quiet cores, estimated)")
    parser.add_argument("--window-days", type=int, default=7,
                        help="the training and A/B window (daily.train_window_days)")
    parser.add_argument("--before-nights", help="nights the before mode is timed on (default: 1, every 10th and the "
                                                "last), clipped to --nights; '' for none")
    parser.add_argument("--retention-days", type=int, default=7,
                        help=f"after mode: every kind kept this many days (models, recommendations: versions), "
                             f"staged events {STAGED_EXTRA_DAYS} more")
    parser.add_argument("--ab-window", choices=("window", "experiment"), default="window",
                        help="after mode: analyze_ab over the --window-days window (default), or from the "
                             "experiment's start as botify-daily runs it")
    parser.add_argument("--files", type=int, default=2, help="log files per day")
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR (new or empty) and keep it, instead of a temporary one")
    args = parser.parse_args()
    if min(args.nights, args.events, args.window_days, args.retention_days, args.files) < 1:
        parser.error("--nights, --events, --window-days, --retention-days and --files must be at least 1")
    before_nights = (default_before_nights(args.nights) if args.before_nights is None
                     else parse_nights(args.before_nights, args.nights))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        if os.listdir(args.keep):
            parser.error(f"--keep {args.keep}: not empty")
        return bench(args, os.path.abspath(args.keep), before_nights)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as work:
        return bench(args, work, before_nights)


def bench(args: argparse.Namespace, work: str, before_nights: List[int]) -> int:
    started = time.perf_counter()
    world, logs = os.path.join(work, "world"), os.path.join(work, "sim-logs")
    sim("generate", "--seed", "1", "--tracks", "1500", "--users", "600", "--out", world)
    sim("bulk", "--events", str(args.events), "--world", world, "--experiment", "AB:2", "--files", str(args.files),
        "--seed", "1", "--out", logs, "--start", START.isoformat(), "--days", str(args.nights))
    files = sorted(os.listdir(logs))
    by_night = {n: [os.path.join(logs, f) for f in files if f.startswith(f"part-{night_date(n)}-")]
                for n in range(1, args.nights + 1)}
    day_events = {night_date(n): sum(count_lines(f) for f in by_night[n]) for n in by_night}
    after = Mode("after", work, world, args.window_days, args.retention_days, day_events)
    before = Mode("before", work, world, args.window_days, args.retention_days, day_events)
    spark = get_session("bench-nightly", "local", {
        "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4", "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false", "spark.eventLog.enabled": "false",
        "spark.local.dir": os.path.join(work, "spark-local")})
    spark.sparkContext.setLogLevel("ERROR")
    print(f"bench-nightly: {args.nights} nights from {START} x {args.events} events/day in {args.files} files, "
          f"window {args.window_days} days, before timed on nights {before_nights or 'none'}, work {work}, "
          f"A/B over the {'window' if args.ab_window == 'window' else 'experiment'}, "
          f"retention {args.retention_days} days (staged events {args.retention_days + STAGED_EXTRA_DAYS}), "
          f"set-up (world, logs, Spark) {time.perf_counter() - started:.0f}s", flush=True)
    try:
        for night in range(1, args.nights + 1):
            after.deliver(by_night[night], night)
            row = run_night(spark, after, night, incremental=True, ab_from_start=args.ab_window == "experiment")
            print(render(night, "after", row), flush=True)
            before.deliver(by_night[night], night)
            if night in before_nights:
                print(render(night, "before", run_night(spark, before, night, incremental=False)), flush=True)
            else:
                before.upload()  # the data the next timed night re-reads
    finally:
        spark.stop()
    print(summary(args, after, before, time.perf_counter() - started), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
