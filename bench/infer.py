"""Bench: batch top-50 inference users/s, against this machine's matrix-multiply roofline.

    .venv/bin/python bench/infer.py [--users 10000] [--tracks 50000]

Scores users at the seed's density (bench/multidae_data.py) with a default-size
model (50000-300-50-300-50000, random weights: speed does not depend on them)
through the job's own Spark path (infer_recommendations.score_users:
mapInPandas, model cached per Python worker, top-50). The roofline is the
users/s this machine would reach if the model's dense GEMMs were the only cost,
running at the FLOP/s torch.mm reaches on the output layer's shape (measured
in the same run, with all cores). Prints one line with both and their ratio.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.multidae_data import seed_density_positives  # noqa: E402
from common.model import MultiDAE, MultiDAEConfig  # noqa: E402


def gemm_flops(m: int, k: int, n: int, seconds: float = 3.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        done += 1
    return 2.0 * m * k * n * done / (time.perf_counter() - started)


def model_flops_per_user(n_items: int, dims) -> float:
    sizes = [*dims, *reversed(dims[:-1]), n_items]
    return 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from pyspark.sql import functions as F

    from common.spark import get_session
    from jobs.infer_recommendations import score_users
    from common.checkpoint import to_bytes

    dims = [300, 50]
    torch.manual_seed(0)
    config = MultiDAEConfig(n_items=args.tracks, dims=dims)
    model_bytes = to_bytes({"format": "botify-multidae/1", "model_config": config.to_dict(),
                            "state_dict": MultiDAE(config).state_dict(),
                            "item_index": torch.arange(args.tracks, dtype=torch.int64)})

    user_idx, track_idx = seed_density_positives(args.users, args.tracks)
    splits = np.cumsum(np.bincount(user_idx, minlength=args.users))[:-1]
    lists = [x.tolist() for x in np.split(track_idx, splits)]
    spark = get_session("bench-infer", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    users = spark.createDataFrame(list(zip(range(args.users), lists)), "user long, items array<int>") \
        .repartition(cores * 4).cache()
    users.count()

    # Warm-up: every Python worker loads the model once (module-level cache), as a long job amortises.
    score_users(users.limit(cores * 64).repartition(cores), model_bytes, 50, False, args.batch_size).write.format("noop").mode("overwrite").save()
    started = time.perf_counter()
    score_users(users, model_bytes, 50, False, args.batch_size).write.format("noop").mode("overwrite").save()
    elapsed = time.perf_counter() - started
    spark.stop()

    users_per_s = args.users / elapsed
    flops = gemm_flops(args.batch_size, dims[0], args.tracks)
    roofline = flops / model_flops_per_user(args.tracks, dims)
    print(f"bench/infer: {args.users} users x {args.tracks} tracks, top-50, {cores} Spark cores | "
          f"{users_per_s:.0f} users/s ({elapsed:.1f} s) | GEMM {flops / 1e9:.1f} GFLOP/s -> roofline {roofline:.0f} users/s "
          f"({model_flops_per_user(args.tracks, dims) / 1e6:.1f} MFLOP/user) | measured/roofline = {users_per_s / roofline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
