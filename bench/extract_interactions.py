"""bench/extract_interactions: the job's throughput on local[2] vs a plain pandas implementation.

    .venv/bin/python bench/extract_interactions.py --events 13000000

Generates N events with sim.bulk_logs (kept in --workdir and reused when it
already holds N events), runs the job's own ``run`` on a local[2] session and,
in the same invocation, the same aggregation (parse, validate, dedupe,
session starts, group by user-track, label, top tracks) in pandas. pandas must hold the whole
input in memory, so past --pandas-max events it runs on the first files only;
the output says so. Prints one line: events/s of both and their ratio.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.spark import get_session  # noqa: E402
from jobs import extract_interactions  # noqa: E402
from sim import bulk_logs  # noqa: E402


def ensure_logs(workdir: str, events: int, files: int) -> str:
    logs = os.path.join(workdir, "logs", "bench")
    stamp = os.path.join(workdir, "logs", "bench.json")
    want = {"events": events, "files": files}
    if os.path.exists(stamp) and json.load(open(stamp)) == want:
        return logs
    shutil.rmtree(logs, ignore_errors=True)
    bulk_logs.write_catalog(os.path.join(workdir, "world", "tracks.jsonl"), 50_000, bulk_logs.default_artists(50_000), 31337)
    bulk_logs.generate(logs, events, users=10_000, tracks=50_000, seed=31337, files=files)
    json.dump(want, open(stamp, "w"))
    return logs


def pandas_extract(paths, threshold: float, top_n: int):
    frames = [pd.read_json(p, lines=True, dtype=False) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    for col in ("timestamp", "user", "track"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["time"] = pd.to_numeric(df["time"], errors="coerce")
    ok = df["message"].isin(["next", "last"]) & df["user"].notna() & df["track"].notna() & df["time"].between(0, 1)
    # Exact duplicates only (common/sessions.py): every field, the experiments map as sorted items.
    df = df[ok].assign(_experiments=df["experiments"].map(lambda m: tuple(sorted((m or {}).items()))))
    df = df.drop_duplicates(["message", "timestamp", "user", "track", "time", "latency", "recommendation", "_experiments"])
    # Session starts as the job marks them: a `next` that is the user's first event, or first after a `last`;
    # a `next` sorts before a `last` of the same millisecond.
    df = df.assign(_is_last=(df["message"] == "last").astype(int))
    df = df.sort_values(["user", "timestamp", "_is_last"], kind="stable")
    after_last = df.groupby("user")["_is_last"].shift(1).fillna(1) == 1
    df["start"] = ((df["message"] == "next") & after_last).astype(int)
    agg = df.groupby(["user", "track"]).agg(plays=("time", "size"), total_time=("time", "sum"), max_time=("time", "max"),
                                            starts=("start", "sum"))
    agg["label"] = (agg["max_time"] > threshold).astype(int)
    pos = df[df["time"] > threshold].groupby("track").size().reset_index(name="n")
    top = pos.sort_values(["n", "track"], ascending=[False, True])["track"].head(top_n).tolist()
    return len(df), agg, top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=13_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--pandas-max", type=int, default=2_000_000, help="most events pandas is given")
    parser.add_argument("--workdir", default="build/bench-extract")
    parser.add_argument("--logs", help="use these existing event logs (no catalog: tracks seen in the logs are indexed)")
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    logs = os.path.abspath(args.logs) if args.logs else ensure_logs(workdir, args.events, args.files)
    catalog = None if args.logs else "file://" + os.path.join(workdir, "world", "tracks.jsonl")

    config = load_config("pipeline.yml", [f"storage.root={workdir}"])
    spark = get_session("bench-extract", "local", {"spark.master": "local[2]", "spark.ui.enabled": "false",
                                                   "spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    manifest = extract_interactions.run(spark, config, "file://" + logs + "/*.jsonl", "bench", catalog)
    spark_s = time.perf_counter() - start
    spark.stop()

    files = sorted(glob.glob(os.path.join(logs, "*.jsonl")))
    per_file = manifest["lines"] / len(files)
    take = max(1, min(len(files), int(args.pandas_max // per_file)))
    subset = take < len(files)
    start = time.perf_counter()
    pandas_events, agg, top = pandas_extract(files[:take], 0.8, 100)
    pandas_s = time.perf_counter() - start
    same = ""
    if not subset:
        top_job = json.load(open(os.path.join(workdir, "interactions", "bench", "top_tracks.json")))
        same = (f" same_rows={len(agg) == manifest['row_count']}"
                f" same_starts={int(agg['starts'].sum()) == manifest['session_starts']} same_top={top == top_job}")
    spark_rate = manifest["lines"] / spark_s
    pandas_rate = pandas_events / pandas_s
    print(
        f"extract_interactions events={manifest['lines']} spark_local2_s={spark_s:.1f} spark_events_per_s={spark_rate:,.0f} "
        f"pandas_events={pandas_events}{' (subset: first %d of %d files)' % (take, len(files)) if subset else ''} "
        f"pandas_s={pandas_s:.1f} pandas_events_per_s={pandas_rate:,.0f} ratio_spark_vs_pandas={spark_rate / pandas_rate:.2f}{same}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
