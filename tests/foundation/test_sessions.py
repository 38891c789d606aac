"""The one session rule (common.sessions) as both jobs apply it: ties, duplicates, input order."""
from __future__ import annotations

from common import sessions
from jobs import analyze_ab
from jobs import extract_interactions as ex

COLUMNS = ("message string, timestamp long, user long, track long, time double, latency double, "
           "recommendation long, experiments map<string,string>")


def frame(spark, rows, partitions=1):
    """Events from (message, timestamp, user, track, time[, recommendation]) tuples, all in arm C of AB."""
    full = [(m, ts, u, t, time, 0.001, rec[0] if rec else None, {"AB": "C"}) for m, ts, u, t, time, *rec in rows]
    return spark.createDataFrame(full, COLUMNS).repartition(partitions)


# user 1: the session's final `next` and its `last` share a millisecond (the usual case).
# user 2: a `last` and the next session's first `next` share one; the rule puts the `next` first all the same.
TIE = [
    ("next", 1, 1, 10, 0.0), ("next", 2, 1, 11, 0.9), ("last", 2, 1, 12, 0.5), ("next", 3, 1, 13, 0.0), ("last", 4, 1, 14, 0.3),
    ("next", 1, 2, 20, 0.0), ("last", 5, 2, 21, 0.5), ("next", 5, 2, 22, 0.0), ("next", 6, 2, 24, 0.7), ("last", 9, 2, 23, 0.2),
]


def test_a_tie_gives_the_same_sessions_in_both_jobs(spark):
    df = frame(spark, TIE)
    starts = {(r["user"], r["timestamp"]) for r in ex.mark_session_starts(df).collect() if r["start"]}
    ab = analyze_ab.sessionize(analyze_ab.with_treatment(df, "AB")).collect()
    # Every session here begins with a `next`, so extract's starts are analyze_ab's sessions.
    assert starts == {(r["user"], r["start"]) for r in ab}
    assert starts == {(1, 1), (1, 3), (2, 1), (2, 6)}
    assert sorted((r["user"], r["session"], r["length"]) for r in ab) == [(1, 0, 3), (1, 1, 2), (2, 0, 3), (2, 1, 2)]


# Two requests of one user in one millisecond that got different recommendations, one of them logged twice;
# users 3, 13 and 23 send them in three different orders (one DataFrame: one Spark job per check).
NEAR = [("next", 5, 3, 1, 0.5, 460), ("next", 5, 3, 1, 0.5, 550), ("next", 5, 3, 1, 0.5, 460), ("last", 9, 3, 2, 0.4)]
ORDERS = {3: NEAR, 13: NEAR[::-1], 23: [NEAR[1], NEAR[3], NEAR[0], NEAR[2]]}


def test_only_identical_events_are_duplicates_whatever_the_input_order(spark):
    rows = [(m, ts, user, t, time, *rec) for user, order in ORDERS.items() for m, ts, _, t, time, *rec in order]
    df = frame(spark, rows, partitions=2)
    kept = {}
    for r in sessions.drop_duplicate_events(df).collect():
        kept.setdefault(r["user"], []).append((r["message"], r["recommendation"]))
    assert {u: sorted(v, key=str) for u, v in kept.items()} == {u: [("last", None), ("next", 460), ("next", 550)]
                                                                for u in ORDERS}
    plays = {(r["user"], r["track"]): r["plays"] for r in ex.aggregate_interactions(sessions.drop_duplicate_events(df), 0.8).collect()}
    assert plays == {pair: n for u in ORDERS for pair, n in (((u, 1), 2), ((u, 2), 1))}
    ab = analyze_ab.sessionize(analyze_ab.with_treatment(df, "AB")).collect()
    assert sorted((r["user"], r["session"], r["length"]) for r in ab) == [(u, 0, 3) for u in sorted(ORDERS)]


def test_every_field_counts_for_identity(spark):
    base = ("next", 5, 4, 1, 0.5, 7)
    rows = [(*base, 0.001, {"AB": "C"}), (*base, 0.002, {"AB": "C"}), (*base, 0.001, {"AB": "T1"}),
            (*base, 0.001, {"AB": "C", "X": "C"}), (*base, 0.001, {"X": "C", "AB": "C"})]
    df = spark.createDataFrame([(m, ts, u, t, time, lat, rec, exp) for m, ts, u, t, time, rec, lat, exp in rows], COLUMNS)
    # latency differs, experiments differ, and the last two maps are equal (key order is not identity).
    assert sessions.drop_duplicate_events(df).count() == 4


# A session's first two requests in one millisecond (a fast botify answers the first before the client sends the
# second): each `next` names the track it answers, so the chain, not the track ids, says which came first. User 5's
# opener (track 30, answered with 12) has the larger id in both sessions; user 6's chain agrees with the ids.
CHAIN = [
    ("next", 7, 5, 12, 0.6, 40), ("next", 7, 5, 30, 0.0, 12), ("next", 8, 5, 40, 0.2, 41), ("last", 9, 5, 41, 0.1),
    ("next", 20, 5, 31, 0.0, 15), ("next", 20, 5, 15, 0.9, 16), ("last", 21, 5, 16, 0.3),
    ("next", 7, 6, 3, 0.0, 9), ("next", 7, 6, 9, 0.5, 11), ("last", 8, 6, 11, 0.4),
]


def test_two_requests_in_one_millisecond_go_in_the_order_of_the_recommendation_chain(spark):
    df = frame(spark, CHAIN, partitions=2)
    starts = sorted((r["user"], r["track"]) for r in ex.mark_session_starts(df).collect() if r["start"])
    assert starts == [(5, 30), (5, 31), (6, 3)]
    ab = analyze_ab.sessionize(analyze_ab.with_treatment(df, "AB")).collect()
    assert sorted((r["user"], r["session"], r["length"], r["start"]) for r in ab) == [
        (5, 0, 4, 7), (5, 1, 3, 20), (6, 0, 3, 7)]
