"""Sessionisation on hand-made sequences: interleaved users, unsorted input, trailing sessions,
duplicates, ties and treatment assignment (real Spark, the job's own transforms).

The scenarios use disjoint user ids and go through Spark together (one
DataFrame, a few actions), each test then checking its own users.
"""
from __future__ import annotations

import random

import pytest

from common.config import ConfigError
from jobs import analyze_ab

from .helpers import COURSE_LOG, event, valid_events

INTERLEAVED = [event("next", 100, 1, time=0.1), event("next", 200, 1, time=0.2), event("last", 300, 1, time=0.3),
               event("next", 400, 1, time=0.4), event("last", 500, 1, time=0.5),
               event("next", 150, 2, time=1.0), event("last", 250, 2, time=0.0), event("last", 350, 2, time=0.25)]
TRAILING = [event("next", 10, 7, time=0.5, latency=0.01), event("last", 20, 7, time=0.5, latency=0.01),
            event("next", 30, 7, time=1.0, latency=0.05), event("next", 40, 7, time=1.0, latency=0.05),
            event("next", 50, 7, time=1.0, latency=0.05)]
NO_LAST = [event("next", 1, 8), event("next", 2, 8)]
_PAIR = [event("next", 10, 11, track=5, time=0.5, rec=7), event("last", 20, 11, track=6, time=0.5)]
# Same timestamp but another track, or another recommendation, is a different event, not a duplicate.
DUPLICATES = _PAIR + _PAIR + [event("next", 10, 11, track=9, time=0.5), event("next", 10, 11, track=5, time=0.5, rec=8)]
TIE = [event("last", 10, 12, track=2), event("next", 10, 12, track=3)]
TREATMENTS = [
    event("next", 1, 21, treatment="T1"), event("last", 2, 21, treatment=None),   # one treatment, one event without
    event("last", 1, 22, treatment=None),                                        # never in the experiment
    event("next", 1, 23, treatment="C"), event("last", 2, 23, treatment="T1"),    # assignment changed: unusable
    event("last", 1, 24, treatment="C", experiment="OTHER"),                     # only another experiment
]
ALL = INTERLEAVED + TRAILING + NO_LAST + DUPLICATES + TIE + TREATMENTS
random.Random(7).shuffle(ALL)  # input order must not matter


@pytest.fixture(scope="module")
def sessions_df(spark):
    return analyze_ab.sessionize(valid_events(spark, ALL)).cache()


@pytest.fixture(scope="module")
def sessions(sessions_df):
    return {(r["user"], r["session"]): r.asDict() for r in sessions_df.collect()}


@pytest.fixture(scope="module")
def metrics(sessions_df):
    out = {}
    for rule in ("drop", "keep"):
        users = analyze_ab.user_metrics(analyze_ab.analysed_sessions(sessions_df, rule))
        out[rule] = {r["user"]: r.asDict() for r in users.collect()}
    return out


def test_interleaved_unsorted_users_get_their_own_sessions(sessions):
    s = {k: v for k, v in sessions.items() if k[0] in (1, 2)}
    assert sorted(s) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (s[(1, 0)]["length"], s[(1, 0)]["time"]) == (3, pytest.approx(0.6))
    assert (s[(1, 1)]["length"], s[(1, 1)]["time"]) == (2, pytest.approx(0.9))
    assert (s[(2, 0)]["length"], s[(2, 0)]["time"]) == (2, pytest.approx(1.0))
    assert (s[(2, 1)]["length"], s[(2, 1)]["time"]) == (1, pytest.approx(0.25))
    assert all(r["complete"] and r["status"] == "ok" and r["treatment"] == "C" for r in s.values())
    assert s[(1, 1)]["start"] == 400


def test_trailing_session_is_marked_and_dropped_or_kept(sessions, metrics, sessions_df):
    assert sessions[(7, 0)]["complete"] and not sessions[(7, 1)]["complete"]
    assert sessions[(7, 1)]["length"] == 3

    dropped = metrics["drop"][7]
    assert (dropped["sessions"], dropped["mean_session_length"], dropped["mean_session_time"]) == (1, 2.0, 1.0)
    assert dropped["mean_request_time"] == pytest.approx(0.01)

    kept = metrics["keep"][7]
    assert (kept["sessions"], kept["mean_session_length"], kept["mean_session_time"]) == (2, 2.5, 2.0)
    assert kept["mean_request_time"] == pytest.approx(0.17 / 5)

    with pytest.raises(ConfigError, match="trailing_session"):
        analyze_ab.analysed_sessions(sessions_df, "sometimes")


