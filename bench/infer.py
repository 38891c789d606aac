"""Bench: infer_recommendations users/s (the whole job and its scoring stage) against this machine's GEMM roofline.

    .venv/bin/python bench/infer.py [--users 10000] [--tracks 50000] [--dims 200] [--batch-size 256]

Writes an interactions run at the seed's density (bench/multidae_data.py) and a
published model of the conf's default shape (``multidae.dims``, today
50000-200-50000; random weights: speed does not depend on them) into a
temporary warehouse, then times, after a warm-up that loads the model into every
Python worker (a long job amortises that):

- the whole job, ``infer_recommendations.run`` (read the model, join users with
  their positives, score, publish Parquet + JSON + manifest);
- its scoring stage alone (``score_users`` on the same users into Spark's noop sink).

The roofline is the users/s this machine would reach if the model's dense
GEMMs were the only cost, at the FLOP/s ``torch.mm`` reaches on the output
layer's shape (batch x first hidden size x tracks) in the job's own layout: one
single-threaded process per Spark core, all running at once. It is measured
just before and just after the timed runs (the machine is shared: the mean of
the two is used, both are printed). Prints one line.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.multidae_data import seed_density_positives, write_run  # noqa: E402
from common.config import load_config  # noqa: E402
from common.model import MultiDAE, MultiDAEConfig  # noqa: E402


def _gemm_flops(m: int, k: int, n: int, start_at: float, seconds: float):
    """(FLOP/s, FLOP per CPU second) of one single-threaded torch.mm loop on ``m x k @ k x n``."""
    torch.set_num_threads(1)
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    time.sleep(max(0.0, start_at - time.time()))
    done, started, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        done += 1
    flops = 2.0 * m * k * n * done
    return flops / (time.perf_counter() - started), flops / (time.thread_time() - cpu)


def roofline_flops(processes: int, m: int, k: int, n: int, seconds: float = 3.0):
    """(total FLOP/s, FLOP per CPU second) of ``processes`` single-threaded torch.mm loops running at the same time."""
    start_at = time.time() + 5.0  # past every process's torch import
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        rates = pool.starmap(_gemm_flops, [(m, k, n, start_at, seconds)] * processes)
    return sum(r[0] for r in rates), sum(r[1] for r in rates) / processes


def spark_cpu_seconds(jvm_pid: int) -> float:
    """CPU seconds so far of this process, the Spark JVM and every process under it (the Python workers).

    The machine is shared, so wall time alone says little about the job's own cost; CPU time does."""
    parents, cpu = {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def under_jvm(pid: int) -> bool:
        while pid > 1:
            if pid == jvm_pid:
                return True
            pid = parents.get(pid, 1)
        return False

    return time.process_time() + sum(seconds for pid, seconds in cpu.items() if under_jvm(pid))


def model_flops_per_user(n_items: int, dims) -> float:
    sizes = [*dims, *reversed(dims[:-1]), n_items]
    return 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def publish_model(root: str, tracks: int, dims) -> bytes:
    """models/multidae/bench/ (model.pt, manifest, LATEST) as train_multidae publishes it."""
    from common.checkpoint import CHECKPOINT_FORMAT, MODEL_FILE, to_bytes
    from common.manifest import sha256, write_manifest
    from common.storage import FsspecStorage, join, write_pointer

    torch.manual_seed(0)
    config = MultiDAEConfig(n_items=tracks, dims=dims)
    model_bytes = to_bytes({"format": CHECKPOINT_FORMAT, "model_config": config.to_dict(),
                            "state_dict": MultiDAE(config).state_dict(), "interactions_run": "bench",
                            "session_starts": False, "item_index": torch.arange(tracks, dtype=torch.int64)})
    storage, base = FsspecStorage(), join("file://" + root, "models", "multidae")
    storage.write_bytes(join(base, "bench", MODEL_FILE), model_bytes)
    write_manifest(storage, join(base, "bench"), {"model_sha256": sha256(model_bytes)})
    write_pointer(storage, join(base, "LATEST"), "bench")
    return model_bytes


def timed(action, jvm_pid: int):
    """(wall seconds, CPU seconds of the driver, the JVM and its Python workers) of ``action()``."""
    started, cpu = time.perf_counter(), spark_cpu_seconds(jvm_pid)
    action()
    return time.perf_counter() - started, spark_cpu_seconds(jvm_pid) - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=None, help="users per forward pass (default: infer.batch_size)")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="encoder sizes (default: multidae.dims)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = tempfile.mkdtemp(prefix="bench-infer-")
    try:
        return measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args, root: str) -> int:
    from common.spark import get_session
    from jobs import infer_recommendations as job

    dims = args.dims or [int(d) for d in load_config("pipeline.yml")["multidae"]["dims"]]
    config = load_config("pipeline.yml", [f"storage.root={root}"] +
                         ([f"infer.batch_size={args.batch_size}"] if args.batch_size else []))
    batch_size, top_k = int(config["infer"]["batch_size"]), int(config["infer"]["top_k"])
    write_run(root, args.users, args.tracks, *seed_density_positives(args.users, args.tracks))
    model_bytes = publish_model(root, args.tracks, dims)

    spark = get_session("bench-infer", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    cores, jvm = spark.sparkContext.defaultParallelism, spark.sparkContext._gateway.proc.pid
    run_uri = f"file://{root}/interactions/bench"
    users = job.all_user_items(spark.read.parquet(f"{run_uri}/interactions"), spark.read.parquet(f"{run_uri}/users"))

    def score():
        job.score_users(users, model_bytes, top_k, False, batch_size).write.format("noop").mode("overwrite").save()

    before = roofline_flops(cores, batch_size, dims[0], args.tracks)
    # The first run starts the Python workers, each loading the model once; the second finds them warm, as every
    # batch after the first of a long job does.
    cold = timed(lambda: job.run(spark, config, version="cold"), jvm)
    warm = timed(lambda: job.run(spark, config, version="warm"), jvm)
    scoring = timed(score, jvm)
    after = roofline_flops(cores, batch_size, dims[0], args.tracks)
    spark.stop()

    per_user = model_flops_per_user(args.tracks, dims)
    roofline, roofline_per_cpu_s = (before[0] + after[0]) / 2 / per_user, (before[1] + after[1]) / 2 / per_user
    shape = "-".join(str(d) for d in [args.tracks, *dims, *reversed(dims[:-1]), args.tracks])

    def figure(name, wall_cpu):
        wall, cpu = wall_cpu
        return (f"{name} {args.users / wall:.0f} users/s ({wall:.1f} s, {cpu:.1f} CPU s) = {args.users / wall / roofline:.2f} "
                f"[CPU {args.users / cpu / roofline_per_cpu_s:.2f}]")

    print(f"bench/infer: {args.users} users x {args.tracks} tracks, model {shape}, batch {batch_size}, top-{top_k}, "
          f"{cores} Spark cores, load {os.getloadavg()[0]:.2f} | GEMM {cores} x 1 thread: {(before[0] + after[0]) / 2e9:.1f} "
          f"GFLOP/s (before {before[0] / 1e9:.1f}, after {after[0] / 1e9:.1f}; {(before[1] + after[1]) / 2e9:.1f} per CPU s) "
          f"-> roofline {roofline:.0f} users/s ({per_user / 1e6:.1f} MFLOP/user) | measured/roofline [same per CPU "
          f"second]: {figure('job', warm)} | {figure('job cold', cold)} | {figure('scoring alone', scoring)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
