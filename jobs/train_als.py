"""train_als: implicit ALS on an interactions run -> every user's top-50 tracks, a recommendations version.

The second model botify can serve beside the MultiDAE (the MODELS experiment
in conf/botify.yml). Spark MLlib ALS (implicit preferences, ``als.rank``,
``reg_param``, ``alpha``) is fitted on every user's positives as the MultiDAE
defines them (``multidae.session_starts``): infer_recommendations computes the
MultiDAE's lists from every positive too, so the two sets differ in the model
only. Each user of the run (``users/``) gets the ``infer.top_k`` tracks with
the highest user x item factor scores, best first (consumed tracks excluded
only with ``infer.exclude_consumed``, as for the MultiDAE); a user without
positives has no factor and gets the most popular tracks of the ratings.
Scoring runs in ``mapInPandas`` with the item factors broadcast once.

Output ``<root>/recommendations/<version>/`` in the recommendations contract
(``common.recommendation_lists.publish``; default version ``als-<run>``), then the
pointer ``als.pointer`` (``LATEST-als``), which botify's ``als`` set follows.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, LongType, StructField, StructType

from common import run_record
from common.als import fit_als, implicit_ratings
from common.config import load_config
from common.heldout_split import positives_by_user
from common.interactions_run import interactions_dir, item_index
from common.paths import resolve
from common.recommendation_lists import publish
from common.spark import add_job_arguments, get_session
from common.storage import HadoopStorage, join

log = logging.getLogger(__name__)

LISTS_SCHEMA = StructType([
    StructField("user", LongType(), False),
    StructField("tracks", ArrayType(LongType(), False), False),
])


def top_items(user_factors: np.ndarray, item_factors: np.ndarray, k: int, known: np.ndarray,
              consumed: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """Item positions of the ``k`` best scores per user, best first, equal scores by lower position.

    Items without a factor (``known`` False: no rating) and, if given, each
    user's ``consumed`` items score -inf, so they come only after every other item.
    """
    scores = user_factors @ item_factors.T
    scores[:, ~known] = -np.inf
    for row, items in enumerate(consumed or ()):
        scores[row, items] = -np.inf
    negated = -scores
    kth = np.partition(negated, k - 1, axis=1)[:, [k - 1]]
    # Everything better than the k-th score, then the lowest positions among those equal to it.
    better, equal = negated < kth, negated == kth
    take = better | (equal & (np.cumsum(equal, axis=1) <= k - better.sum(axis=1, keepdims=True)))
    candidates = np.nonzero(take)[1].reshape(len(scores), k)  # row-major: ascending positions per row
    order = np.argsort(np.take_along_axis(negated, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def popular_items(ratings: DataFrame, n_items: int, k: int) -> np.ndarray:
    """The ``k`` items with the most ratings, most first, equal counts by lower position."""
    counts = np.zeros(n_items, dtype=np.int64)
    for row in ratings.groupBy("item").count().collect():
        counts[row["item"]] = row["count"]
    return np.argsort(-counts, kind="stable")[:k]


def dense_item_factors(rows: List, n_items: int, rank: int):
    """``(factors [n_items, rank], known [n_items])`` from ``ALSModel.itemFactors`` rows."""
    factors = np.zeros((n_items, rank), dtype=np.float32)
    known = np.zeros(n_items, dtype=bool)
    for row in rows:
        factors[row["id"]] = row["features"]
        known[row["id"]] = True
    return factors, known


def score_users(users: DataFrame, item_factors: np.ndarray, known: np.ndarray, track_ids: np.ndarray,
                fallback: np.ndarray, k: int, batch_size: int, exclude_consumed: bool) -> DataFrame:
    """(user, features or null, items) -> (user, tracks): ``k`` track ids, best first; null features -> ``fallback``."""
    if k > int(known.sum()):
        raise ValueError(f"top_k={k} but only {int(known.sum())} tracks have a rating")
    broadcast = users.sparkSession.sparkContext.broadcast((item_factors, known, track_ids, fallback))

    def lists(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        factors, known_items, ids, popular = broadcast.value
        for frame in frames:
            for start in range(0, len(frame), batch_size):
                chunk = frame.iloc[start : start + batch_size]
                has = chunk["features"].notna().to_numpy()
                positions = np.tile(popular, (len(chunk), 1))
                if has.any():
                    consumed = [np.asarray(x, dtype=np.int64) for x in chunk["items"][has]] if exclude_consumed else None
                    user_factors = np.stack([np.asarray(f, dtype=np.float32) for f in chunk["features"][has]])
                    positions[has] = top_items(user_factors, factors, k, known_items, consumed)
                yield pd.DataFrame({"user": chunk["user"].astype(np.int64).to_numpy(), "tracks": list(ids[positions])})

    return users.select("user", "features", "items").mapInPandas(lists, LISTS_SCHEMA)


def run(spark: SparkSession, config: Dict, interactions_run: Optional[str] = None,
        version: Optional[str] = None) -> Dict:
    settings, k = config["als"], int(config["infer"]["top_k"])
    exclude_consumed = bool(config["infer"]["exclude_consumed"])
    storage = HadoopStorage(spark)
    run_id, run_uri = interactions_dir(storage, config, interactions_run or settings["interactions_run"])
    positives = positives_by_user(spark.read.parquet(join(run_uri, "interactions")),
                                  bool(config["multidae"]["session_starts"])).cache()
    ratings = implicit_ratings(positives).cache()
    with run_record.stage("fit"):
        model = fit_als(ratings, settings, settings)
    track_ids = item_index(spark, run_uri)
    item_factors, known = dense_item_factors(model.itemFactors.collect(), len(track_ids), int(settings["rank"]))
    users = (spark.read.parquet(join(run_uri, "users")).select("user", "user_idx")
             .join(model.userFactors.select(F.col("id").alias("user_idx"), "features"), "user_idx", "left")
             .join(positives.select("user_idx", "items"), "user_idx", "left"))
    recs = score_users(users, item_factors, known, track_ids, popular_items(ratings, len(track_ids), k), k,
                       int(settings["batch_size"]), exclude_consumed)
    version = version or f"als-{run_id}"
    params = {key: settings[key] for key in ("rank", "reg_param", "alpha", "max_iter", "seed")}
    with run_record.stage("score and publish"):
        manifest = publish(storage, config, recs, storage.read_bytes(join(run_uri, "top_tracks.json")), version, {
            "model_version": version,
            "model": "als",
            "als": params,
            "interactions_run": run_id,
            "session_starts": bool(config["multidae"]["session_starts"]),
            "top_k": k,
            "exclude_consumed": exclude_consumed,
        }, pointer=str(settings["pointer"]))
    run_record.read("users with positives", join(run_uri, "interactions"), positives.count())
    run_record.wrote("recommendations", join(resolve(config, "recommendations"), version), manifest["row_count"])
    ratings.unpersist()
    positives.unpersist()
    return manifest


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train_als", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--interactions-run", help="interactions/<run> to train on (default: als.interactions_run)")
    parser.add_argument("--version", help="recommendations/<version> to write (default: als-<run>)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    spark = get_session("train_als", args.profile)
    manifest = run(spark, config, args.interactions_run, args.version)
    print(json.dumps({k: manifest[k] for k in ("model_version", "row_count", "interactions_run")}))
    return 0
