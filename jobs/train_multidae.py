"""train_multidae: interactions -> Mult-DAE model, trained with petastorm + TorchDistributor.

Input: ``<root>/interactions/<run>/`` (``interactions/`` positives ``label == 1``;
the item dimension is the number of rows of ``tracks/``, whose ``track_idx`` is dense).

Split (after Liang et al. 2018): users with at least ``split.min_items``
positives are drawn into validation / test by a seeded hash of the user; for
each held-out user a seeded ``heldout_fraction`` of their items are the
targets and the rest the fold-in. The targets are the only thing training never
sees: everyone else's items and the held-out users' fold-ins train. (The
paper's strong-generalisation protocol leaves held-out users out entirely; this
model goes on to serve those users, who are the most active ones, and leaving
them out cost the demo's A/B effect ~8 points.)

Output, ``<root>/models/multidae/<version>/``: ``model.pt`` (weights, model
config, item index track_idx -> track, split and training settings, library
versions; plain tensors and containers, loaded with ``weights_only=True``),
``metrics.json`` (loss and validation NDCG@100 / Recall@20 / Recall@50 per
epoch, test figures), ``training_curve.png``, ``_MANIFEST.json``, ``_SUCCESS``;
then ``<root>/models/multidae/LATEST``. While training, rank 0 checkpoints
every epoch to ``models/multidae/_work/<version>/last.pt``; re-running with
the same ``--version`` resumes from the last finished epoch.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common.config import load_config
from common.manifest import read_manifest, sha256, write_manifest
from common.model import MultiDAE, MultiDAEConfig
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import FsspecStorage, HadoopStorage, atomic_output, join, read_pointer, write_pointer
from jobs import multidae_training as training

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CHECKPOINT_FORMAT = "botify-multidae/1"


# ---- pure transforms (tested on tiny DataFrames) -------------------------------------------


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


# ---- I/O helpers shared with infer_recommendations / evaluate_offline ------------------------


def interactions_dir(storage, config: Dict, run: Optional[str]) -> Tuple[str, str]:
    """(run id, URI) of an interactions run; ``None`` or ``LATEST`` follows the pointer."""
    base = resolve(config, "interactions")
    if not run or run == "LATEST":
        run = read_pointer(storage, join(base, "LATEST"))
    uri = join(base, run)
    if not storage.exists(join(uri, "_SUCCESS")):
        raise FileNotFoundError(f"interactions run {uri} is missing or incomplete (no _SUCCESS)")
    return run, uri


def item_index(spark: SparkSession, run_uri: str) -> np.ndarray:
    """Track id per track_idx (position = track_idx); fails if the index is not dense 0..N-1."""
    rows = spark.read.parquet(join(run_uri, "tracks")).select("track", "track_idx").orderBy("track_idx").collect()
    idx = np.array([r["track_idx"] for r in rows], dtype=np.int64)
    if not np.array_equal(idx, np.arange(len(rows))):
        raise ValueError(f"{run_uri}/tracks: track_idx is not dense 0..{len(rows) - 1}")
    return np.array([r["track"] for r in rows], dtype=np.int64)


def blob_storage(storage, uri: str):
    """Where to move model-sized bytes: local files directly (fsspec), anything else through ``storage``.

    ``HadoopStorage`` copies bytes through py4j, which costs seconds per 100 MB;
    on ``file://`` the same files are reachable without the JVM.
    """
    return FsspecStorage() if uri.startswith("file:") else storage


def model_dir(config: Dict, version: str) -> str:
    return join(resolve(config, "models/multidae"), version)


def read_model(storage, config: Dict, version: Optional[str]) -> Tuple[str, bytes]:
    """(version, model.pt bytes) of a published model, checked against its manifest; ``None``/``LATEST`` follows the pointer."""
    base = resolve(config, "models/multidae")
    if not version or version == "LATEST":
        version = read_pointer(storage, join(base, "LATEST"))
    uri = join(base, version, MODEL_FILE)
    data = blob_storage(storage, uri).read_bytes(uri)
    manifest = read_manifest(storage, join(base, version))
    if manifest.get("model_sha256") != sha256(data):
        raise ValueError(f"{uri} does not match its manifest checksum")
    return version, data


def load_checkpoint(storage, config: Dict, version: Optional[str]) -> Tuple[str, Dict]:
    """(version, checkpoint dict) of a published model."""
    version, data = read_model(storage, config, version)
    checkpoint = training.from_bytes(data)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"model {version}: not a {CHECKPOINT_FORMAT} checkpoint")
    return version, checkpoint


def model_from_checkpoint(checkpoint: Dict) -> MultiDAE:
    model = MultiDAE(MultiDAEConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model


def library_versions() -> Dict[str, str]:
    import petastorm
    import pyarrow
    import pyspark
    import torch

    return {"torch": str(torch.__version__), "pyspark": str(pyspark.__version__), "petastorm": str(petastorm.__version__),
            "pyarrow": str(pyarrow.__version__), "numpy": str(np.__version__)}


def plot_curve(history, path_bytes: io.BytesIO) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("multinomial loss per user", color="tab:blue")
    if history and "val_ndcg@100" in history[0]:
        right = left.twinx()
        right.plot(epochs, [h["val_ndcg@100"] for h in history], "s-", color="tab:orange", label="val NDCG@100")
        right.set_ylabel("validation NDCG@100", color="tab:orange")
    left.set_title("MultiDAE training")
    fig.tight_layout()
    fig.savefig(path_bytes, format="png", dpi=100)
    plt.close(fig)


# ---- the job ---------------------------------------------------------------------------------


def run(spark: SparkSession, config: Dict, version: str, interactions_run: Optional[str] = None) -> Dict:
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.ml.torch.distributor import TorchDistributor

    settings = config["multidae"]
    split, dist_cfg = settings["split"], settings["distributor"]
    storage = HadoopStorage(spark)
    run_id, run_uri = interactions_dir(storage, config, interactions_run or settings.get("interactions_run"))
    index = item_index(spark, run_uri)
    n_items = len(index)
    model_config = MultiDAEConfig(n_items=n_items, dims=list(settings["dims"]), dropout=float(settings["dropout"]))

    interactions = spark.read.parquet(join(run_uri, "interactions"))
    session_starts = bool(settings["session_starts"])
    train, heldout = build_split(interactions, split, session_starts)
    heldout = heldout.cache()
    validation, test = collect_heldout(heldout, "validation"), collect_heldout(heldout, "test")
    num_processes = int(dist_cfg["num_processes"])
    train_items = train.select("items").repartition(max(int(settings["partitions"]), num_processes)).cache()
    stats = train_items.agg(F.count(F.lit(1)).alias("rows"), F.max(F.size("items")).alias("width")).first()
    n_train, width = int(stats["rows"]), int(stats["width"] or 1)
    if n_train == 0:
        raise ValueError(f"{run_uri}: no training users with positive interactions")
    log.info("split of %s: %d training users, %d validation, %d test; %d items; padded width %d",
             run_id, n_train, len(validation["fold_in"]), len(test["fold_in"]), n_items, width)

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, resolve(config, settings["petastorm"]["cache_dir"]))
    converter = make_spark_converter(train_items)
    work_uri = join(resolve(config, "models/multidae/_work"), version)
    spec = {
        "converter": converter, "width": width, "model": model_config.to_dict(),
        "epochs": int(settings["epochs"]), "batch_size": int(settings["batch_size"]),
        "steps_per_epoch": training.steps_per_epoch(n_train, int(settings["batch_size"]), num_processes),
        "lr": float(settings["lr"]), "weight_decay": float(settings["weight_decay"]), "seed": int(settings["seed"]),
        "use_gpu": bool(dist_cfg["use_gpu"]), "threads_per_process": int(settings["threads_per_process"]),
        "reader_workers": int(settings["petastorm"]["workers_count"]),
        "shuffle_buffer": int(settings["petastorm"]["shuffle_buffer"]),
        "eval_batch_size": int(settings["eval_batch_size"]), "validation": validation, "work_uri": work_uri,
    }
    log.info("training version %s with %d process(es), local_mode=%s, use_gpu=%s (re-run with --version %s to resume)",
             version, num_processes, dist_cfg["local_mode"], dist_cfg["use_gpu"], version)
    try:
        with training.ship_by_value():
            result = TorchDistributor(num_processes=num_processes, local_mode=bool(dist_cfg["local_mode"]),
                                      use_gpu=bool(dist_cfg["use_gpu"])).run(training.train_rank, spec)
    finally:
        converter.delete()
        train_items.unpersist()

    last_uri = join(work_uri, training.LAST_CHECKPOINT)
    state = training.from_bytes(blob_storage(storage, last_uri).read_bytes(last_uri))
    model = MultiDAE(model_config)
    model.load_state_dict(state["model"])
    test_metrics = training.evaluate_heldout(training.model_scorer(model), test, int(settings["eval_batch_size"]))
    history = state["history"]
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "version": version, "model_config": model_config.to_dict(),
        "state_dict": state["model"], "item_index": torch.from_numpy(index),
        "interactions_run": run_id, "split": dict(split), "session_starts": session_starts,
        "training": {k: settings[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed")},
        "world_size": int((result or {}).get("world_size", num_processes)), "versions": library_versions(),
    }
    model_bytes = training.to_bytes(checkpoint)
    metrics = {"version": version, "interactions_run": run_id, "n_items": n_items, "train_users": n_train,
               "validation_users": len(validation["fold_in"]), "test_users": len(test["fold_in"]),
               "epochs": history, "test": test_metrics, "world_size": checkpoint["world_size"],
               "rank_process": (result or {}).get("process")}
    curve = io.BytesIO()
    plot_curve(history, curve)
    final = model_dir(config, version)
    with atomic_output(storage, final) as tmp:
        blob_storage(storage, tmp).write_bytes(join(tmp, MODEL_FILE), model_bytes)
        storage.write_bytes(join(tmp, "metrics.json"), json.dumps(metrics, indent=2).encode())
        storage.write_bytes(join(tmp, "training_curve.png"), curve.getvalue())
        write_manifest(storage, tmp, {"job": "train_multidae", "model_version": version, "interactions_run": run_id,
                                      "model_sha256": sha256(model_bytes), "n_items": n_items,
                                      "test": test_metrics, "epochs": len(history)})
    write_pointer(storage, join(resolve(config, "models/multidae"), "LATEST"), version)
    storage.delete(work_uri)
    heldout.unpersist()
    log.info("model %s: test %s", final, test_metrics)
    return metrics


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train_multidae", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--interactions", help="interactions run id (default: multidae.interactions_run, LATEST)")
    parser.add_argument("--version", help="model version (default: UTC timestamp); an unfinished version resumes")
    parser.add_argument("--epochs", type=int, help="override multidae.epochs")
    parser.add_argument("--num-processes", type=int, help="override multidae.distributor.num_processes")
    parser.add_argument("--local-mode", choices=["true", "false"], help="override multidae.distributor.local_mode")
    parser.add_argument("--use-gpu", choices=["true", "false"], help="override multidae.distributor.use_gpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"multidae.epochs={args.epochs}")
    if args.num_processes is not None:
        overrides.append(f"multidae.distributor.num_processes={args.num_processes}")
    if args.local_mode is not None:
        overrides.append(f"multidae.distributor.local_mode={args.local_mode}")
    if args.use_gpu is not None:
        overrides.append(f"multidae.distributor.use_gpu={args.use_gpu}")
    config = load_config(args.config, overrides)
    version = args.version or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    spark = get_session("train_multidae", args.profile)
    metrics = run(spark, config, version, args.interactions)
    print(json.dumps({"version": version, "interactions_run": metrics["interactions_run"],
                      "epochs": len(metrics["epochs"]), "final_loss": metrics["epochs"][-1]["loss"] if metrics["epochs"] else None,
                      "test": metrics["test"]}))
    return 0
