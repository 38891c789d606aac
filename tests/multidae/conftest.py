"""A tiny interactions run in the extract_interactions output contract, with structure a model can learn.

Users fall into groups; each group likes its own block of tracks (plus a little
noise), so held-out items are predictable from the fold-in. Track ids are not
their track_idx (ids start at 1000) so an index mix-up shows. The run is
written directly in the contract (Parquet tables, top_tracks.json, _SUCCESS,
LATEST) rather than through extract_interactions, to keep these tests fast and
independent of the log generator.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

# Python workers of the in-process local session must run this interpreter (torch, pandas), not
# whatever `python3` is first on PATH; spark-submit.sh sets the same thing for submitted jobs.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

USERS, TRACKS, GROUPS = 120, 160, 4
TRACK_ID_OFFSET = 1000
NO_POSITIVES_USER = 999_999  # listened to things, liked nothing: must still get recommendations

RESUME_MARKER_LOSS = 12345.0  # the loss recorded by the pretend-interrupted first epoch
# ... and its validation NDCG@100: the ceiling, so no later epoch can beat it (only a strictly better one
# replaces the best). The resumed run's validation peaks at epoch 1 and must publish epoch 1's weights.
RESUME_MARKER_NDCG = 1.0

TINY = [
    "multidae.dims=[32, 8]",
    "multidae.epochs=2",
    "multidae.batch_size=16",
    "multidae.partitions=4",
    "multidae.threads_per_process=1",
    "multidae.petastorm.workers_count=1",
    "multidae.petastorm.shuffle_buffer=32",
    "multidae.split.validation_fraction=0.15",
    "multidae.split.test_fraction=0.15",
    "evaluate.als.rank=8",
    "evaluate.als.max_iter=5",
]


def tiny_config(root: str, *overrides: str) -> dict:
    from common.config import load_config

    return load_config("pipeline.yml", [f"storage.root={root}", *TINY, *overrides])


def make_positives(seed: int = 7):
    """{user: sorted track_idx list}: each group's users like 8..20 tracks of their group's block, plus one random."""
    rng = np.random.default_rng(seed)
    block = TRACKS // GROUPS
    liked = {}
    for user in range(USERS):
        group = user % GROUPS
        own = rng.choice(np.arange(group * block, (group + 1) * block), size=rng.integers(8, 21), replace=False)
        liked[user] = sorted(set(own.tolist()) | {int(rng.integers(TRACKS))})
    return liked


def write_interactions_run(spark, root: str, run: str = "run1") -> dict:
    from common.storage import FsspecStorage, join, write_pointer

    liked = make_positives()
    rows = []
    for user, tracks in liked.items():
        for t in tracks:
            rows.append((user + 10, t + TRACK_ID_OFFSET, 1, 0.95, 0.95, 1, user, t))
        negative = (tracks[-1] + 1) % TRACKS
        if negative not in tracks:
            rows.append((user + 10, negative + TRACK_ID_OFFSET, 2, 0.6, 0.3, 0, user, negative))
    rows.append((NO_POSITIVES_USER, TRACK_ID_OFFSET, 1, 0.1, 0.1, 0, USERS, 0))
    cols = ["user", "track", "plays", "total_time", "max_time", "label", "user_idx", "track_idx"]
    base = join(root, "interactions", run)
    spark.createDataFrame(rows, cols).selectExpr(
        "cast(user as long) user", "cast(track as long) track", "cast(plays as long) plays", "total_time", "max_time",
        "cast(label as int) label", "cast(user_idx as int) user_idx", "cast(track_idx as int) track_idx",
    ).coalesce(2).write.parquet(join(base, "interactions"))
    users = [(u + 10, u) for u in range(USERS)] + [(NO_POSITIVES_USER, USERS)]
    spark.createDataFrame(users, ["user", "user_idx"]).selectExpr("cast(user as long) user", "cast(user_idx as int) user_idx") \
        .coalesce(1).write.parquet(join(base, "users"))
    spark.createDataFrame([(t + TRACK_ID_OFFSET, t) for t in range(TRACKS)], ["track", "track_idx"]) \
        .selectExpr("cast(track as long) track", "cast(track_idx as int) track_idx").coalesce(1).write.parquet(join(base, "tracks"))
    counts = np.bincount([t for ts in liked.values() for t in ts], minlength=TRACKS)
    top = [int(t) + TRACK_ID_OFFSET for t in np.argsort(-counts, kind="stable")[:100]]
    storage = FsspecStorage()
    storage.write_bytes(join(base, "top_tracks.json"), json.dumps(top).encode())
    storage.write_bytes(join(base, "_SUCCESS"), b"")
    write_pointer(storage, join(root, "interactions", "LATEST"), run)
    return liked


@pytest.fixture(scope="session")
def interactions_root(spark, tmp_path_factory):
    """A storage root (file:// URI) with interactions/run1/ and interactions/LATEST."""
    base = tmp_path_factory.mktemp("multidae-root")
    root = "file://" + str(base)
    write_interactions_run(spark, root)
    return root


def write_interrupted_run(root: str, version: str) -> dict:
    """What a run killed after its first epoch leaves: only rank 0's last.pt in the work directory.

    Returns the first epoch's weights (the best so far, by its recorded validation NDCG).
    """
    import torch

    from common.checkpoint import to_bytes
    from common.model import MultiDAE, MultiDAEConfig, multinomial_loss, pad_batch
    from common.storage import FsspecStorage, join
    from common.training import Knobs, cpu_weights, make_optimizer
    from jobs.multidae_training import LAST_CHECKPOINT

    config = MultiDAEConfig(n_items=TRACKS, dims=[32, 8], dropout=0.5)
    model = MultiDAE(config)
    optimizer = make_optimizer(model, Knobs(lr=1e-3))
    items, lengths = pad_batch([[1, 2, 3], [4, 5]])
    multinomial_loss(model(items, lengths), items, lengths).backward()
    optimizer.step()
    record = {"epoch": 1, "loss": RESUME_MARKER_LOSS, "epoch_seconds": 0.0, "users_seen": 0,
              "val_ndcg@100": RESUME_MARKER_NDCG, "val_recall@20": 1.0, "val_recall@50": 1.0}
    weights = cpu_weights(model)
    state = {"epoch": 1, "step": 1, "model_config": config.to_dict(), "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "history": [record],
             "best": {"epoch": 1, "record": record, "weights": weights}}
    FsspecStorage().write_bytes(join(root, "models", "multidae", "_work", version, LAST_CHECKPOINT), to_bytes(state))
    return weights


@pytest.fixture(scope="session")
def trained_root(spark, interactions_root):
    """interactions_root plus model v1, trained by the job (2 ranks, local_mode, petastorm) resuming an
    interrupted run after its first epoch; returns (root, the job's metrics, the interrupted epoch's weights)."""
    from jobs import train_multidae

    first_epoch = write_interrupted_run(interactions_root, "v1")
    metrics = train_multidae.run(spark, tiny_config(interactions_root, "multidae.epochs=3"), "v1")
    return interactions_root, metrics, first_epoch
