"""The held-out-users split (after Liang et al. 2018), one definition for training, the sweep and evaluation.

Users with at least ``split.min_items`` positives are drawn into validation /
test by a seeded hash of the user; for each held-out user a seeded
``heldout_fraction`` of their items are the targets and the rest the fold-in.
The targets are the only thing training never sees: everyone else's items and
the held-out users' fold-ins train. (The paper's strong-generalisation protocol
leaves held-out users out entirely; this model goes on to serve those users,
who are the most active ones, and leaving them out cost the demo's A/B effect
~8 points.)
"""
from __future__ import annotations

import logging
from typing import Dict, Tuple

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


def positives_by_user(interactions: DataFrame, session_starts: bool = False) -> DataFrame:
    """One row per user with at least one positive: user_idx, user, items (sorted track_idx list).

    A positive is ``label == 1`` (the seed's time rule) or, with
    ``session_starts``, a track the user began a session with (the
    interactions' ``starts``; runs extracted before that column existed fall
    back to the label alone).
    """
    positive = F.col("label") == 1
    if session_starts:
        if "starts" in interactions.columns:
            positive = positive | (F.col("starts") > 0)
        else:
            log.warning("interactions have no 'starts' column (extracted by an older version): positives are label == 1 only")
    return (
        interactions.where(positive)
        .groupBy("user_idx", "user")
        .agg(F.sort_array(F.collect_set(F.col("track_idx").cast("int"))).alias("items"))
    )


def _unit_hash(seed: int, *cols) -> F.Column:
    """A deterministic pseudo-uniform number in [0, 1) from the columns and a seed."""
    return F.pmod(F.xxhash64(F.lit(int(seed)), *cols), F.lit(1_000_003)) / F.lit(1_000_003.0)


def assign_roles(user_items: DataFrame, split: Dict) -> DataFrame:
    """Add ``role``: validation / test for a seeded share of users with >= min_items positives, else train."""
    u = _unit_hash(int(split["seed"]), F.col("user_idx"))
    eligible = F.size("items") >= int(split["min_items"])
    val, test = float(split["validation_fraction"]), float(split["test_fraction"])
    role = (
        F.when(eligible & (u < val), "validation")
        .when(eligible & (u < val + test), "test")
        .otherwise("train")
    )
    return user_items.withColumn("role", role)


def fold_in_split(heldout: DataFrame, split: Dict) -> DataFrame:
    """Per held-out user: ``targets`` = a seeded ``heldout_fraction`` of the items (at least one), ``fold_in`` the rest.

    The count matches the paper's code: ``n - int((1 - fraction) * n)`` targets.
    """
    fraction = float(split["heldout_fraction"])
    exploded = heldout.select("user_idx", "user", "role", F.explode("items").alias("item"), F.size("items").alias("n"))
    order = Window.partitionBy("user_idx").orderBy(_unit_hash(int(split["seed"]) + 1, F.col("user_idx"), F.col("item")), "item")
    n_targets = F.col("n") - F.floor(F.col("n") * F.lit(1.0 - fraction) + F.lit(1e-9))
    ranked = exploded.withColumn("is_target", F.row_number().over(order) <= F.greatest(n_targets, F.lit(1)))
    return ranked.groupBy("user_idx", "user", "role").agg(
        F.sort_array(F.collect_list(F.when(~F.col("is_target"), F.col("item")))).alias("fold_in"),
        F.sort_array(F.collect_list(F.when(F.col("is_target"), F.col("item")))).alias("targets"),
    )


def build_split(interactions: DataFrame, split: Dict, session_starts: bool = False) -> Tuple[DataFrame, DataFrame]:
    """(train: user_idx, user, items) and (held-out: user_idx, user, role, fold_in, targets).

    ``train`` has a row for every user: a held-out user's row is their fold-in.
    """
    roles = assign_roles(positives_by_user(interactions, session_starts), split)
    heldout = fold_in_split(roles.where(F.col("role") != "train"), split)
    train = roles.where(F.col("role") == "train").select("user_idx", "user", "items").unionByName(
        heldout.select("user_idx", "user", F.col("fold_in").alias("items")))
    return train, heldout


def collect_heldout(heldout: DataFrame, role: str) -> Dict:
    """Held-out users of one role as numpy arrays (small: a share of the users), sorted by user_idx."""
    rows = heldout.where(F.col("role") == role).orderBy("user_idx").collect()
    return {
        "user_idx": np.array([r["user_idx"] for r in rows], dtype=np.int64),
        "fold_in": [np.array(r["fold_in"], dtype=np.int64) for r in rows],
        "targets": [np.array(r["targets"], dtype=np.int64) for r in rows],
    }
