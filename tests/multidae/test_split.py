"""The held-out-users split: deterministic, the paper's 80/20 fold-in, targets never in the training rows."""
from pyspark.sql import functions as F

from common.heldout_split import build_split, positives_by_user

SPLIT = {"validation_fraction": 0.25, "test_fraction": 0.25, "heldout_fraction": 0.2, "min_items": 5, "seed": 3}


def interactions(spark):
    rows = []
    for u in range(40):
        n = 3 if u % 10 == 0 else 5 + u % 7  # every tenth user too small to hold out
        rows += [(u, 100 + u, u, t, 1) for t in range(n)]
        rows.append((u, 100 + u, u, 99, 0))  # a negative: never an item
    return spark.createDataFrame(rows, "user_idx int, user long, _u int, track_idx int, label int")


def test_positives_only(spark):
    got = {r["user_idx"]: r["items"] for r in positives_by_user(interactions(spark)).collect()}
    assert got[1] == [0, 1, 2, 3, 4, 5] and all(99 not in v for v in got.values())


def test_session_starts_count_as_positives_when_asked(spark):
    df = spark.createDataFrame(
        [(0, 100, 1, 1, 0), (0, 100, 2, 0, 2), (0, 100, 3, 0, 0), (1, 101, 4, 0, 1)],
        "user_idx int, user long, track_idx int, label int, starts int")
    seed_rule = {r["user_idx"]: r["items"] for r in positives_by_user(df).collect()}
    with_starts = {r["user_idx"]: r["items"] for r in positives_by_user(df, session_starts=True).collect()}
    assert seed_rule == {0: [1]}
    assert with_starts == {0: [1, 2], 1: [4]}
    # Interactions extracted before the column existed: the label alone, not an error.
    assert {r["user_idx"]: r["items"] for r in positives_by_user(df.drop("starts"), session_starts=True).collect()} == {0: [1]}


def test_split_roles_fold_in_and_targets(spark):
    df = interactions(spark)
    train, heldout = build_split(df, SPLIT)
    train_rows = {r["user_idx"]: r["items"] for r in train.collect()}
    held = {r["user_idx"]: r for r in heldout.collect()}
    assert set(train_rows) == set(range(40)) and train.count() == 40
    assert {r["role"] for r in held.values()} == {"validation", "test"}
    assert all(u % 10 != 0 for u in held)  # users below min_items always train
    for u, r in held.items():
        n = 5 + u % 7
        assert sorted(r["fold_in"] + r["targets"]) == list(range(n))
        assert not set(r["fold_in"]) & set(r["targets"])
        assert len(r["targets"]) == n - int(0.8 * n + 1e-9)
        assert train_rows[u] == r["fold_in"]  # a held-out user trains on the fold-in; the targets stay hidden
    again_train, again_held = build_split(df, SPLIT)
    assert {r["user_idx"]: (r["role"], r["targets"]) for r in again_held.collect()} == \
        {u: (r["role"], r["targets"]) for u, r in held.items()}
    other = build_split(df, {**SPLIT, "seed": 4})[1]
    assert {r["user_idx"] for r in other.collect()} != set(held)
