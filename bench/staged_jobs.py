"""bench/staged_jobs: stage_events once, then extract_interactions and analyze_ab on the staged events, against
the old baselines and a one-machine DuckDB reference, all in one run on the same JSON logs.

    .venv/bin/pip install -r bench/requirements.txt      # duckdb (bench only)
    .venv/bin/python bench/staged_jobs.py --events 13000000

Spark runs on local[2]. The baselines are the ones bench/extract_interactions.py
(pandas) and bench/analyze_ab.py (groupBy + collect_list + Python UDF, the
course notebook's way) time; both start from the JSON, and past --baseline-max
events they run on the first files only (the line says so), so they are
compared by events per second. DuckDB (2 threads) reads the same JSON once
into a table (parse, validate, drop exact duplicates: the staging step) and
runs each job's aggregation on it. Prints one line: every time, every rate and
the ratios, each job counted without staging (staging printed separately) and
with it.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.spark import get_session  # noqa: E402
from jobs import analyze_ab, extract_interactions, stage_events  # noqa: E402
from sim import bulk_logs  # noqa: E402

THRESHOLD, EXPERIMENT, CONTROL = 0.8, "AB", "C"
COLUMNS = ("{message: 'VARCHAR', timestamp: 'BIGINT', \"user\": 'BIGINT', track: 'BIGINT', time: 'DOUBLE', "
           "latency: 'DOUBLE', recommendation: 'BIGINT', experiments: 'MAP(VARCHAR, VARCHAR)'}")
# The jobs' order and rules (common/sessions.py): a `next` before a `last` in the same millisecond.
ORDER = "PARTITION BY \"user\" ORDER BY timestamp, is_last, track, time, latency, recommendation"
DUCK_EXTRACT = f"""
CREATE OR REPLACE TEMP TABLE interactions AS
WITH o AS (SELECT *, coalesce(lag(is_last) OVER ({ORDER}), 1) = 1 AND message = 'next' AS opens FROM ev)
SELECT "user", track, count(*) AS plays, sum(time) AS total_time, max(time) AS max_time,
       sum(opens::INT) AS starts, (max(time) > {THRESHOLD})::INT AS label