def test_user_without_any_last_has_only_a_trailing_session(sessions, metrics):
    assert [k for k in sessions if k[0] == 8] == [(8, 0)] and not sessions[(8, 0)]["complete"]
    assert 8 not in metrics["drop"]
    assert metrics["keep"][8]["sessions"] == 1 and metrics["keep"][8]["mean_session_length"] == 2


def test_exact_duplicates_dropped_distinct_events_kept(sessions, spark):
    assert [k for k in sessions if k[0] == 11] == [(11, 0)]
    assert sessions[(11, 0)]["length"] == 4
    kept = analyze_ab.sessionize(valid_events(spark, DUPLICATES), dedupe=False).collect()
    # Without dedupe the doubled `last` ends an extra session.
    assert sorted((r["session"], r["length"]) for r in kept) == [(0, 5), (1, 1)]


def test_next_before_last_at_the_same_timestamp(sessions):
    assert [k for k in sessions if k[0] == 12] == [(12, 0)]
    assert sessions[(12, 0)]["length"] == 2 and sessions[(12, 0)]["complete"]


def test_session_counts_count_each_user_once_per_group(sessions_df, sessions):
    # Users 1, 2, 7 have complete and trailing sessions, 8 only a trailing one, 22-24 are excluded.
    groups = {}
    for s in sessions.values():
        g = groups.setdefault((s["status"], s["complete"]), {"sessions": 0, "events": 0, "users": set()})
        g["sessions"] += 1
        g["events"] += s["length"]
        g["users"].add(s["user"])
    counts = analyze_ab.count_sessions(sessions_df)
    assert {k: (r["sessions"], r["events"], r["users"]) for k, r in counts.items()} == \
        {k: (g["sessions"], g["events"], len(g["users"])) for k, g in groups.items()}
    assert ("ok", False) in counts and counts[("ok", True)]["users"] < counts[("ok", True)]["sessions"]


def test_treatment_status(sessions, metrics):
    assert (sessions[(21, 0)]["status"], sessions[(21, 0)]["treatment"], sessions[(21, 0)]["length"]) == ("ok", "T1", 2)
    assert (sessions[(22, 0)]["status"], sessions[(22, 0)]["treatment"]) == ("no_treatment", None)
    assert (sessions[(23, 0)]["status"], sessions[(23, 0)]["treatment"]) == ("conflicting_treatment", None)
    assert sessions[(24, 0)]["status"] == "no_treatment"
    assert 21 in metrics["drop"]
    assert not {22, 23, 24} & (set(metrics["drop"]) | set(metrics["keep"]))


def test_course_log_fixture_hand_computed(spark):
    """The hand-written course-format log; expected values worked out by hand in the comments."""
    events = valid_events(spark, COURSE_LOG.read_text().splitlines())
    users = analyze_ab.user_metrics(analyze_ab.analysed_sessions(analyze_ab.sessionize(events), "drop"))
    got = {r["user"]: r.asDict() for r in users.collect()}
    expected = {
        # user: treatment, sessions, mean_session_length, mean_session_time, mean_request_time
        0: ("T1", 2, 2.5, 1.375, 0.011 / 5),   # [0.5, 1.0, 0.25] [0.8, 0.2]
        1: ("T1", 1, 2.0, 1.0, 0.012 / 2),     # [0.1, 0.9]; trailing [0.3] dropped
        2: ("C", 2, 2.5, 1.2, 0.011 / 5),      # [0.6] [0.4, 0.4, 1.0, 0.0] (one line out of order)
        3: ("T1", 1, 2.0, 1.0, 0.004),         # [0.7, 0.3]
        4: ("C", 2, 2.0, 1.7, 0.005 / 4),      # [0.9, 0.9, 0.6] [1.0]
        5: ("C", 3, 5 / 3, 0.5, 0.021 / 5),    # [0.2, 0.2] [0.5, 0.5] [0.1]
    }
    assert sorted(got) == sorted(expected)
    for user, (treatment, n_sessions, length, time, latency) in expected.items():
        row = got[user]
        assert (row["treatment"], row["sessions"]) == (treatment, n_sessions), user
        assert row["mean_session_length"] == pytest.approx(length), user
        assert row["mean_session_time"] == pytest.approx(time), user
        assert row["mean_request_time"] == pytest.approx(latency), user
