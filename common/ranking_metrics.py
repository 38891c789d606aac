"""Top-k ranking metrics for held-out items, as defined in Liang et al. (2018), section 4.2.

For a user with held-out item set I and a ranked list w(1..k):

    Recall@k = sum_r [w(r) in I] / min(k, |I|)
    DCG@k    = sum_r [w(r) in I] / log2(r + 1)
    NDCG@k   = DCG@k / IDCG@k,  IDCG@k = sum_{r=1}^{min(k,|I|)} 1 / log2(r + 1)

Recall is normalised by min(k, |I|) (not |I|), so it reaches 1 when the top k
is all relevant. Users with no held-out items are undefined and excluded.
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence

import numpy as np


def _hits(ranked: np.ndarray, targets: Sequence[Iterable[int]], k: int) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(targets):
        raise ValueError(f"ranked must be [users, >=k]; got {ranked.shape} for {len(targets)} users")
    if ranked.shape[1] < k:
        raise ValueError(f"need at least k={k} ranked items per user, got {ranked.shape[1]}")
    top = ranked[:, :k]
    return np.array([np.isin(top[u], np.fromiter(t, dtype=np.int64)) for u, t in enumerate(targets)], dtype=bool).reshape(len(targets), k)


def _sizes(targets: Sequence[Iterable[int]]) -> np.ndarray:
    sizes = np.array([len(set(t)) for t in targets], dtype=np.int64)
    if (sizes == 0).any():
        raise ValueError("every user needs at least one held-out item")
    return sizes


def recall_at_k(ranked: np.ndarray, targets: Sequence[Iterable[int]], k: int) -> np.ndarray:
    """Per-user Recall@k; ``ranked[u]`` is user u's ranking (best first), ``targets[u]`` their held-out items."""
    hits = _hits(ranked, targets, k)
    return hits.sum(axis=1) / np.minimum(k, _sizes(targets))


def ndcg_at_k(ranked: np.ndarray, targets: Sequence[Iterable[int]], k: int) -> np.ndarray:
    """Per-user NDCG@k with binary relevance."""
    hits = _hits(ranked, targets, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_cum = np.cumsum(discounts)
    idcg = ideal_cum[np.minimum(k, _sizes(targets)) - 1]
    return dcg / idcg


METRICS = {"ndcg@100": (ndcg_at_k, 100), "recall@20": (recall_at_k, 20), "recall@50": (recall_at_k, 50)}


def summarize(ranked: np.ndarray, targets: Sequence[Iterable[int]]) -> Dict[str, np.ndarray]:
    """The paper's three figures, per user (NDCG@100, Recall@20, Recall@50)."""
    return {name: fn(ranked, targets, k) for name, (fn, k) in METRICS.items()}


def rank_excluding(scores: np.ndarray, exclude: Sequence[Iterable[int]], k: int) -> np.ndarray:
    """Top-``k`` item ids per row of ``scores`` (best first), never ranking a row's ``exclude`` items."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if scores.shape[1] < k:
        raise ValueError(f"cannot rank {k} of {scores.shape[1]} items")
    for row, items in enumerate(exclude):
        ids = np.fromiter(items, dtype=np.int64)
        scores[row, ids] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
