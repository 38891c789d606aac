"""Bench: the training rank function (jobs.multidae_training.train_rank) on a GPU against 2 CPU ranks.

    python bench/train_gpu.py [--epochs 3] [--users 10000] [--tracks 50000]

For the lent GPU machine, which has PyTorch but neither Java nor Spark nor
petastorm: the ranks are started the way torchrun starts them (env://
rendezvous, RANK / LOCAL_RANK / WORLD_SIZE), and petastorm's converter is
replaced by an in-memory stand-in with the same ``make_torch_dataloader``
interface and the job's own ``PadItems`` transform. Everything after the
loader — DDP (nccl on the GPU, gloo on CPU), fused Adam, the checkpoint,
validation — is the job's code. On this 2-core machine the CPU run alone
works as a smoke test (``--cpu-only``).

Positives are drawn at the seed's density (bench/multidae_data.py); 5% of the
users with at least 5 items are held out for validation (20% of their items
are the targets). Prints one line: s/epoch (mean after the first) and the last
validation NDCG@100 of each run, and the CPU/GPU time ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile

import numpy as np
import pandas as pd
import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import petastorm  # noqa: F401
    PETASTORM = "petastorm " + petastorm.__version__
except ImportError as missing:  # petastorm 0.12 imports pyarrow's legacy filesystem API, gone from the GPU image's pyarrow
    import types

    class TransformSpec:
        """Only what the rank function uses of petastorm: a holder of the transform."""

        def __init__(self, func, edit_fields=None, selected_fields=None):
            self.func, self.edit_fields, self.selected_fields = func, edit_fields, selected_fields

    sys.modules["petastorm"] = types.SimpleNamespace(TransformSpec=TransformSpec)
    PETASTORM = f"petastorm not importable ({missing}); TransformSpec stand-in"

from bench.multidae_data import seed_density_positives  # noqa: E402
from common.checkpoint import from_bytes  # noqa: E402
from common.training import Knobs  # noqa: E402
from jobs import multidae_training as training  # noqa: E402


class InMemoryConverter:
    """Stand-in for petastorm's SparkDatasetConverter (not installable on the GPU machine): shuffled, sharded, endless."""

    def __init__(self, item_lists):
        self.rows = pd.DataFrame({"items": item_lists})

    @contextlib.contextmanager
    def make_torch_dataloader(self, batch_size, num_epochs, cur_shard, shard_count, transform_spec, seed, **_):
        shard = self.rows.iloc[cur_shard::shard_count].reset_index(drop=True)
        transform = transform_spec.func
        rng = np.random.default_rng(seed)

        def batches():
            while True:
                order = rng.permutation(len(shard))
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    padded = transform(shard.iloc[order[start : start + batch_size]])
                    yield {"items": torch.from_numpy(np.stack(padded["items"].to_numpy())),
                           "n": torch.tensor(padded["n"].to_numpy())}

        yield batches()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(local_rank: int, world: int, port: int, spec: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank), LOCAL_RANK=str(local_rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    training.train_rank(spec)


def split(user_idx: np.ndarray, track_idx: np.ndarray, users: int, seed: int = 4242):
    lists = np.split(track_idx.astype(np.int64), np.cumsum(np.bincount(user_idx, minlength=users))[:-1])
    rng = np.random.default_rng(seed)
    heldout = {u for u in range(users) if len(lists[u]) >= 5 and rng.random() < 0.05}
    validation = {"user_idx": [], "fold_in": [], "targets": []}
    for u in sorted(heldout):
        items = rng.permutation(lists[u])
        n_targets = max(1, len(items) - int(0.8 * len(items)))
        validation["user_idx"].append(u)
        validation["targets"].append(np.sort(items[:n_targets]))
        validation["fold_in"].append(np.sort(items[n_targets:]))
    validation["user_idx"] = np.asarray(validation["user_idx"], dtype=np.int64)
    train = [lists[u] for u in range(users) if u not in heldout and len(lists[u])]
    return train, validation


def run(train, validation, n_items: int, epochs: int, world: int, use_gpu: bool) -> tuple:
    work = tempfile.mkdtemp(prefix="bench-train-gpu-")
    knobs = Knobs(epochs=epochs, batch_size=100, lr=0.01)
    spec = training.TrainingSpec(
        converter=InMemoryConverter(train), width=max(len(x) for x in train), n_items=n_items,
        knobs=knobs, validation=validation, work_uri="file://" + work,
        steps_per_epoch=knobs.steps_per_epoch(len(train), world), use_gpu=use_gpu,
        threads_per_process=0, reader_workers=1, shuffle_buffer=0, eval_batch_size=256)
    mp.spawn(_rank, args=(world, free_port(), spec), nprocs=world)
    with open(os.path.join(work, training.LAST_CHECKPOINT), "rb") as fh:
        history = from_bytes(fh.read())["history"]
    seconds = [h["epoch_seconds"] for h in history]
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)), history[-1]["val_ndcg@100"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=13_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU run (smoke test without a GPU)")
    args = parser.parse_args(argv)
    user_idx, track_idx = seed_density_positives(args.users, args.tracks, args.events)
    train, validation = split(user_idx, track_idx, args.users)
    head = (f"bench/train_gpu: {len(train)} training users x {args.tracks} tracks, {len(user_idx)} positives, "
            f"batch 100 per optimiser step, {args.epochs} epochs, torch {torch.__version__}, {PETASTORM}")
    cpu_s, cpu_ndcg = run(train, validation, args.tracks, args.epochs, world=2, use_gpu=False)
    cpu = f"cpu 2 ranks gloo ({os.cpu_count()} cores) {cpu_s:.2f} s/epoch val NDCG@100 {cpu_ndcg:.4f}"
    if args.cpu_only:
        print(f"{head} | {cpu}")
        return 0
    gpu_s, gpu_ndcg = run(train, validation, args.tracks, args.epochs, world=1, use_gpu=True)
    print(f"{head} | cuda 1 rank nccl ({torch.cuda.get_device_name(0)}) {gpu_s:.2f} s/epoch val NDCG@100 {gpu_ndcg:.4f} | "
          f"{cpu} | cpu/gpu = {cpu_s / gpu_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
