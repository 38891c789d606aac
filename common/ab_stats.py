"""A/B statistics on per-group summary statistics (n, mean, sample variance).

Everything here needs only sufficient statistics, which Spark computes per
treatment in one aggregation, so the analysis scales with the number of
treatments and metrics, not of users. The functions accept numpy arrays and
broadcast, so a calibration run can test thousands of splits at once.

- ``welch``: difference of means, Welch t confidence interval and p-value (scipy);
- ``relative_delta``: relative effect ``mean_t / mean_c - 1`` with its CI by the
  delta method (the ratio's own variance, not the absolute CI divided by the control mean);
- ``holm``: Holm step-down adjustment across a family of tests (statsmodels);
- ``srm``: sample-ratio-mismatch chi-square of users per treatment against the planned shares;
- ``mde``: minimum detectable effect at a given power (statsmodels' t-test power);
- ``cuped``: CUPED variance reduction (Deng et al. 2013) from per-group sums of the
  metric and a pre-period covariate, giving the adjusted (n, mean, var) that
  ``compare`` takes like any other summary.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

METRICS = ("sessions", "mean_session_length", "mean_session_time", "mean_request_time")


def welch(n_c, mean_c, var_c, n_t, mean_t, var_t, alpha: float = 0.05) -> Dict[str, np.ndarray]:
    """Welch's unequal-variance t-test of ``mean_t - mean_c``.

    Returns diff, se, df (Welch–Satterthwaite), t, p_value and the two-sided
    ``1 - alpha`` confidence interval (lower, upper). Groups with fewer than two
    observations or no variance give NaN rather than a spurious certainty.
    """
    n_c, mean_c, var_c, n_t, mean_t, var_t = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (n_c, mean_c, var_c, n_t, mean_t, var_t))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        vc, vt = var_c / n_c, var_t / n_t
        se = np.sqrt(vc + vt)
        df = (vc + vt) ** 2 / (vc**2 / (n_c - 1) + vt**2 / (n_t - 1))
        t_stat, p_value = stats.ttest_ind_from_stats(
            mean_t, np.sqrt(var_t), n_t, mean_c, np.sqrt(var_c), n_c, equal_var=False
        )
        diff = mean_t - mean_c
        half = stats.t.ppf(1 - alpha / 2, df) * se
    invalid = (n_c < 2) | (n_t < 2) | ~(se > 0)
    out = {
        "diff": diff,
        "se": np.where(invalid, np.nan, se),
        "df": np.where(invalid, np.nan, df),
        "t": np.where(invalid, np.nan, t_stat),
        "p_value": np.where(invalid, np.nan, p_value),
        "lower": np.where(invalid, np.nan, diff - half),
        "upper": np.where(invalid, np.nan, diff + half),
    }
    return out


def relative_delta(n_c, mean_c, var_c, n_t, mean_t, var_t, alpha: float = 0.05) -> Dict[str, np.ndarray]:
    """Relative effect ``mean_t / mean_c - 1`` and its delta-method normal CI.

    For independent groups, Var(m_t / m_c) ~= Var(m_t) / m_c^2 + m_t^2 Var(m_c) / m_c^4,
    with Var(m) = s^2 / n. Unlike dividing the absolute CI by the control mean,
    this accounts for the control mean being an estimate too.
    """
    n_c, mean_c, var_c, n_t, mean_t, var_t = (np.asarray(v, dtype=float) for v in (n_c, mean_c, var_c, n_t, mean_t, var_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean_t / mean_c
        se = np.sqrt(var_t / (n_t * mean_c**2) + mean_t**2 * var_c / (n_c * mean_c**4))
    z = stats.norm.ppf(1 - alpha / 2)
    invalid = (mean_c == 0) | (n_c < 2) | (n_t < 2)
    return {
        "effect": np.where(invalid, np.nan, ratio - 1),
        "se": np.where(invalid, np.nan, se),
        "lower": np.where(invalid, np.nan, ratio - 1 - z * se),
        "upper": np.where(invalid, np.nan, ratio - 1 + z * se),
    }


def holm(p_values: Sequence[float], alpha: float = 0.05):
    """(Holm-adjusted p-values, reject flags); NaN p-values stay NaN and are not rejected."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    ok = ~np.isnan(p)
    if ok.any():
        rej, adj, _, _ = multipletests(p[ok], alpha=alpha, method="holm")
        adjusted[ok] = adj
        reject[ok] = rej
    return adjusted, reject


