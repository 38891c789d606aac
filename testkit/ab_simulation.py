"""Nightly A/B experiments simulated on arm-level statistics, for the sequential-analysis test and bench.

No Spark and no events: each night adds users with a skewed metric (lognormal
session time by default) to both arms, and what the nightly report would see
is the cumulative per-arm (n, mean, sample variance), exactly the sufficient
statistics ``common.ab_stats`` works on. Thousands of experiments are one set
of array operations; the sequential boundaries are computed once per pattern
of looks taken (a skipped night changes the pattern), not once per experiment.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from scipy import stats

from common import ab_stats, sequential_ab


def simulate_nightly(experiments: int, nights: int = 14, users_per_night: int = 500, effect: float = 0.0,
                     distribution: str = "lognormal", seed: int = 0, chunk: int = 500) -> Dict[str, np.ndarray]:
    """Cumulative per-arm n, mean and sample variance after each night: arrays of shape (experiments, nights).

    Every night each arm gets ``users_per_night`` new users whose metric is drawn from ``distribution``
    ("lognormal": exp(N(0, 1)), skewness 6; "exponential": skewness 2); the treatment's values are
    multiplied by ``1 + effect``, a relative effect on the mean. Drawn in chunks of experiments in float32
    (the draws dominate the cost) and summed in float64.
    """
    rng = np.random.default_rng(seed)
    sums = np.empty((experiments, nights, 2))
    squares = np.empty((experiments, nights, 2))
    for start in range(0, experiments, chunk):
        size = (min(chunk, experiments - start), nights, 2, users_per_night)
        if distribution == "lognormal":
            x = rng.standard_normal(size, dtype=np.float32)
            np.exp(x, out=x)
        elif distribution == "exponential":
            x = rng.standard_exponential(size, dtype=np.float32)
        else:
            raise ValueError(f"unknown distribution {distribution!r}")
        x[:, :, 1] *= np.float32(1 + effect)
        sums[start:start + size[0]] = x.sum(axis=-1, dtype=np.float64)
        squares[start:start + size[0]] = np.einsum("...i,...i->...", x, x, dtype=np.float64)
    n = users_per_night * np.arange(1, nights + 1, dtype=float)[None, :, None]
    total, total_sq = np.cumsum(sums, axis=1), np.cumsum(squares, axis=1)
    mean = total / n
    var = (total_sq - n * mean**2) / (n - 1)
    n = np.broadcast_to(n, mean.shape)
    return {"n_c": n[..., 0], "mean_c": mean[..., 0], "var_c": var[..., 0],
            "n_t": n[..., 1], "mean_t": mean[..., 1], "var_t": var[..., 1]}


def skipped_nights(experiments: int, nights: int = 14, share: float = 0.3, seed: int = 1) -> np.ndarray:
    """The night (1-based) whose report was not run, per experiment; 0 for none. A ``share`` of the
    experiments skips one night drawn among 2..nights-1 (the first and the planned last are always read)."""
    rng = np.random.default_rng(seed)
    skip = rng.integers(2, nights, size=experiments)
    return np.where(rng.random(experiments) < share, skip, 0)


def rejections(sim: Dict[str, np.ndarray], skipped: np.ndarray, alpha: float = 0.05,
               kind: str = "obrien_fleming") -> Dict[str, np.ndarray]:
    """Per experiment, whether H0 was rejected by the sequential design and by two fixed-horizon readers.

    z at each night is the relative effect over its delta-method se (``ab_stats.relative_delta``), as
    ``sequential_ab.record_look`` computes it. "sequential": |z| >= c_k at some look taken, with c_k from
    the fractions of the looks actually taken (night / nights); "fixed_nightly": |z| >= z_{1-alpha/2} at
    some look taken (the peeking reader); "fixed_end": |z| >= z_{1-alpha/2} at the last night only.
    """
    rel = ab_stats.relative_delta(sim["n_c"], sim["mean_c"], sim["var_c"], sim["n_t"], sim["mean_t"], sim["var_t"])
    z = np.abs(rel["effect"] / rel["se"])
    experiments, nights = z.shape
    taken = np.arange(1, nights + 1)[None, :] != skipped[:, None]
    bound = np.full(z.shape, np.inf)
    for skip in np.unique(skipped):
        rows = skipped == skip
        looks = np.flatnonzero(taken[np.argmax(rows)])
        bound[np.ix_(rows, looks)] = sequential_ab.boundaries((looks + 1) / nights, alpha, kind)
    fixed = stats.norm.isf(alpha / 2)
    return {
        "sequential": np.any(z >= bound, axis=1),
        "fixed_nightly": np.any((z >= fixed) & taken, axis=1),
        "fixed_end": z[:, -1] >= fixed,
    }
