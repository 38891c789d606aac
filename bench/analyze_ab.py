"""Bench: the analyze_ab job (Spark SQL windows) against the notebook approach on the same events.

The notebook approach is what the course's analysis notebook does at scale:
``groupBy(user)`` + ``collect_list`` of each user's events and a Python UDF
that sorts and sessionises them. It follows the job's rules exactly (duplicate
removal, event order, trailing sessions dropped, one treatment per user), so
the two must agree on every user's metrics, and the bench checks that they do.

    .venv/bin/python bench/analyze_ab.py                 # 13M events (generated with sim.bulk_logs)
    .venv/bin/python bench/analyze_ab.py --events 200000 # a quick run

Prints one line: events, users, both wall times, their ratio, and whether the
numbers are identical (per-user metrics and per-treatment summaries).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ab_stats  # noqa: E402
from common.config import load_config  # noqa: E402
from common.schemas import EVENT_SCHEMA  # noqa: E402
from common.spark import get_session  # noqa: E402
from jobs import analyze_ab  # noqa: E402
from sim.bulk_logs import generate  # noqa: E402

EXPERIMENT, CONTROL = "AB", "C"
log = logging.getLogger("bench.analyze_ab")


def _event_key(e):
    """The job's order (common/sessions.py) and, in full, an event's identity: equal keys are exact copies."""
    latency, rec = e["latency"], e["recommendation"]
    experiments = tuple(sorted((e["experiments"] or {}).items()))
    return (e["timestamp"], 1 if e["message"] == "last" else 0, e["track"], e["time"],
            latency is not None, latency or 0.0, rec is not None, rec or 0, experiments)  # Spark: nulls first


def sessionize_user(events):
    """The notebook's per-user Python: sort, drop exact duplicates, cut at `last`, drop the trailing part."""
    rows = sorted((_event_key(e), e["timestamp"], 1 if e["message"] == "last" else 0, e["track"], e["time"],
                   e["latency"], e["experiments"].get(EXPERIMENT) if e["experiments"] else None) for e in events)
    treatments = {r[6] for r in rows if r[6] is not None}
    if len(treatments) != 1:
        return None
    sessions, current, previous = [], [], None
    for row in rows:
        if row[0] == previous:
            continue
        previous = row[0]
        current.append(row)
        if row[2]:
            sessions.append(current)
            current = []
    if not sessions:
        return None
    latencies = [r[5] for s in sessions for r in s if r[5] is not None]
    return (
        treatments.pop(),
        len(sessions),
        sum(len(s) for s in sessions) / len(sessions),
        sum(sum(r[4] for r in s) for s in sessions) / len(sessions),
        sum(latencies) / len(latencies) if latencies else None,
    )


def notebook_user_metrics(spark, input_uri: str):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    result = T.StructType([
        T.StructField("treatment", T.StringType()),
        T.StructField("sessions", T.LongType()),
        T.StructField("mean_session_length", T.DoubleType()),
        T.StructField("mean_session_time", T.DoubleType()),
        T.StructField("mean_request_time", T.DoubleType()),
    ])
    udf = F.udf(sessionize_user, result)
    events = spark.read.schema(EVENT_SCHEMA).json(input_uri)
    per_user = events.groupBy("user").agg(
        F.collect_list(F.struct("timestamp", "message", "track", "time", "latency", "recommendation",
                                "experiments")).alias("events")
    )
    return per_user.select("user", udf("events").alias("m")).where(F.col("m").isNotNull()).select("user", "m.*")


def run_notebook(spark, input_uri: str, config: dict):
    users = notebook_user_metrics(spark, input_uri).cache()
    summary = analyze_ab.summarize(users)
    effects = ab_stats.compare(summary, CONTROL, float(config["ab"]["alpha"]), float(config["ab"]["power"]))
    return users, summary, effects


def compare_numbers(job_users: pd.DataFrame, nb_users: pd.DataFrame, job_summary, nb_summary):
    a = job_users.sort_values("user", ignore_index=True)
    b = nb_users.sort_values("user", ignore_index=True)
    same_rows = a["user"].tolist() == b["user"].tolist() and a["treatment"].tolist() == b["treatment"].tolist() \
        and a["sessions"].tolist() == b["sessions"].tolist()
    diffs = []
    for metric in ("mean_session_length", "mean_session_time", "mean_request_time"):
        x, y = a[metric].to_numpy(float), b[metric].to_numpy(float)
        diffs.append(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-300)) if len(x) == len(y) else np.inf)
    s1 = job_summary.sort_values(["treatment", "metric"], ignore_index=True)
    s2 = nb_summary.sort_values(["treatment", "metric"], ignore_index=True)
    same_rows = same_rows and s1["n"].tolist() == s2["n"].tolist()
    diffs.append(np.max(np.abs(s1[["mean", "var"]].to_numpy() - s2[["mean", "var"]].to_numpy())
                        / np.abs(s2[["mean", "var"]].to_numpy())))
    worst = float(max(diffs))
    return same_rows and worst < 1e-9, len(a), worst


def timed_pair(spark, config, input_uri: str, run_id: str):
    start = time.perf_counter()
    job = analyze_ab.run(spark, config, input_uri, EXPERIMENT, CONTROL, run_id)
    job_s = time.perf_counter() - start
    start = time.perf_counter()
    nb_users, nb_summary, _ = run_notebook(spark, input_uri, config)
    nb_s = time.perf_counter() - start
    return job, job_s, nb_users, nb_summary, nb_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=13_000_000, help="events to generate (default 13M)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--data", help="directory for the generated logs (reused when it holds the same --events)")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs and outputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="bench_ab_"))
    data = Path(args.data) if args.data else work / "logs"
    marker = data / "_GENERATED.json"
    spec = {"events": args.events, "users": args.users}
    if not (marker.exists() and json.loads(marker.read_text()) == spec):
        shutil.rmtree(data, ignore_errors=True)
        generate(str(data), args.events, users=args.users, files=8, experiments={EXPERIMENT: 2}, progress=True)
        marker.write_text(json.dumps(spec))
    warm = work / "warmup"
    generate(str(warm), 20_000, users=500, files=1, experiments={EXPERIMENT: 2}, progress=False)

    config = load_config("pipeline.yml", [f"storage.root=file://{work}/warehouse"])
    spark = get_session("bench_analyze_ab", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        timed_pair(spark, config, f"file://{warm}", "warmup")  # JIT and Python workers warm for both sides
        job, job_s, nb_users, nb_summary, nb_s = timed_pair(spark, config, f"file://{data}", "bench")
        job_users = spark.read.parquet(job["uri"] + "/user_metrics").toPandas()
        identical, users, worst = compare_numbers(job_users, nb_users.toPandas(), job["summary"], nb_summary)
    finally:
        spark.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"analyze_ab bench: {args.events} events, {users} users; job (Spark SQL windows) {job_s:.1f} s, "
          f"notebook (groupBy + collect_list + Python UDF) {nb_s:.1f} s; ratio notebook/job {nb_s / job_s:.2f}x; "
          f"numbers {'identical' if identical else 'DIFFERENT'} (max relative difference {worst:.1e})")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
