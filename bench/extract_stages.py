"""bench/extract_stages: where extract_interactions' time goes on staged events, and what the session window costs.

    .venv/bin/python bench/staged_jobs.py --events 13000000 --workdir build/bench-staged-13m   # stages the events
    .venv/bin/python bench/extract_stages.py --workdir build/bench-staged-13m

Runs the job's own ``run`` on local[2] over the staged events bench/staged_jobs.py
left in --workdir, in one process: as it is, and with the session window taken
out (``starts`` all 0, so no per-user sort of the events: the scan, the
(user, track) aggregate and the three table writes alone). The second plan is
not the job (its ``starts`` are wrong); it is a floor under any plan that still
reads the events, groups them by (user, track) and writes the same tables.
Each plan runs ``--runs`` times and the last run is reported (the first warms
the JVM and the file cache). Executor CPU per stage comes from Spark's REST API
(the UI, on loopback only). Prints one line: wall and executor CPU of both,
the three costliest stages of each, and the ratio floor / job.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import functions as F  # noqa: E402

from common.config import load_config  # noqa: E402
from common.spark import get_session  # noqa: E402
from jobs import extract_interactions  # noqa: E402


def without_session_window(events):
    return events.withColumn("start", F.lit(0))


def stages(spark) -> list:
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}/stages?status=complete"
    with urllib.request.urlopen(url) as answer:
        return json.load(answer)


def measured_run(spark, config: dict, events_uri: str, catalog: str, run_id: str) -> dict:
    before = {s["stageId"] for s in stages(spark)}
    start = time.perf_counter()
    manifest = extract_interactions.run(spark, config, events_uri, run_id, catalog)
    wall = time.perf_counter() - start
    time.sleep(1)  # the listener posts the last stage's metrics a moment after the job returns
    new = [s for s in stages(spark) if s["stageId"] not in before]
    top = sorted(new, key=lambda s: -s["executorCpuTime"])[:3]
    described = ", ".join(f"{s['executorCpuTime'] / 1e9:.1f}s (in {s['inputBytes'] / 1e6:.0f}MB shuffle "
                          f"w{s['shuffleWriteBytes'] / 1e6:.0f}/r{s['shuffleReadBytes'] / 1e6:.0f}MB)" for s in top)
    return {"wall": wall, "cpu": sum(s["executorCpuTime"] for s in new) / 1e9, "stages": len(new), "top": described,
            "events": manifest["events"], "starts": manifest["session_starts"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="build/bench-staged-13m", help="a bench/staged_jobs.py --workdir")
    parser.add_argument("--runs", type=int, default=2, help="runs of each plan; the last is reported")
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    events_uri = f"file://{workdir}/warehouse/events/bench"
    if not os.path.exists(os.path.join(workdir, "warehouse", "events", "bench", "_STAGED.json")):
        raise SystemExit(f"no staged events under {workdir}: run bench/staged_jobs.py --workdir {args.workdir} first")
    catalog = f"file://{workdir}/world/tracks.jsonl"
    config = load_config("pipeline.yml", [f"storage.root=file://{workdir}/extract-stages"])
    spark = get_session("bench-extract-stages", "local", {
        "spark.master": "local[2]", "spark.ui.enabled": "true", "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    spark.sparkContext.setLogLevel("ERROR")
    job_plan = extract_interactions.mark_session_starts
    try:
        job = [measured_run(spark, config, events_uri, catalog, f"job{i}") for i in range(args.runs)][-1]
        extract_interactions.mark_session_starts = without_session_window
        floor = [measured_run(spark, config, events_uri, catalog, f"floor{i}") for i in range(args.runs)][-1]
    finally:
        extract_interactions.mark_session_starts = job_plan
        spark.stop()
    print(f"extract_stages events={job['events']} local[2]: job wall {job['wall']:.1f}s executor_cpu {job['cpu']:.1f}s "
          f"over {job['stages']} stages (costliest: {job['top']}) | without the session window wall {floor['wall']:.1f}s "
          f"executor_cpu {floor['cpu']:.1f}s over {floor['stages']} stages (costliest: {floor['top']}) | "
          f"floor/job wall {floor['wall'] / job['wall']:.2f} cpu {floor['cpu'] / job['cpu']:.2f} | "
          f"session starts job {job['starts']} floor {floor['starts']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
