"""common.sequential_ab: boundaries against published tables and an independent integral, the look
history's append-only rules, and the A/A false-positive rate of reading the report every night.

Published boundaries (two-sided alpha = 0.05, five equally spaced looks, Lan–DeMets spending applied
to each side at alpha / 2): ld98 (Reboussin, DeMets, Kim & Lan 2000, Controlled Clinical Trials 21:190)
and its R port ldbounds, ``bounds((1:5)/5, iuse=c(1,1), alpha=c(0.025,0.025))``; gsDesign,
``gsDesign(k=5, test.type=2, alpha=0.025, sfu=sfLDOF)`` — 4.877, 3.357, 2.680, 2.290, 2.031 for the
O'Brien–Fleming type; ``iuse=c(2,2)`` / ``sfu=sfLDPocock``: 2.438, 2.427, 2.410, 2.397, 2.386 for the
Pocock type.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from common import ab_stats
from common.sequential_ab import boundaries, information_fraction, new_history, record_look, spending
from testkit.ab_simulation import rejections, simulate_nightly, skipped_nights

PUBLISHED = {
    "obrien_fleming": [4.877, 3.357, 2.680, 2.290, 2.031],
    "pocock": [2.438, 2.427, 2.410, 2.397, 2.386],
}
NULL = (4000, 10.0, 100.0, 4000, 10.0, 100.0)  # per-arm n, mean, variance with no difference at all


@pytest.mark.parametrize("kind", sorted(PUBLISHED))
def test_boundaries_match_published_five_look_tables(kind):
    # the tables are printed to 3 decimals
    assert boundaries(np.arange(1, 6) / 5, 0.05, kind) == pytest.approx(PUBLISHED[kind], abs=1e-3)


@pytest.mark.parametrize("kind", ["obrien_fleming", "pocock"])
def test_crossing_probability_equals_spending_by_multivariate_normal_cdf(kind):
    """Independent of the recursion: P(|Z_j| >= c_j for some j <= k) from scipy's multivariate normal CDF
    of the canonical process (Cov = sqrt(t_i / t_j)), at irregular looks (night 3 of 7 skipped)."""
    t = np.array([1, 2, 4, 7]) / 7
    c = boundaries(t, 0.05, kind)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    for k in range(1, len(t) + 1):
        inside = stats.multivariate_normal.cdf(c[:k], mean=np.zeros(k), cov=cov[:k, :k], lower_limit=-c[:k],
                                               abseps=1e-7, releps=1e-7, maxpts=200_000 * k)
        assert 1 - inside == pytest.approx(spending(t[k - 1], 0.05, kind), abs=2e-5)


def test_spending_ends_at_alpha_and_grows():
    for kind in ("obrien_fleming", "pocock"):
        assert spending(1.0, 0.05, kind) == 0.05
        assert spending(1.7, 0.05, kind) == 0.05  # a look past the plan has nothing more to spend
        assert spending(1.0, 0.01, kind) == 0.01
        assert np.all(np.diff(spending(np.linspace(0.01, 1, 50), 0.05, kind)) > 0)
    # O'Brien–Fleming keeps almost everything for the end; Pocock spends early
    assert spending(0.2, 0.05, "obrien_fleming") < 1e-5 < 0.01 < spending(0.2, 0.05, "pocock")
    with pytest.raises(ValueError, match="unknown spending"):
        spending(0.5, 0.05, "haybittle")


def test_single_final_look_is_the_fixed_horizon_test():
    for kind in ("obrien_fleming", "pocock"):
        assert boundaries([1.0], 0.05, kind)[0] == pytest.approx(stats.norm.isf(0.025), abs=1e-9)  # 1.95996
    assert boundaries([1.0], 0.01)[0] == pytest.approx(2.5758, abs=1e-4)


def test_obrien_fleming_boundaries_fall_and_final_stays_above_fixed_horizon():
    c = boundaries(np.arange(1, 15) / 14)
    assert np.all(np.diff(c) < 0)
    assert c[0] > 8 and 1.96 < c[-1] < 2.2
    pocock = boundaries(np.arange(1, 15) / 14, kind="pocock")
    assert np.all(np.diff(pocock) < 0)
    assert pocock[0] < c[0] / 2 and pocock[-1] > c[-1] + 0.3  # Pocock spends early and pays for it at the end


def test_adding_a_look_never_moves_earlier_boundaries():
    t = np.array([1, 2, 4, 5, 9, 14]) / 14
    full = boundaries(t)
    for k in range(1, len(t)):
        assert np.array_equal(boundaries(t[:k]), full[:k])
    # published boundaries are taken as given: a look after them spends against what was announced
    again = boundaries(t, published=full[:3])
    assert np.array_equal(again, full)


def test_boundaries_past_the_plan_and_invalid_fractions():
    c = boundaries([0.5, 1.0, 1.2])
    assert np.isinf(c[2])  # all alpha spent at t = 1
    last = boundaries([0.5, 1.25])  # first look past the plan spends what is left
    assert np.isfinite(last[1]) and last[1] > 1.96
    for bad in ([0.5, 0.5], [0.6, 0.4], [0.0, 1.0], []):
        with pytest.raises(ValueError, match="strictly increasing"):
            boundaries(bad)


def test_information_fraction_prefers_users_when_both_are_planned():
    assert information_fraction(night=3, planned_days=14) == pytest.approx(3 / 14)
    assert information_fraction(users=2_000, planned_users=10_000) == pytest.approx(0.2)
    assert information_fraction(night=7, users=2_000, planned_days=14, planned_users=10_000) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        information_fraction(night=3)
    with pytest.raises(ValueError):
        information_fraction(night=3, planned_users=1000)


def history(**kw):
    return new_history("mean_session_time", "2024-05-01", planned_days=kw.pop("planned_days", 14),
                       experiment="AB", treatment="T", **kw)


def test_look_fields_interval_and_json_round_trip():
    h = history()
    stats_ = (1000, 10.0, 100.0, 1000, 10.4, 110.0)
    h, look = record_look(h, "2024-05-03", *stats_)
    rel = ab_stats.relative_delta(*stats_)
    c = boundaries([3 / 14])[0]
    assert look["night"] == 3 and look["users"] == 2000 and look["fraction"] == pytest.approx(3 / 14)
    assert look["alpha_spent"] == pytest.approx(spending(3 / 14))
    assert look["boundary"] == pytest.approx(c)
    assert look["effect"] == pytest.approx(float(rel["effect"])) and look["z"] == pytest.approx(
        float(rel["effect"] / rel["se"]))
    assert look["lower"] == pytest.approx(look["effect"] - c * look["se"])
    assert look["upper"] == pytest.approx(look["effect"] + c * look["se"])
    assert look["decision"] == "continue"
    loaded = json.loads(json.dumps(h, allow_nan=False))  # strict JSON: no NaN or Infinity tokens
    assert loaded == h
    h2, _ = record_look(loaded, "2024-05-04", *stats_)
    assert len(h2["looks"]) == 2


def test_same_date_twice_returns_the_recorded_look_and_leaves_history_unchanged():
    h, first = record_look(history(), "2024-05-02", *NULL)
    h, _ = record_look(h, "2024-05-03", *NULL)
    before = json.dumps(h)
    # a backfill re-runs night 2 on data that changed since: the published look stands
    again, look = record_look(h, "2024-05-02", 9000, 10.0, 100.0, 9000, 30.0, 100.0)
    assert look == first and look["decision"] == "continue"
    assert json.dumps(again) == before and json.dumps(h) == before


def test_an_earlier_date_not_recorded_is_refused():
    h, _ = record_look(history(), "2024-05-02", *NULL)
    h, _ = record_look(h, "2024-05-05", *NULL)
    with pytest.raises(ValueError, match="before the last recorded look"):
        record_look(h, "2024-05-03", *NULL)
    with pytest.raises(ValueError, match="before the experiment's start"):
        record_look(history(), "2024-04-30", *NULL)


def test_record_look_does_not_mutate_its_input():
    h = history()
    record_look(h, "2024-05-02", *NULL)
    assert h["looks"] == []


def test_a_skipped_night_gives_boundaries_from_the_looks_actually_taken():
    h = history()
    published = []
    for day in ("2024-05-01", "2024-05-02", "2024-05-04", "2024-05-05"):  # night 3 skipped
        h, look = record_look(h, day, *NULL)
        published.append(look["boundary"])
    taken = boundaries(np.array([1, 2, 4, 5]) / 14)
    assert published == pytest.approx(list(taken), rel=1e-12)
    every_night = boundaries(np.arange(1, 6) / 14)
    assert published[2] != pytest.approx(every_night[3], abs=1e-3)  # night 4 spends nights 3 and 4's alpha
    assert [look["fraction"] for look in h["looks"]] == pytest.approx([1 / 14, 2 / 14, 4 / 14, 5 / 14])


def test_once_rejected_stays_rejected():
    h, look = record_look(history(), "2024-05-02", *NULL)
    assert look["decision"] == "continue"
    big = (4000, 10.0, 100.0, 4000, 14.0, 100.0)  # z ~ 15 against a boundary ~ 5.8
    h, look = record_look(h, "2024-05-03", *big)
    assert look["decision"] == "reject H0: treatment better"
    h, look = record_look(h, "2024-05-04", *NULL)  # the effect vanished: the decision does not
    assert abs(look["z"]) < 1 and look["decision"] == "reject H0: treatment better"
    # lower is better (e.g. request time): the same data is a worse treatment
    _, look = record_look(history(higher_is_better=False), "2024-05-03", *big)
    assert look["decision"] == "reject H0: treatment worse"


def test_final_look_without_rejection_stops_and_later_looks_cannot_reject():
    h = history(planned_days=3)
    for day in ("2024-05-01", "2024-05-02"):
        h, look = record_look(h, day, *NULL)
        assert look["decision"] == "continue"
    h, look = record_look(h, "2024-05-03", *NULL)
    assert look["fraction"] == 1.0 and look["alpha_spent"] == 0.05
    assert look["decision"] == "stopped: planned information reached, H0 not rejected"
    h, look = record_look(h, "2024-05-04", 4000, 10.0, 100.0, 4000, 30.0, 100.0)
    assert look["boundary"] is None and look["lower"] is None
    assert look["decision"] == "stopped: planned information reached, H0 not rejected"


def test_design_by_users_and_no_new_information_refused():
    h = new_history("mean_session_time", "2024-05-01", planned_days=14, planned_users=20_000)
    assert h["design"]["information"] == "users"
    h, look = record_look(h, "2024-05-01", 2000, 10.0, 100.0, 2000, 10.0, 100.0)
    assert look["fraction"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no new information"):
        record_look(h, "2024-05-02", 2000, 10.0, 100.0, 2000, 10.0, 100.0)
    with pytest.raises(ValueError, match="planned_days or planned_users"):
        new_history("mean_session_time", "2024-05-01")


def aa_false_positive_rates(experiments, distribution, seed):
    """A/A: 14 nightly looks, ~500 users per arm per night, 30% of experiments skip one night among 2..13."""
    skipped = skipped_nights(experiments, 14, share=0.3, seed=seed + 1)
    assert 0.25 < np.mean(skipped > 0) < 0.35 and set(np.unique(skipped)) <= set(range(14)) - {1}
    rejected = rejections(simulate_nightly(experiments, 14, 500, 0.0, distribution, seed), skipped)
    count = int(rejected["sequential"].sum())
    upper = proportion_confint(count, experiments, alpha=0.01, method="beta")[1]
    peeking_lower = proportion_confint(int(rejected["fixed_nightly"].sum()), experiments, alpha=0.01,
                                       method="beta")[0]
    print(f"A/A {distribution} {experiments} x 14 looks: sequential {count / experiments:.2%} "
          f"(99% CP upper {upper:.2%}), nightly fixed-horizon {rejected['fixed_nightly'].mean():.2%}, "
          f"fixed at end {rejected['fixed_end'].mean():.2%}")
    return upper, peeking_lower


def test_aa_nightly_reads_small_variant():
    """Fast tier: 4,000 A/A experiments (the full 20,000 run below is in the slow tier): the sequential
    rate is near 5% while the nightly fixed-horizon reader's is several times that."""
    upper, peeking_lower = aa_false_positive_rates(4_000, "exponential", seed=7)
    assert upper <= 0.065
    assert peeking_lower > 0.15