FROM o GROUP BY "user", track"""
DUCK_TOP = f"""SELECT track FROM ev WHERE time > {THRESHOLD} GROUP BY track ORDER BY count(*) DESC, track LIMIT 100"""
DUCK_AB = f"""
WITH o AS (
  SELECT "user", time, latency, experiments['{EXPERIMENT}'][1] AS t,
         coalesce(sum(is_last) OVER ({ORDER} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS session,
         sum(is_last) OVER (PARTITION BY "user") AS lasts
  FROM ev),
r AS (SELECT *, min(t) OVER (PARTITION BY "user") AS t_min, max(t) OVER (PARTITION BY "user") AS t_max FROM o),
s AS (SELECT "user", session, any_value(t_min) AS t, count(*) AS length, sum(time) AS time,
             sum(latency) AS lat_sum, count(latency) AS lat_n
      FROM r WHERE t_min = t_max AND session < lasts GROUP BY "user", session),
u AS (SELECT "user", t, count(*) AS sessions, avg(length) AS len, avg(time) AS time, sum(lat_sum) / sum(lat_n) AS req
      FROM s GROUP BY "user", t)
SELECT t, count(*), avg(sessions), var_samp(sessions), avg(len), var_samp(len), avg(time), var_samp(time), avg(req)
FROM u GROUP BY t ORDER BY t"""


def load_bench(name: str):
    """A sibling bench script as a module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(os.path.dirname(__file__), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_logs(workdir: str, events: int, files: int) -> str:
    logs, stamp = os.path.join(workdir, "logs", "bench"), os.path.join(workdir, "logs", "bench.json")
    want = {"events": events, "files": files, "experiments": {EXPERIMENT: 2}}
    if not (os.path.exists(stamp) and json.load(open(stamp)) == want):
        shutil.rmtree(logs, ignore_errors=True)
        bulk_logs.write_catalog(os.path.join(workdir, "world", "tracks.jsonl"), 50_000, bulk_logs.default_artists(50_000), 31337)
        bulk_logs.generate(logs, events, users=10_000, tracks=50_000, seed=31337, files=files, experiments={EXPERIMENT: 2})
        json.dump(want, open(stamp, "w"))
    return logs


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def run_spark(workdir: str, logs: str, baseline_max: int) -> dict:
    config = load_config("pipeline.yml", [f"storage.root=file://{workdir}/warehouse", "ab.split=2"])
    catalog = "file://" + os.path.join(workdir, "world", "tracks.jsonl")
    spark = get_session("bench-staged", "local", {"spark.master": "local[2]", "spark.ui.enabled": "false",
                                                  "spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        staged, stage_s = timed(stage_events.run, spark, config, f"file://{logs}/*.jsonl", "bench", "bench")
        uri = staged["dataset"]
        extract, extract_s = timed(extract_interactions.run, spark, config, uri, "bench", catalog)
        ab, ab_s = timed(analyze_ab.run, spark, config, uri, EXPERIMENT, CONTROL, "bench")
        baseline = baseline_udf(spark, config, logs, ab, baseline_max)
    finally:
        spark.stop()
    return {"lines": staged["lines"], "stage_s": stage_s, "extract_s": extract_s, "ab_s": ab_s,
            "extract": extract, "ab": ab, **baseline}


def subset(logs: str, lines: int, most: int):
    files = sorted(glob.glob(os.path.join(logs, "*.jsonl")))
    take = max(1, min(len(files), int(most // (lines / len(files)))))
    return files[:take], f"{take}/{len(files)} files" if take < len(files) else "all"


def baseline_udf(spark, config, logs: str, ab: dict, most: int) -> dict:
    nb = load_bench("analyze_ab")
    files, part = subset(logs, ab["manifest"]["lines"], most)
    (users, summary, _), udf_s = timed(nb.run_notebook, spark, ["file://" + f for f in files], config)
    events = sum(1 for f in files for _ in open(f))
    same = summary["n"].tolist() == ab["summary"]["n"].tolist() if part == "all" else "subset"
    return {"udf_s": udf_s, "udf_events": events, "udf_part": part, "udf_same_users": same}


def run_pandas(logs: str, lines: int, manifest: dict, most: int) -> dict:
    files, part = subset(logs, lines, most)
    (events, agg, _), pandas_s = timed(load_bench("extract_interactions").pandas_extract, files, THRESHOLD, 100)
    same = (len(agg) == manifest["row_count"] and int(agg["starts"].sum()) == manifest["session_starts"]
            if part == "all" else "subset")
    return {"pandas_s": pandas_s, "pandas_events": sum(1 for f in files for _ in open(f)), "pandas_part": part,
            "pandas_same": same}


def run_duckdb(logs: str, manifest: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    load = (f"CREATE TEMP TABLE ev AS SELECT DISTINCT *, (message = 'last')::INT AS is_last FROM "
            f"read_json('{logs}/*.jsonl', format = 'newline_delimited', columns = {COLUMNS}) "
            f"WHERE message IN ('next', 'last') AND \"user\" >= 0 AND track >= 0 AND time BETWEEN 0 AND 1 "
            f"AND timestamp IS NOT NULL")
    _, stage_s = timed(con.execute, load)
    start = time.perf_counter()
    con.execute(DUCK_EXTRACT)
    con.execute(DUCK_TOP).fetchall()
    extract_s = time.perf_counter() - start
    rows, starts = con.execute("SELECT count(*), sum(starts) FROM interactions").fetchone()
    _, ab_s = timed(lambda: con.execute(DUCK_AB).fetchall())
    return {"duck_stage_s": stage_s, "duck_extract_s": extract_s, "duck_ab_s": ab_s,
            "duck_same": rows == manifest["row_count"] and starts == manifest["session_starts"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=13_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--baseline-max", type=int, default=2_000_000, help="most events each baseline is given")
    parser.add_argument("--workdir", default="build/bench-staged")
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    logs = ensure_logs(workdir, args.events, args.files)
    s = run_spark(workdir, logs, args.baseline_max)
    manifest = s["extract"]
    s |= run_pandas(logs, s["lines"], manifest, args.baseline_max) | run_duckdb(logs, manifest)
    n = s["lines"]
    pandas_rate, udf_rate = s["pandas_events"] / s["pandas_s"], s["udf_events"] / s["udf_s"]
    print(
        f"staged_jobs events={n} local[2]: stage_s={s['stage_s']:.1f} extract_s={s['extract_s']:.1f} "
        f"analyze_ab_s={s['ab_s']:.1f} | pandas_extract {s['pandas_events']} ev ({s['pandas_part']}) "
        f"{pandas_rate:,.0f} ev/s | udf_analyze {s['udf_events']} ev ({s['udf_part']}) {udf_rate:,.0f} ev/s | "
        f"duckdb stage_s={s['duck_stage_s']:.1f} extract_s={s['duck_extract_s']:.1f} analyze_s={s['duck_ab_s']:.1f} | "
        f"extract_vs_pandas={n / s['extract_s'] / pandas_rate:.2f}x "
        f"(with staging {n / (s['stage_s'] + s['extract_s']) / pandas_rate:.2f}x) "
        f"analyze_vs_udf={n / s['ab_s'] / udf_rate:.2f}x (with staging {n / (s['stage_s'] + s['ab_s']) / udf_rate:.2f}x) "
        f"extract_vs_duckdb={s['extract_s'] / s['duck_extract_s']:.1f}x_slower "
        f"analyze_vs_duckdb={s['ab_s'] / s['duck_ab_s']:.1f}x_slower stage_vs_duckdb={s['stage_s'] / s['duck_stage_s']:.1f}x_slower "
        f"same: pandas={s['pandas_same']} udf_users={s['udf_same_users']} duckdb={s['duck_same']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
