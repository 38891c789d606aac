"""infer_recommendations: a Mult-DAE model version -> every user's top-50 tracks, in batch.

Scores every user of the model's interactions run (``users/``; a user with no
positives still gets a list, from the model's response to an empty history)
with ``mapInPandas``: the checkpoint is broadcast once and each Python worker
loads it once (module-level cache), then scores batches of users: one even
share of the users per core, batched by history length. The top
``infer.top_k`` logits in descending order become the list; consumed tracks
stay eligible unless ``infer.exclude_consumed`` (the seed keeps them).

Output ``<root>/recommendations/<version>/`` (docs/design.md contract): ``json/part-*.json``
(``{"user", "tracks"}``), ``parquet/``, ``top_tracks.json`` copied from the
interactions run, ``_MANIFEST.json``, ``_SUCCESS``; then ``recommendations/LATEST``.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, LongType, StructField, StructType

from common import run_record
from common.checkpoint import from_bytes, model_from_checkpoint, read_model
from common.config import load_config
from common.heldout_split import positives_by_user
from common.interactions_run import interactions_dir
from common.manifest import sha256
from common.paths import resolve
from common.recommendation_lists import publish
from common.spark import add_job_arguments, get_session
from common.storage import HadoopStorage, join

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = StructType([
    StructField("user", LongType(), False),
    StructField("tracks", ArrayType(LongType(), False), False),
    StructField("scores", ArrayType(FloatType(), False), False),
])

# One model per Python worker process (workers are reused across tasks), keyed by its checksum.
_MODELS: Dict[str, tuple] = {}


def _cached_model(key: str, broadcast, threads: int):
    if key not in _MODELS:
        torch.set_num_threads(max(1, threads))
        checkpoint = from_bytes(broadcast.value)
        _MODELS.clear()
        _MODELS[key] = (model_from_checkpoint(checkpoint), checkpoint["item_index"].numpy())
    return _MODELS[key]


def top_k(logits: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor, k: int, exclude_consumed: bool):
    """(scores, item positions) of the ``k`` best items per row, best first; consumed items masked if asked."""
    if exclude_consumed:
        present = torch.arange(items.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        rows = torch.arange(items.shape[0]).unsqueeze(1).expand_as(items)
        logits = logits.index_put((rows[present], items[present]), torch.tensor(float("-inf")))
    return logits.topk(k, dim=1, sorted=True)


def score_users(user_items: DataFrame, model_bytes: bytes, k: int, exclude_consumed: bool,
                batch_size: int = 256, threads: int = 1) -> DataFrame:
    """(user, items) -> (user, tracks: top-k track ids, scores: their logits, descending)."""
    spark = user_items.sparkSession
    broadcast = spark.sparkContext.broadcast(model_bytes)
    key = sha256(model_bytes)

    def predict(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from common.model import pad_batch

        model, index = _cached_model(key, broadcast, threads)
        if k > len(index):
            raise ValueError(f"top_k={k} but the model knows only {len(index)} tracks")
        for frame in frames:
            # Batch users of similar history length: the input layer runs over the batch's padded width, and
            # the longest histories are ten times the median (bench/infer: the input layer's time -40%).
            history = frame["items"].map(lambda x: 0 if x is None else len(x)).to_numpy()
            frame = frame.iloc[np.argsort(history, kind="stable")]
            for start in range(0, len(frame), batch_size):
                chunk = frame.iloc[start : start + batch_size]
                items, lengths = pad_batch([np.asarray(x if x is not None else [], dtype=np.int64) for x in chunk["items"]])
                with torch.no_grad():
                    scores, top = top_k(model(items, lengths), items, lengths, k, exclude_consumed)
                yield pd.DataFrame({
                    "user": chunk["user"].astype(np.int64).to_numpy(),
                    "tracks": list(index[top.numpy()]),
                    "scores": list(scores.numpy().astype(np.float32)),
                })

    # One even share of the users per core: scoring costs the same per user (the output GEMM), but adaptive
    # execution sizes the shuffle that built ``user_items`` in bytes and hands all 10k users of the bench's
    # run (11 MB) to one task, which left the other core idle.
    shares = user_items.select("user", "items").repartition(spark.sparkContext.defaultParallelism)
    return shares.mapInPandas(predict, OUTPUT_SCHEMA)


def all_user_items(interactions: DataFrame, users: DataFrame, session_starts: bool = False) -> DataFrame:
    """Every user of the run with their positive track_idx list (empty when they liked nothing).

    Positives are defined as the model was trained (``session_starts`` from its checkpoint).
    """
    liked = positives_by_user(interactions, session_starts).select("user", "items")
    return users.select("user").join(liked, "user", "left").select(
        "user", F.coalesce("items", F.array().cast("array<int>")).alias("items"))


def run(spark: SparkSession, config: Dict, model_version: Optional[str] = None, version: Optional[str] = None) -> Dict:
    settings = config["infer"]
    storage = HadoopStorage(spark)
    model_version, model_bytes = read_model(storage, config, model_version or settings["model_version"])
    checkpoint = from_bytes(model_bytes)
    run_id, run_uri = interactions_dir(storage, config, checkpoint["interactions_run"])
    version = version or model_version

    user_items = all_user_items(spark.read.parquet(join(run_uri, "interactions")), spark.read.parquet(join(run_uri, "users")),
                                bool(checkpoint.get("session_starts", False)))
    recs = score_users(user_items, model_bytes, int(settings["top_k"]), bool(settings["exclude_consumed"]),
                       int(settings["batch_size"]), int(settings["torch_threads"])).drop("scores")
    top_json = storage.read_bytes(join(run_uri, "top_tracks.json"))

    with run_record.stage("score and publish"):
        manifest = publish(storage, config, recs, top_json, version, {
            "model_version": model_version,
            "interactions_run": run_id,
            "top_k": int(settings["top_k"]),
            "exclude_consumed": bool(settings["exclude_consumed"]),
        })
    run_record.read("users", join(run_uri, "users"), spark.read.parquet(join(run_uri, "users")).count())
    run_record.wrote("recommendations", join(resolve(config, "recommendations"), version), manifest["row_count"])
    log.info("recommendations %s: %d users from model %s", version, manifest["row_count"], model_version)
    return manifest


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="infer_recommendations", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--model-version", help="models/multidae/<version> (default: infer.model_version, LATEST)")
    parser.add_argument("--version", help="recommendations/<version> to write (default: the model version)")
    parser.add_argument("--exclude-consumed", action="store_true", help="never recommend a track the user already liked")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + (["infer.exclude_consumed=true"] if args.exclude_consumed else [])
    config = load_config(args.config, overrides)
    run_record.configured(config)
    spark = get_session("infer_recommendations", args.profile)
    manifest = run(spark, config, args.model_version, args.version)
    print(json.dumps({k: manifest[k] for k in ("model_version", "row_count", "interactions_run")}))
    return 0