def srm(observed: Mapping[str, int], expected_shares: Mapping[str, float], alpha: float = 0.001) -> dict:
    """Sample-ratio-mismatch check: chi-square of users per treatment against the planned shares.

    A treatment seen in the data but absent from the plan is a mismatch by
    itself (the assignment is not what the analysis assumes).
    """
    names = list(expected_shares)
    unexpected = sorted(set(observed) - set(names))
    counts = np.array([observed.get(name, 0) for name in names], dtype=float)
    shares = np.array([expected_shares[name] for name in names], dtype=float)
    shares = shares / shares.sum()
    total = counts.sum()
    if total == 0:
        raise ValueError("SRM check: no users in any planned treatment")
    chi2, p_value = stats.chisquare(counts, total * shares)
    return {
        "observed": {name: int(c) for name, c in zip(names, counts)},
        "expected": {name: float(total * s) for name, s in zip(names, shares)},
        "unexpected_treatments": {name: int(observed[name]) for name in unexpected},
        "chi2": float(chi2),
        "p_value": float(p_value),
        "alpha": alpha,
        "mismatch": bool(p_value < alpha or unexpected),
    }


def mde(n_c: float, var_c: float, n_t: float, var_t: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute difference of means a two-sided t-test detects with ``power``.

    statsmodels solves for Cohen's d at these group sizes; d times the pooled
    standard deviation is the difference in the metric's units.
    """
    if n_c < 2 or n_t < 2:
        return float("nan")
    pooled = np.sqrt(((n_c - 1) * var_c + (n_t - 1) * var_t) / (n_c + n_t - 2))
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_c, alpha=alpha, power=power, ratio=n_t / n_c)
    return float(np.asarray(d).item() * pooled)


EFFECT_COLUMNS = [
    "treatment", "metric", "effect", "lower", "upper", "control_mean", "treatment_mean", "significant",
    "abs_effect", "abs_lower", "abs_upper", "p_value", "p_holm", "control_n", "treatment_n",
    "mde_abs", "mde_rel",
]


def compare(summary: pd.DataFrame, control: str, alpha: float = 0.05, power: float = 0.8,
            metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Every treatment against ``control`` on every metric.

    ``summary`` has one row per (treatment, metric) with n, mean, var (sample
    variance). The result has the seminar columns (treatment, metric, effect,
    lower, upper, control_mean, treatment_mean, significant) where effect and
    its CI are relative, in percent, and ``significant`` is the Holm-adjusted
    Welch p-value below ``alpha`` over all metric x treatment tests; then the
    absolute effect with its Welch CI, raw and adjusted p-values, group sizes
    and the MDE (absolute, and relative in percent of the control mean).
    """
    metrics = list(metrics or summary["metric"].drop_duplicates())
    indexed = summary.set_index(["treatment", "metric"])
    treatments = sorted(set(summary["treatment"]) - {control})
    if control not in set(summary["treatment"]):
        raise ValueError(f"control {control!r} not among the treatments {sorted(set(summary['treatment']))}")
    rows = []
    for treatment in treatments:
        for metric in metrics:
            c = indexed.loc[(control, metric)]
            t = indexed.loc[(treatment, metric)] if (treatment, metric) in indexed.index else None
            if t is None:
                continue
            args = (c["n"], c["mean"], c["var"], t["n"], t["mean"], t["var"])
            w = welch(*args, alpha=alpha)
            r = relative_delta(*args, alpha=alpha)
            m = mde(c["n"], c["var"], t["n"], t["var"], alpha=alpha, power=power)
            rows.append({
                "treatment": treatment,
                "metric": metric,
                "effect": float(r["effect"]) * 100,
                "lower": float(r["lower"]) * 100,
                "upper": float(r["upper"]) * 100,
                "control_mean": float(c["mean"]),
                "treatment_mean": float(t["mean"]),
                "abs_effect": float(w["diff"]),
                "abs_lower": float(w["lower"]),
                "abs_upper": float(w["upper"]),
                "p_value": float(w["p_value"]),
                "control_n": int(c["n"]),
                "treatment_n": int(t["n"]),
                "mde_abs": m,
                "mde_rel": m / float(c["mean"]) * 100 if c["mean"] else float("nan"),
            })
    effects = pd.DataFrame(rows, columns=[c for c in EFFECT_COLUMNS if c not in ("p_holm", "significant")])
    adjusted, reject = holm(effects["p_value"].to_numpy(), alpha)
    effects["p_holm"] = adjusted
    effects["significant"] = reject
    return effects[EFFECT_COLUMNS]


CUPED_SUMS = ("n", "n_x", "sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy", "sum_y_nox")


def cuped_theta(n, sum_x, sum_xx, sum_y, sum_xy):
    """(theta, mean_x) pooled over every user of the experiment: theta = cov(Y, X) / var(X).

    Pooling over all arms keeps theta the same whatever the assignment, so the
    adjusted difference of means stays unbiased; no variance in X means no
    adjustment (theta 0).
    """
    n, sum_x, sum_xx, sum_y, sum_xy = (np.asarray(v, dtype=float) for v in (n, sum_x, sum_xx, sum_y, sum_xy))
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = (sum_xy - sum_x * sum_y / n) / (n - 1)
        var_x = (sum_xx - sum_x * sum_x / n) / (n - 1)
        theta = np.where(var_x > 0, cov / var_x, 0.0)
    return theta, sum_x / n


def cuped_moments(n, sum_y, sum_yy, sum_x, sum_xx, sum_xy, theta, mean_x):
    """(mean, sample variance) of Y' = Y - theta (X - mean_x) in each group, from the group's sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_y, group_mean_x = sum_y / n, sum_x / n
        var_y = (sum_yy - n * mean_y**2) / (n - 1)
        var_x = (sum_xx - n * group_mean_x**2) / (n - 1)
        cov = (sum_xy - n * mean_y * group_mean_x) / (n - 1)
    mean = mean_y - theta * (group_mean_x - mean_x)
    var = var_y - 2 * theta * cov + theta**2 * var_x
    return mean, np.maximum(var, 0.0)


def fill_missing_covariate(sums: pd.DataFrame) -> pd.DataFrame:
    """Give users without pre-period data the covariate's mean over the users who have it (per metric).

    Their adjusted value is then their own metric (X - mean_x = 0): they keep
    their place in the test and simply get no variance reduction. Needs the
    sums over users with X (n_x, sum_x, sum_xx, sum_xy) and the sum of Y over
    those without (sum_y_nox).
    """
    out = sums.copy()
    per_metric = out.groupby("metric")[["n_x", "sum_x"]].transform("sum")
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(per_metric["n_x"] > 0, per_metric["sum_x"] / per_metric["n_x"], 0.0)
    missing = out["n"] - out["n_x"]
    out["sum_x"] = out["sum_x"] + fill * missing
    out["sum_xx"] = out["sum_xx"] + fill**2 * missing
    out["sum_xy"] = out["sum_xy"] + fill * out["sum_y_nox"]
    return out


def cuped(sums: pd.DataFrame) -> tuple:
    """CUPED-adjusted summary and the per-metric report, from one row per (treatment, metric) of ``CUPED_SUMS``.

    Returns ``(summary, report)``: ``summary`` has treatment, metric, n, mean,
    var of the adjusted metric (feed it to ``compare``); ``report`` has per
    metric theta, users with pre-period data and ``variance_reduction``, the
    share of the pooled within-group variance that the covariate removed.
    """
    filled = fill_missing_covariate(sums)
    rows, report = [], []
    for metric, group in filled.groupby("metric", sort=False):
        total = group[["n", "sum_x", "sum_xx", "sum_y", "sum_xy"]].sum()
        theta, mean_x = cuped_theta(*(float(total[c]) for c in ("n", "sum_x", "sum_xx", "sum_y", "sum_xy")))
        mean, var = cuped_moments(*(group[c].to_numpy(float) for c in ("n", "sum_y", "sum_yy", "sum_x", "sum_xx",
                                                                          "sum_xy")), theta, mean_x)
        n, sum_y, sum_yy = (group[c].to_numpy(float) for c in ("n", "sum_y", "sum_yy"))
        plain_var = (sum_yy - sum_y**2 / n) / (n - 1)
        for treatment, n_g, m, v in zip(group["treatment"], n, mean, var):
            rows.append({"treatment": treatment, "metric": metric, "n": int(n_g), "mean": float(m), "var": float(v)})
        pooled_plain = float(np.sum((n - 1) * plain_var))
        report.append({
            "metric": metric, "theta": float(theta), "users": int(n.sum()), "users_with_pre": int(group["n_x"].sum()),
            "variance_reduction": 1 - float(np.sum((n - 1) * var)) / pooled_plain if pooled_plain > 0 else float("nan"),
        })
    return pd.DataFrame(rows), pd.DataFrame(report)
