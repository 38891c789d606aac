"""A/A calibration: over many random A/A splits of one simulated dataset, the Welch test is
significant at alpha = 5% in a share of splits inside the binomial band around 5%.

The user-level metrics come from the job's Spark transforms once (the session
fixture); the splits are then boolean masks, so each split's group means and
variances are two matrix products and the job's own ``ab_stats.welch`` tests
all splits at once.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats

from common import ab_stats

# The shared `simulated` fixture generates and analyses 30,000 events: tens of seconds.
pytestmark = pytest.mark.slow

SPLITS = 2000
ALPHA = 0.05
log = logging.getLogger(__name__)


@pytest.mark.parametrize("metric", ab_stats.METRICS)
def test_aa_false_positive_rate_is_calibrated(simulated, metric):
    x = simulated["users"][metric].dropna().to_numpy(dtype=float)
    rng = np.random.default_rng(20240501)
    masks = rng.random((SPLITS, len(x))) < 0.5
    n_t = masks.sum(1)
    n_c = len(x) - n_t
    sum_t, sq_t = masks @ x, masks @ (x * x)
    sum_c, sq_c = x.sum() - sum_t, (x * x).sum() - sq_t
    mean_t, mean_c = sum_t / n_t, sum_c / n_c
    var_t = (sq_t - n_t * mean_t**2) / (n_t - 1)
    var_c = (sq_c - n_c * mean_c**2) / (n_c - 1)
    p = ab_stats.welch(n_c, mean_c, var_c, n_t, mean_t, var_t, alpha=ALPHA)["p_value"]
    significant = int(np.sum(p < ALPHA))
    low, high = stats.binom.interval(0.999, SPLITS, ALPHA)
    log.info("A/A %s: %d of %d splits significant (%.2f%%), band [%d, %d]", metric, significant, SPLITS,
             100 * significant / SPLITS, low, high)
    print(f"A/A {metric}: {significant}/{SPLITS} = {significant / SPLITS:.2%} significant (99.9% band {low:.0f}..{high:.0f})")
    assert low <= significant <= high
