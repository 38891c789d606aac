"""Implicit-feedback ALS (Spark MLlib), fitted one way for the offline table and for botify's ALS lists.

Ratings are the split's training positives, each worth 1.0: the same rows
the MultiDAE learns from (``common.heldout_split.build_split``'s ``train``),
so an offline or A/B comparison differs in the model only.
"""
from __future__ import annotations

from typing import Dict

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def implicit_ratings(user_items: DataFrame) -> DataFrame:
    """(user_idx, items) -> one row per positive: user_idx, item (track_idx), rating 1.0."""
    return user_items.select("user_idx", F.explode("items").alias("item")).withColumn("rating", F.lit(1.0).cast("float"))


def fit_als(ratings: DataFrame, params: Dict, settings: Dict):
    """An ``ALSModel`` fitted with ``params`` (rank, reg_param, alpha) and ``settings`` (max_iter, seed)."""
    from pyspark.ml.recommendation import ALS

    als = ALS(implicitPrefs=True, rank=int(params["rank"]), regParam=float(params["reg_param"]),
              alpha=float(params["alpha"]), maxIter=int(settings["max_iter"]), seed=int(settings["seed"]),
              userCol="user_idx", itemCol="item", ratingCol="rating", coldStartStrategy="drop")
    return als.fit(ratings)
