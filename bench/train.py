"""Bench: MultiDAE epoch time at the default sizes, 1 and 2 processes, against a dense-input reference.

    .venv/bin/python bench/train.py [--epochs 2] [--users 10000] [--tracks 50000]

Interactions are drawn at the seed's density (bench/multidae_data.py). The
sparse runs are the real job (train_multidae.run: split, petastorm converter,
TorchDistributor local_mode with 1 and 2 processes); the reference is the same
model with a dense ``Linear`` first layer over the L2-normalised binary row,
trained single-process on the same training users. Epoch time is the mean of
the epochs after the first (the first includes petastorm's start-up). Also
times one optimiser step over the model's parameters with the job's fused Adam
against PyTorch's default (foreach) Adam, one thread. Prints one line:
figures, the ratios, and test NDCG@100 of each run.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.multidae_data import seed_density_positives, write_run  # noqa: E402
from common.config import load_config  # noqa: E402
from common.model import adam, multinomial_loss, pad_batch  # noqa: E402


class DenseMultiDAE(nn.Module):
    """Reference: the same network with a dense ``n_items``-wide input layer."""

    def __init__(self, n_items: int, dims, dropout: float):
        super().__init__()
        sizes = [n_items, *dims, *reversed(dims[:-1]), n_items]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = dropout
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.normalize(dense), p=self.dropout, training=self.training)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


def dense_rows(item_lists, n_items: int) -> torch.Tensor:
    x = torch.zeros(len(item_lists), n_items)
    for r, ids in enumerate(item_lists):
        x[r, torch.as_tensor(ids, dtype=torch.int64)] = 1.0
    return x


def train_dense(train_lists, test, n_items: int, settings: dict, epochs: int, seed: int):
    from common.evaluation import evaluate_heldout

    torch.manual_seed(seed)
    model = DenseMultiDAE(n_items, list(settings["dims"]), float(settings["dropout"]))
    optimizer = adam(model.parameters(), float(settings["lr"]), float(settings["weight_decay"]))
    batch = int(settings["batch_size"])
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        order = rng.permutation(len(train_lists))
        for start in range(0, len(train_lists), batch):
            chunk = [train_lists[i] for i in order[start : start + batch]]
            items, lengths = pad_batch(chunk)
            loss = multinomial_loss(model(dense_rows(chunk, n_items)), items, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)

    def score(fold_in, user_idx=None):
        model.eval()
        with torch.no_grad():
            return model(dense_rows(fold_in, n_items)).numpy()

    return times, evaluate_heldout(score, test, int(settings["eval_batch_size"]))


def adam_step_ms(n_items: int, dims, fused: bool, steps: int = 10) -> float:
    """Mean wall time of ``optimizer.step()`` over the MultiDAE's parameters, on one thread."""
    from common.model import MultiDAE, MultiDAEConfig

    model = MultiDAE(MultiDAEConfig(n_items=n_items, dims=list(dims)))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = adam(model.parameters(), 0.01) if fused else torch.optim.Adam(model.parameters(), lr=0.01)
    optimizer.step()  # allocates the moments
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1000


def steady(times):
    return float(np.mean(times[1:] if len(times) > 1 else times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=13_000_000, help="events the positives are drawn from (seed: ~13M)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from common.spark import get_session
    from jobs import train_multidae

    torch.set_num_threads(1)
    dims = load_config("pipeline.yml")["multidae"]["dims"]
    step_default, step_fused = (adam_step_ms(args.tracks, dims, fused) for fused in (False, True))
    torch.set_num_threads(os.cpu_count() or 1)
    user_idx, track_idx = seed_density_positives(args.users, args.tracks, args.events)
    density = len(user_idx) / (args.users * args.tracks)
    base = tempfile.mkdtemp(prefix="bench-train-")
    write_run(base, args.users, args.tracks, user_idx, track_idx)
    root = "file://" + base
    spark = get_session("bench-train", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")

    runs = {}
    for processes in (1, 2):
        config = load_config("pipeline.yml", [f"storage.root={root}", f"multidae.epochs={args.epochs}",
                                              f"multidae.distributor.num_processes={processes}"])
        metrics = train_multidae.run(spark, config, f"p{processes}")
        runs[processes] = (steady([e["epoch_seconds"] for e in metrics["epochs"]]), metrics["test"]["ndcg@100"])

    settings = config["multidae"]
    train_df, heldout = train_multidae.build_split(spark.read.parquet(base + "/interactions/bench/interactions"), settings["split"])
    train_lists = [np.asarray(r["items"], dtype=np.int64) for r in train_df.select("items").collect()]
    test = train_multidae.collect_heldout(heldout, "test")
    dense_times, dense_metrics = train_dense(train_lists, test, args.tracks, settings, args.epochs, int(settings["seed"]))
    dense_epoch = steady(dense_times)
    spark.stop()

    print(f"bench/train: {args.users} users x {args.tracks} tracks, {len(user_idx)} positives (density {density:.3%}), "
          f"{len(train_lists)} training users, {args.epochs} epochs, {os.cpu_count()} cores | "
          f"sparse 1 proc {runs[1][0]:.1f} s/epoch NDCG@100 {runs[1][1]:.4f} | "
          f"sparse 2 proc {runs[2][0]:.1f} s/epoch NDCG@100 {runs[2][1]:.4f} | "
          f"dense reference 1 proc {dense_epoch:.1f} s/epoch NDCG@100 {dense_metrics['ndcg@100']:.4f} | "
          f"dense/sparse(1 proc) = {dense_epoch / runs[1][0]:.2f}x, 1 proc/2 proc = {runs[1][0] / runs[2][0]:.2f}x | "
          f"Adam step, 1 thread: foreach {step_default:.0f} ms, fused {step_fused:.0f} ms = {step_default / step_fused:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
