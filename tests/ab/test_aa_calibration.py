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


@pytest.fixture(scope="module")
def pre_post(tmp_path_factory, spark):
    """Per-user metrics in two periods of simulated traffic in one world (seeds 1 and 2, random policy: short
    sessions, so most users play in both): the first period is the covariate, the second the experiment; computed
    by the job's own transforms (user_covariates, user_metrics)."""
    from common import event_log_reader
    from jobs import analyze_ab
    from sim.bulk_logs import generate
    from sim.world import WorldParams, generate_world, write_world

    root = tmp_path_factory.mktemp("cuped")
    write_world(generate_world(WorldParams(tracks=2000, artists=200, genres=10, users=600), seed=5), str(root / "world"))
    for period, seed in (("pre", 1), ("post", 2)):
        generate(str(root / period), events=12_000, seed=seed, files=1, experiments={"AB": 2}, progress=False,
                 policy="random", world=str(root / "world"))

    def events(period):
        valid, _ = event_log_reader.split_valid(event_log_reader.parse_lines(event_log_reader.read_lines(spark, f"file://{root / period}")))
        return valid

    covariates = analyze_ab.user_covariates(events("pre"), "drop")
    users = analyze_ab.user_metrics(analyze_ab.analysed_sessions(
        analyze_ab.sessionize(analyze_ab.with_treatment(events("post"), "AB")), "drop"))
    return users.join(covariates, "user", "left").toPandas()


@pytest.mark.parametrize("metric", ab_stats.METRICS)
def test_aa_with_cuped_is_calibrated_too(pre_post, metric):
    """Over 2,000 A/A splits the CUPED-adjusted Welch test is significant in the 5% band, computed from the same
    per-group sums the job uses (theta pooled over all users, missing covariates filled with the mean)."""
    frame = pre_post[pre_post[metric].notna()]
    y = frame[metric].to_numpy(float)
    has_x = frame[f"pre_{metric}"].notna().to_numpy()
    x = np.where(has_x, frame[f"pre_{metric}"].fillna(0).to_numpy(float), frame.loc[has_x, f"pre_{metric}"].mean())
    assert 0.5 < has_x.mean() < 1.0  # and some users have no pre-period data: that path is exercised
    theta, mean_x = ab_stats.cuped_theta(len(y), x.sum(), (x * x).sum(), y.sum(), (x * y).sum())
    rng = np.random.default_rng(20240502)
    masks = rng.random((SPLITS, len(y))) < 0.5
    groups = []
    for m in (masks, ~masks):
        sums = [m.sum(1), m @ y, m @ (y * y), m @ x, m @ (x * x), m @ (x * y)]
        groups.append((sums[0], *ab_stats.cuped_moments(*sums, theta, mean_x)))
    (n_t, mean_t, var_t), (n_c, mean_c, var_c) = groups
    p = ab_stats.welch(n_c, mean_c, var_c, n_t, mean_t, var_t, alpha=ALPHA)["p_value"]
    significant = int(np.sum(p < ALPHA))
    low, high = stats.binom.interval(0.999, SPLITS, ALPHA)
    plain_var = np.var(y, ddof=1)
    print(f"A/A CUPED {metric}: {significant}/{SPLITS} significant (band {low:.0f}..{high:.0f}), theta {theta:.3f}, "
          f"users with pre-period {has_x.mean():.0%}, variance x{np.mean(var_c) / plain_var:.3f}")
    assert low <= significant <= high
