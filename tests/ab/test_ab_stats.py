"""common.ab_stats against statsmodels/scipy on raw data, and by simulation where a property is statistical."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from common import ab_stats


def summary_of(x):
    return len(x), np.mean(x), np.var(x, ddof=1)


@pytest.mark.parametrize("seed, n_c, n_t, alpha", [(1, 50, 80, 0.05), (2, 400, 300, 0.01), (3, 7, 12, 0.1)])
def test_welch_ci_and_p_match_statsmodels_compare_means(seed, n_c, n_t, alpha):
    rng = np.random.default_rng(seed)
    c = rng.exponential(2.0, n_c)
    t = rng.normal(2.5, 4.0, n_t)  # unequal variances and sizes: Welch and pooled differ
    w = ab_stats.welch(*summary_of(c), *summary_of(t), alpha=alpha)
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    lower, upper = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    assert float(w["lower"]) == pytest.approx(lower, rel=1e-10)
    assert float(w["upper"]) == pytest.approx(upper, rel=1e-10)
    t_stat, p_value, df = cm.ttest_ind(usevar="unequal")
    assert float(w["p_value"]) == pytest.approx(p_value, rel=1e-10)
    assert float(w["df"]) == pytest.approx(df, rel=1e-10)
    assert float(w["p_value"]) == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-10)
    pooled_lower, _ = cm.tconfint_diff(alpha=alpha, usevar="pooled")
    assert float(w["lower"]) != pytest.approx(pooled_lower, rel=1e-6)


def test_welch_degenerate_groups_give_nan_not_certainty():
    w = ab_stats.welch(1, 1.0, np.nan, 10, 2.0, 1.0)
    assert np.isnan(w["p_value"]) and np.isnan(w["lower"])
    w = ab_stats.welch(10, 1.0, 0.0, 10, 1.0, 0.0)
    assert np.isnan(w["p_value"])


def _coverage(rng, reps, n, mean_c, mean_t, alpha=0.05):
    c = rng.exponential(mean_c, (reps, n))
    t = rng.exponential(mean_t, (reps, n))
    args = (n, c.mean(1), c.var(1, ddof=1), n, t.mean(1), t.var(1, ddof=1))
    truth = mean_t / mean_c - 1
    r = ab_stats.relative_delta(*args, alpha=alpha)
    delta = np.mean((r["lower"] <= truth) & (truth <= r["upper"]))
    w = ab_stats.welch(*args, alpha=alpha)
    naive = np.mean((w["lower"] / args[1] <= truth) & (truth <= w["upper"] / args[1]))
    return delta, naive


def test_relative_ci_by_delta_method_covers_the_true_ratio():
    """95% delta-method CIs cover mean_t/mean_c - 1 in ~95% of simulated experiments;
    dividing the absolute CI by the control mean does not (it ignores the control mean's noise)."""
    reps = 4000
    delta, naive = _coverage(np.random.default_rng(11), reps, 400, 1.0, 1.6)
    low, high = stats.binom.interval(0.999, reps, 0.95)
    assert low / reps <= delta <= high / reps, delta
    assert naive < low / reps, naive


def test_holm_by_hand_and_nan():
    adjusted, reject = ab_stats.holm([0.01, 0.04, 0.03, np.nan], alpha=0.05)
    # sorted p 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, 2*0.03 = 0.06, max(1*0.04, 0.06) = 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert reject.tolist() == [True, False, False, False]


def test_srm_flags_mismatch_only_when_the_split_is_off():
    ok = ab_stats.srm({"C": 5000, "T1": 5080}, {"C": 1, "T1": 1})
    assert not ok["mismatch"] and ok["p_value"] > 0.1
    off = ab_stats.srm({"C": 5000, "T1": 5400}, {"C": 1, "T1": 1})
    assert off["mismatch"] and off["p_value"] == pytest.approx(stats.chisquare([5000, 5400]).pvalue)
    weighted = ab_stats.srm({"C": 5000, "T1": 2500, "T2": 2500}, {"C": 0.5, "T1": 0.25, "T2": 0.25})
    assert not weighted["mismatch"] and weighted["chi2"] == pytest.approx(0.0)
    missing_arm = ab_stats.srm({"C": 5000}, {"C": 1, "T1": 1})
    assert missing_arm["mismatch"] and missing_arm["observed"] == {"C": 5000, "T1": 0}
    unplanned = ab_stats.srm({"C": 5000, "T1": 5000, "T7": 3}, {"C": 1, "T1": 1})
    assert unplanned["mismatch"] and unplanned["unexpected_treatments"] == {"T7": 3}


def test_mde_is_detected_with_the_stated_power():
    """Simulated experiments whose true difference equals the MDE reject in ~80% of cases."""
    n_c, n_t, sd, reps = 300, 200, 2.0, 4000
    effect = ab_stats.mde(n_c, sd**2, n_t, sd**2, alpha=0.05, power=0.8)
    rng = np.random.default_rng(5)
    c = rng.normal(10.0, sd, (reps, n_c))
    t = rng.normal(10.0 + effect, sd, (reps, n_t))
    w = ab_stats.welch(n_c, c.mean(1), c.var(1, ddof=1), n_t, t.mean(1), t.var(1, ddof=1))
    power = np.mean(w["p_value"] < 0.05)
    low, high = stats.binom.interval(0.999, reps, 0.8)
    assert low / reps <= power <= high / reps, power


def test_compare_table_flags_a_real_effect_and_corrects_for_multiplicity():
    rng = np.random.default_rng(3)
    rows = []
    data = {("C", "a"): rng.normal(10, 1, 500), ("T1", "a"): rng.normal(10.5, 1, 500),   # a real +5%
            ("C", "b"): rng.normal(5, 1, 500), ("T1", "b"): rng.normal(5, 1, 500)}      # no effect
    for (treatment, metric), x in data.items():
        n, mean, var = summary_of(x)
        rows.append({"treatment": treatment, "metric": metric, "n": n, "mean": mean, "var": var})
    effects = ab_stats.compare(pd.DataFrame(rows), "C", alpha=0.05)
    assert list(effects.columns[:8]) == ["treatment", "metric", "effect", "lower", "upper", "control_mean",
                                         "treatment_mean", "significant"]
    a, b = effects.set_index("metric").loc["a"], effects.set_index("metric").loc["b"]
    assert a["significant"] and a["lower"] > 0 and a["effect"] == pytest.approx((a["treatment_mean"] / a["control_mean"] - 1) * 100)
    assert not b["significant"] and b["lower"] < 0 < b["upper"]
    assert (effects["p_holm"] >= effects["p_value"]).all()
    with pytest.raises(ValueError, match="control 'X'"):
        ab_stats.compare(pd.DataFrame(rows), "X")
