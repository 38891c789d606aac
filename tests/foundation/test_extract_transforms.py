"""extract_interactions' pure transforms on tiny hand-made DataFrames."""
import pytest

from common import event_log_reader
from jobs import extract_interactions as ex

EVENT_COLUMNS = ("message string, timestamp long, user long, track long, time double, latency double, "
                 "recommendation long, experiments map<string,string>")


def events(spark, rows):
    """Events from (message, timestamp, user, track, time) tuples; latency, recommendation, experiments left empty."""
    return spark.createDataFrame([(*row, None, None, {}) for row in rows], EVENT_COLUMNS)


def by_pair(df):
    return {(r["user"], r["track"]): r.asDict() for r in df.collect()}


def test_aggregate_plays_total_max(spark):
    df = events(spark, [
        ("next", 1, 1, 10, 0.2),
        ("next", 2, 1, 10, 0.5),
        ("last", 3, 1, 11, 0.9),
        ("next", 4, 2, 10, 0.1),
    ])
    got = by_pair(ex.aggregate_interactions(df, 0.8))
    assert got[(1, 10)]["plays"] == 2
    assert got[(1, 10)]["total_time"] == pytest.approx(0.7)
    assert got[(1, 10)]["max_time"] == 0.5
    assert got[(1, 10)]["label"] == 0
    assert got[(1, 11)]["label"] == 1
    assert got[(2, 10)]["plays"] == 1


def test_label_threshold_is_strict(spark):
    df = events(spark, [("next", 1, 1, 1, 0.8), ("next", 2, 1, 2, 0.81), ("next", 3, 1, 3, 0.79)])
    got = by_pair(ex.aggregate_interactions(df, 0.8))
    assert [got[(1, t)]["label"] for t in (1, 2, 3)] == [0, 1, 0]
    # The threshold is a parameter, not a constant.
    assert by_pair(ex.aggregate_interactions(df, 0.5))[(1, 1)]["label"] == 1


def test_label_uses_max_not_last(spark):
    df = events(spark, [("next", 1, 1, 1, 0.95), ("next", 2, 1, 1, 0.1)])
    assert by_pair(ex.aggregate_interactions(df, 0.8))[(1, 1)]["label"] == 1


def test_session_starts_are_first_next_after_last(spark):
    # user 1: two sessions (start 10, then start 13); the first ends with its final `next`
    # and its `last` in the same millisecond (common.sessions: the `next` sorts first).
    # user 2: a session with no closing `last` yet.
    df = events(spark, [
        ("next", 1, 1, 10, 0.0), ("next", 2, 1, 11, 0.9), ("last", 3, 1, 12, 0.5), ("next", 3, 1, 12, 0.5),
        ("next", 4, 1, 13, 0.0), ("last", 5, 1, 13, 0.3),
        ("next", 7, 2, 10, 0.0), ("next", 8, 2, 13, 0.5),
    ])
    starts = {(r["user"], r["timestamp"]): r["start"] for r in ex.mark_session_starts(df).collect()
              if r["message"] == "next"}
    assert starts == {(1, 1): 1, (1, 2): 0, (1, 3): 0, (1, 4): 1, (2, 7): 1, (2, 8): 0}
    got = by_pair(ex.aggregate_interactions(df, 0.8))
    assert {pair: row["starts"] for pair, row in got.items()} == {(1, 10): 1, (1, 11): 0, (1, 12): 0, (1, 13): 1,
                                                                  (2, 10): 1, (2, 13): 0}
    # The time label is untouched: a session's first track is logged with the client's first-track time.
    assert got[(1, 13)]["label"] == 0 and got[(1, 11)]["label"] == 1


def test_dense_index_is_ordered_and_dense(spark):
    df = spark.createDataFrame([(30,), (10,), (20,), (10,)], "user long")
    got = {r["user"]: r["user_idx"] for r in ex.dense_index(df, "user", "user_idx").collect()}
    assert got == {10: 0, 20: 1, 30: 2}


def test_track_index_follows_catalog(spark):
    catalog = spark.createDataFrame([(0, "a", "x"), (1, "a", "y"), (2, "b", "z")], "track long, artist string, title string")
    seen = spark.createDataFrame([(2,)], "track long")
    got = {r["track"]: r["track_idx"] for r in ex.track_index(catalog, seen).collect()}
    assert got == {0: 0, 1: 1, 2: 2}
    without = {r["track"]: r["track_idx"] for r in ex.track_index(None, seen).collect()}
    assert without == {2: 0}


def test_unknown_tracks_are_marked(spark):
    parsed = spark.createDataFrame([(None, 1), (None, 99), ("bad_time", 99)], "reason string, track long")
    catalog = spark.createDataFrame([(1,)], "track long")
    reasons = sorted((r["reason"] or "", r["track"]) for r in event_log_reader.mark_unknown_tracks(parsed, catalog).collect())
    assert reasons == [("", 1), ("bad_time", 99), ("unknown_track", 99)]


def test_top_tracks_by_positive_plays(spark):
    df = events(spark, [
        ("next", 1, 1, 7, 0.9), ("next", 2, 2, 7, 0.9), ("next", 3, 3, 7, 0.1),
        ("next", 4, 1, 5, 0.9), ("next", 5, 2, 5, 0.85),
        ("next", 6, 1, 3, 0.95),
        ("next", 7, 1, 9, 0.2), ("next", 8, 2, 9, 0.3), ("next", 9, 3, 9, 0.4),
    ])
    interactions = ex.aggregate_interactions(df, 0.8)
    # 7 and 5 tie on two positives: ties go to the smaller id; 9 has no positive plays.
    assert ex.top_tracks(interactions, 10) == [5, 7, 3]
    assert ex.top_tracks(interactions, 1) == [5]
    # Plays are counted, not (user, track) pairs: a second positive play of 3 by the same user ties it with 5 and 7.
    again = df.union(events(spark, [("next", 10, 1, 3, 0.9)]))
    assert ex.top_tracks(ex.aggregate_interactions(again, 0.8), 10) == [3, 5, 7]
    # The threshold is the aggregate's: at 0.3, 9's play of 0.4 is positive and ties it with 3.
    assert ex.top_tracks(ex.aggregate_interactions(df, 0.3), 10) == [5, 7, 3, 9]
