"""The job's user-level metrics and summaries against an independent pandas computation on the same files."""
from __future__ import annotations

import numpy as np
import pytest

from common import ab_stats

from .helpers import pandas_user_metrics, read_jsonl

# The shared `simulated` fixture generates and analyses 30,000 events: tens of seconds.
pytestmark = pytest.mark.slow


def test_user_metrics_match_pandas(simulated):
    raw = read_jsonl(simulated["paths"])
    expected = pandas_user_metrics(raw, "AB", trailing="drop")
    got = simulated["users"]
    # the fixture has duplicates and trailing sessions: the reference must have seen them too
    assert raw.duplicated(["message", "timestamp", "user", "track", "time"]).sum() == 200
    assert len(got) == len(expected) > 1000
    assert got["user"].tolist() == expected["user"].tolist()
    assert got["treatment"].tolist() == expected["treatment"].tolist()
    assert got["sessions"].tolist() == expected["sessions"].tolist()
    for metric in ("mean_session_length", "mean_session_time", "mean_request_time"):
        np.testing.assert_allclose(got[metric].to_numpy(), expected[metric].to_numpy(), rtol=1e-9, err_msg=metric)


def test_summary_and_welch_match_scipy_on_user_rows(simulated):
    from scipy import stats

    users, summary = simulated["users"], simulated["summary"].set_index(["treatment", "metric"])
    for metric in ab_stats.METRICS:
        c = users.loc[users["treatment"] == "C", metric].dropna().to_numpy()
        t = users.loc[users["treatment"] == "T1", metric].dropna().to_numpy()
        sc, st = summary.loc[("C", metric)], summary.loc[("T1", metric)]
        assert (sc["n"], st["n"]) == (len(c), len(t))
        np.testing.assert_allclose([sc["mean"], sc["var"], st["mean"], st["var"]],
                                   [c.mean(), c.var(ddof=1), t.mean(), t.var(ddof=1)], rtol=1e-9)
        w = ab_stats.welch(sc["n"], sc["mean"], sc["var"], st["n"], st["mean"], st["var"])
        assert float(w["p_value"]) == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-7)


def test_report_effects_from_summary_are_consistent(simulated):
    effects = ab_stats.compare(simulated["summary"], "C")
    users = simulated["users"]
    means = users.groupby("treatment")[list(ab_stats.METRICS)].mean()
    for row in effects.itertuples():
        np.testing.assert_allclose(row.control_mean, means.loc["C", row.metric], rtol=1e-12)
        np.testing.assert_allclose(row.treatment_mean, means.loc["T1", row.metric], rtol=1e-12)
        np.testing.assert_allclose(row.effect, (means.loc["T1", row.metric] / means.loc["C", row.metric] - 1) * 100, rtol=1e-9)
