"""CUPED from per-group sums against a by-hand computation on the users themselves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common import ab_stats


def sums_of(users: pd.DataFrame, metric: str = "m") -> pd.DataFrame:
    """The per-(treatment, metric) sums the job computes in Spark, here with pandas; x is NaN without pre-period data."""
    rows = []
    for treatment, g in users.groupby("treatment"):
        has = g["x"].notna()
        rows.append({"treatment": treatment, "metric": metric, "n": len(g), "n_x": int(has.sum()),
                     "sum_y": g["y"].sum(), "sum_yy": (g["y"] ** 2).sum(), "sum_x": g.loc[has, "x"].sum(),
                     "sum_xx": (g.loc[has, "x"] ** 2).sum(), "sum_xy": (g.loc[has, "x"] * g.loc[has, "y"]).sum(),
                     "sum_y_nox": g.loc[~has, "y"].sum()})
    return pd.DataFrame(rows)


def test_equals_the_hand_computation_with_users_lacking_pre_period_data():
    users = pd.DataFrame({
        "treatment": ["C"] * 5 + ["T1"] * 4,
        "y": [1.0, 2.5, 3.0, 0.5, 2.0, 3.5, 2.0, 4.0, 1.5],
        "x": [1.2, 2.0, np.nan, 0.4, 2.2, 3.0, 1.9, np.nan, 1.0],
    })
    # by hand: the missing x take the mean of the present ones; theta = cov(y, x) / var(x) over all users
    x = users["x"].fillna(users["x"].mean()).to_numpy()
    y = users["y"].to_numpy()
    theta = np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1)
    adjusted = y - theta * (x - x.mean())
    summary, report = ab_stats.cuped(sums_of(users))
    for treatment in ("C", "T1"):
        mask = (users["treatment"] == treatment).to_numpy()
        row = summary.set_index("treatment").loc[treatment]
        assert row["n"] == mask.sum()
        assert row["mean"] == pytest.approx(adjusted[mask].mean())
        assert row["var"] == pytest.approx(adjusted[mask].var(ddof=1))
    r = report.iloc[0]
    assert r["theta"] == pytest.approx(theta)
    assert (r["users"], r["users_with_pre"]) == (9, 7)
    plain = sum(users.loc[users.treatment == t, "y"].var(ddof=1) * ((users.treatment == t).sum() - 1) for t in ("C", "T1"))
    fitted = sum(adjusted[(users.treatment == t).to_numpy()].var(ddof=1) * ((users.treatment == t).sum() - 1)
                 for t in ("C", "T1"))
    assert r["variance_reduction"] == pytest.approx(1 - fitted / plain)


def test_a_correlated_covariate_shrinks_the_ci_and_an_unrelated_one_does_not():
    rng = np.random.default_rng(7)
    n = 4000
    x = rng.gamma(2.0, 1.0, n)
    treatment = np.where(rng.random(n) < 0.5, "C", "T1")
    y = 0.8 * x + rng.normal(0, 0.5, n) + np.where(treatment == "T1", 0.05, 0.0)
    users = pd.DataFrame({"treatment": treatment, "y": y, "x": x})
    plain_summary = pd.DataFrame([{"treatment": t, "metric": "m", "n": len(g), "mean": g["y"].mean(),
                                   "var": g["y"].var(ddof=1)} for t, g in users.groupby("treatment")])
    plain = ab_stats.compare(plain_summary, "C").iloc[0]
    adjusted_summary, report = ab_stats.cuped(sums_of(users))
    adjusted = ab_stats.compare(adjusted_summary, "C").iloc[0]
    assert report.iloc[0]["variance_reduction"] > 0.5
    assert adjusted["abs_upper"] - adjusted["abs_lower"] < 0.7 * (plain["abs_upper"] - plain["abs_lower"])
    assert adjusted["abs_lower"] < 0.05 < adjusted["abs_upper"]  # still covers the true effect

    users["x"] = rng.permutation(x)  # same values, no relation to y
    _, unrelated = ab_stats.cuped(sums_of(users))
    assert abs(unrelated.iloc[0]["variance_reduction"]) < 0.01


def test_no_pre_period_data_at_all_leaves_the_metric_as_it_was():
    users = pd.DataFrame({"treatment": ["C", "C", "C", "T1", "T1"], "y": [1.0, 2.0, 4.0, 3.0, 5.0], "x": [np.nan] * 5})
    summary, report = ab_stats.cuped(sums_of(users))
    c = summary.set_index("treatment").loc["C"]
    assert c["mean"] == pytest.approx(7 / 3) and c["var"] == pytest.approx(np.var([1.0, 2.0, 4.0], ddof=1))
    assert report.iloc[0]["theta"] == 0 and report.iloc[0]["users_with_pre"] == 0
