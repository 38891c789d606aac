"""Interactions at the seed's density for the MultiDAE speed benches (infer, train_gpu), written straight in the extract contract.

Only for timing: positives drawn independently by popularity have nothing past
the popularity ranking to learn, so model quality is measured on simulated
sessions instead (bench/train.py).

The seed trained on ~1.3M sessions of ~10 events (~13M events) from 10,000
users over 50,000 tracks. ``sim.bulk_logs`` draws users from Zipf(0.6) and
tracks from Zipf(1.0) popularity with Beta(0.9, 0.6) listening times; a pair is
positive when some listen has time > 0.8. Here the positives are drawn from
the same distributions directly (per user: Binomial(events, P(time > 0.8))
track draws, deduplicated), without writing 13M log lines.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats


def zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def seed_density_positives(users: int = 10_000, tracks: int = 50_000, events: int = 13_000_000, seed: int = 31337):
    """(user_idx, track_idx) int arrays of distinct positive pairs."""
    rng = np.random.default_rng(seed)
    per_user = rng.multinomial(events, zipf(users, 0.6, rng))
    p_positive = float(stats.beta(0.9, 0.6).sf(0.8))
    draws = rng.binomial(per_user, p_positive)
    user_col = np.repeat(np.arange(users), draws)
    track_col = rng.choice(tracks, size=len(user_col), p=zipf(tracks, 1.0, rng))
    pairs = np.unique(user_col.astype(np.int64) * tracks + track_col)
    return (pairs // tracks).astype(np.int32), (pairs % tracks).astype(np.int32)


def write_run(base_dir: str, users: int, tracks: int, user_idx: np.ndarray, track_idx: np.ndarray, run: str = "bench") -> None:
    """``<base_dir>/interactions/<run>/`` in the extract_interactions layout (user id = user_idx, track id = track_idx)."""
    out = os.path.join(base_dir, "interactions", run)
    for name in ("interactions", "users", "tracks"):
        os.makedirs(os.path.join(out, name), exist_ok=True)
    n = len(user_idx)
    ones = np.ones(n)
    pq.write_table(pa.table({
        "user": user_idx.astype(np.int64), "track": track_idx.astype(np.int64), "plays": np.ones(n, dtype=np.int64),
        "total_time": ones, "max_time": ones, "label": np.ones(n, dtype=np.int32),
        "user_idx": user_idx, "track_idx": track_idx,
    }), os.path.join(out, "interactions", "part-0.parquet"))
    pq.write_table(pa.table({"user": np.arange(users, dtype=np.int64), "user_idx": np.arange(users, dtype=np.int32)}),
                   os.path.join(out, "users", "part-0.parquet"))
    pq.write_table(pa.table({"track": np.arange(tracks, dtype=np.int64), "track_idx": np.arange(tracks, dtype=np.int32)}),
                   os.path.join(out, "tracks", "part-0.parquet"))
    top = np.argsort(-np.bincount(track_idx, minlength=tracks), kind="stable")[:100]
    with open(os.path.join(out, "top_tracks.json"), "w") as fh:
        json.dump(top.tolist(), fh)
    open(os.path.join(out, "_SUCCESS"), "w").close()
    with open(os.path.join(base_dir, "interactions", "LATEST"), "w") as fh:
        fh.write(run + "\n")