@pytest.mark.slow
def test_aa_nightly_reads_keep_false_positives_at_alpha():
    """The issue's A/A test, without Spark: 20,000 experiments x 14 nightly looks on an exponential
    session time (~6 s on 2 shared cores). The sequential decision's false-positive rate stays at 5%
    (99% Clopper–Pearson upper bound <= 5.5%), where stopping at the first nightly fixed-horizon
    significance gives ~22%."""
    upper, peeking_lower = aa_false_positive_rates(20_000, "exponential", seed=20240501)
    assert upper <= 0.055
    assert peeking_lower > 0.15


@pytest.mark.slow
def test_aa_nightly_reads_heavier_skew_lognormal():
    """The same on a lognormal session time (skewness 6). There the delta-method z of the relative effect
    is itself skewed at 500 users per arm (about -0.2 at night 1), the far tails the first
    O'Brien–Fleming looks test are a little heavier than normal, and the rate is 5.0-5.1% rather than
    5.0% (100,000 experiments: 5.07%); at 20,000 experiments the 99% bound would then exceed 5.5% for
    about one seed in three. 60,000 experiments (~30 s on 2 shared cores) make the bound measure the
    method rather than the simulation's noise."""
    upper, peeking_lower = aa_false_positive_rates(60_000, "lognormal", seed=20240502)
    assert upper <= 0.055
    assert peeking_lower > 0.15
