"""bench/yarn: the loop on YARN beside the same loop on local Spark, and what one YARN submit costs.

    .venv/bin/python bench/yarn.py [--scale small|default] [--submits 3] [--workdir DIR]

In one invocation, on one mini cluster:
1. start HDFS + YARN (``botify-minicluster``): start-up seconds;
2. ``cluster_check --tasks 1`` on YARN once (it ships the packed environment
   and Spark's jars to the cluster cache and the NodeManager unpacks them),
   then ``--submits`` times more on YARN and as many times on ``local[*]``:
   the fixed cost per submit as the median wall time of a one-task job, and,
   from the ResourceManager and the application's event log, the seconds from
   the application's start to its first task;
3. ``botify-demo`` at ``--scale`` locally, then with ``--cluster yarn`` on the
   same cluster: seconds per step side by side, each demo's A/B effect, and
   the peak resident memory of each run's whole process tree (for YARN: the
   demo plus every daemon and container of the mini cluster).

Prints one line; the ratio is the YARN loop's wall time over the local one's.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import tree_rss_bytes  # noqa: E402
from common.storage import FsspecStorage, join  # noqa: E402
from pipeline.minicluster import MiniCluster  # noqa: E402

# the report's row: | T1 | mean_session_time | effect % | lower | upper | ...
EFFECT = re.compile(r"\| T1 \| mean_session_time \| ([-\d.]+) \| ([-\d.]+) \| ([-\d.]+) \|")


def timed(argv, env, cwd=REPO):
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def first_task_after_start(cluster: MiniCluster, app: dict) -> float:
    """Seconds from the RM accepting the application to its first task starting (the event log's TaskStart)."""
    storage = FsspecStorage()
    found = [u for u in storage.list(join(cluster.fs_default, "spark-history")) if app["id"] in u]
    # Spark 4 writes rolling event logs: a directory eventlog_v2_<app>/ of events_<n>_<app> files.
    parts = [u for u in storage.list(found[0]) if "/events_" in u] or found
    log = "".join(storage.read_text(part) for part in sorted(parts))
    for line in log.splitlines():
        event = json.loads(line)
        if event.get("Event") == "SparkListenerTaskStart":
            return (event["Task Info"]["Launch Time"] - app["startedTime"]) / 1000
    return float("nan")


def submit_costs(cluster: MiniCluster, env: dict, runs: int) -> dict:
    check = [str(REPO / "spark-submit.sh"), "cluster_check", "--tasks", "1",
             "--set", f"storage.root={cluster.fs_default}/user/bench/check"]
    on_yarn = [*check, "--master", "yarn", "--profile", "minicluster", "--conf", "spark.eventLog.compress=false"]
    first = timed(on_yarn, env)
    yarn = [timed(on_yarn, env) for _ in range(runs)]
    local = [timed(check, env) for _ in range(runs)]
    apps = sorted((a for a in cluster.applications() if a["name"] == "botify-cluster_check"),
                  key=lambda a: a["startedTime"])[1:]
    to_task = [first_task_after_start(cluster, a) for a in apps]
    return {"first": first, "yarn": statistics.median(yarn), "local": statistics.median(local),
            "to_first_task": statistics.median(to_task)}


def demo(args, env, workdir: Path, extra):
    argv = [str(REPO / ".venv" / "bin" / "botify-demo"), "--scale", args.scale, "--workdir", str(workdir), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid) + extra_rss[0]())
            time.sleep(0.5)

    extra_rss = [lambda: 0]
    if "--cluster" in extra:  # the mini cluster is not the demo's child: count its tree too
        extra_rss[0] = lambda: tree_rss_bytes(args.cluster_pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.communicate()[0]
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"demo {' '.join(extra)} failed:\n{out[-3000:]}")
    found = EFFECT.search(out)
    effect = f"{float(found[1]):+.1f}% [{float(found[2]):+.1f}, {float(found[3]):+.1f}]" if found else "?"
    return {"wall": time.perf_counter() - start, "steps": json.loads((workdir / "timings.json").read_text()),
            "effect": effect, "peak": peak[0]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/yarn.py", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=("small", "default"), default="small")
    parser.add_argument("--submits", type=int, default=3)
    parser.add_argument("--workdir", default=str(REPO / "build" / "bench-yarn"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    start = time.perf_counter()
    with MiniCluster(workdir / "minicluster") as cluster:
        started = time.perf_counter() - start
        args.cluster_pid = cluster.proc.pid
        env = {**__import__("os").environ, **cluster.env()}
        costs = submit_costs(cluster, env, args.submits)
        local = demo(args, {k: v for k, v in env.items() if k != "HADOOP_CONF_DIR"}, workdir / "local", [])
        yarn = demo(args, env, workdir / "yarn", ["--cluster", "yarn", "--spark-profile", "minicluster",
                                                  "--root", f"{cluster.fs_default}/user/bench/demo"])
    steps = " | ".join(f"{name} {local['steps'][name]:.0f}s/{secs:.0f}s" if name in local["steps"]
                       else f"{name} -/{secs:.0f}s" for name, secs in yarn["steps"].items())
    print(f"yarn loop at {args.scale} scale (local/YARN per step): {steps} || A/B MultiDAE vs StickyArtist: "
          f"local {local['effect']}, YARN {yarn['effect']} || mini cluster start {started:.0f}s, first submit "
          f"{costs['first']:.0f}s (ships env + jars), one-task job {costs['local']:.1f}s local / {costs['yarn']:.1f}s "
          f"YARN (median of {args.submits}), YARN application start to first task {costs['to_first_task']:.1f}s || "
          f"peak RSS {local['peak'] / 2**30:.1f} GiB local, {yarn['peak'] / 2**30:.1f} GiB YARN (demo + cluster) || "
          f"total {local['wall']:.0f}s local, {yarn['wall']:.0f}s YARN, ratio {yarn['wall'] / local['wall']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
