"""train_multidae: interactions -> Mult-DAE model, trained with petastorm + TorchDistributor.

Input: ``<root>/interactions/<run>/`` (``interactions/`` positives ``label == 1``;
the item dimension is the number of rows of ``tracks/``, whose ``track_idx`` is dense).

Split: common/heldout_split.py (validation and test users, fold-ins train,
targets never do). Knobs: ``multidae:`` in conf/pipeline.yml with the named
profile (``multidae.profile``) laid over it (common/training.py). After every
epoch rank 0 scores the validation users; the epoch with the best validation
NDCG@100 is the published model (the paper's protocol), optionally stopping
after ``patience`` epochs without a better one.

Output, ``<root>/models/multidae/<version>/``: ``model.pt`` (weights, model
config, item index track_idx -> track, split and training settings, library
versions; plain tensors and containers, loaded with ``weights_only=True``),
``metrics.json`` (loss and validation NDCG@100 / Recall@20 / Recall@50 per
epoch, the best and the last epoch, test figures of the published weights), ``training_curve.png`` (best epoch marked), ``_MANIFEST.json``, ``_SUCCESS``;
then ``<root>/models/multidae/LATEST``. While training, rank 0 checkpoints
every epoch to ``models/multidae/_work/<version>/last.pt``; re-running with
the same ``--version`` resumes from the last finished epoch, best so far included.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import petastorm_hdfs
from common.checkpoint import CHECKPOINT_FORMAT, MODEL_FILE, blob_storage, from_bytes, model_dir, to_bytes
from common.evaluation import evaluate_heldout, model_scorer
from common.heldout_split import build_split, collect_heldout
from common.interactions_run import interactions_dir, item_index
from common.manifest import sha256, write_manifest
from common.model import MultiDAE
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common import run_record
from common.run_record import describe_error
from common.stopwatch import logged_time
from common.storage import HadoopStorage, atomic_output, join, write_pointer
from common.training import Knobs, load_training_config, with_profile
from jobs import multidae_training as training

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What the driver hands to training and publishing: the split and the run it came from."""

    run_id: str
    index: np.ndarray  # track id per track_idx
    train_items: DataFrame  # one ``items`` row per training user (cached)
    heldout: DataFrame  # cached; unpersisted after publishing
    validation: Dict
    test: Dict
    n_train: int
    width: int


def library_versions() -> Dict[str, str]:
    import petastorm
    import pyarrow
    import pyspark

    return {"torch": str(torch.__version__), "pyspark": str(pyspark.__version__), "petastorm": str(petastorm.__version__),
            "pyarrow": str(pyarrow.__version__), "numpy": str(np.__version__)}


def plot_curve(history, best_epoch: Optional[int], path_bytes: io.BytesIO) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss per user", color="tab:blue")
    if history and "val_ndcg@100" in history[0]:
        right = left.twinx()
        right.plot(epochs, [h["val_ndcg@100"] for h in history], "s-", color="tab:orange", label="val NDCG@100")
        right.set_ylabel("validation NDCG@100", color="tab:orange")
    if best_epoch:
        left.axvline(best_epoch, color="tab:green", linestyle="--", label=f"best epoch ({best_epoch})")
        left.legend(loc="upper center")
    left.set_title("MultiDAE training")
    fig.tight_layout()
    fig.savefig(path_bytes, format="png", dpi=100)
    plt.close(fig)


# ---- the job, step by step ---------------------------------------------------------------------


def prepare(spark: SparkSession, storage, config: Dict, run: Optional[str]) -> Prepared:
    """Read the interactions run, split it, collect the held-out users and cache the training rows."""
    settings = with_profile(config["multidae"])
    run_id, run_uri = interactions_dir(storage, config, run or settings.get("interactions_run"))
    index = item_index(spark, run_uri)
    train, heldout = build_split(spark.read.parquet(join(run_uri, "interactions")), settings["split"],
                                 bool(settings["session_starts"]))
    heldout = heldout.cache()
    partitions = max(int(settings["partitions"]), int(settings["distributor"]["num_processes"]))
    train_items = train.select("items").repartition(partitions).cache()
    stats = train_items.agg(F.count(F.lit(1)).alias("rows"), F.max(F.size("items")).alias("width")).first()
    if int(stats["rows"]) == 0:
        raise ValueError(f"{run_uri}: no training users with positive interactions")
    prepared = Prepared(run_id, index, train_items, heldout, collect_heldout(heldout, "validation"),
                        collect_heldout(heldout, "test"), int(stats["rows"]), int(stats["width"] or 1))
    log.info("split of %s: %d training users, %d validation, %d test; %d items; padded width %d", run_id,
             prepared.n_train, len(prepared.validation["fold_in"]), len(prepared.test["fold_in"]), len(index), prepared.width)
    return prepared


# pyspark 4.0 runs TorchDistributor's barrier stage as a result stage, which Spark never retries (SPARK-25161):
# one lost executor aborts it. These are the scheduler's words for losing an executor or its node, never for
# an exception inside a rank (that one is the rank's traceback, and retrying would only repeat it).
_LOST_EXECUTOR = re.compile(r"ExecutorLostFailure|Executor heartbeat timed out|Container (killed|marked as failed|"
                            r"released)|Lost executor|Slave lost|Node .* (lost|decommission)")


def lost_an_executor(error: str) -> bool:
    """Whether a failed barrier stage failed because an executor (or its node) went away."""
    return bool(_LOST_EXECUTOR.search(error)) and "PythonException" not in error.split("Caused by")[0]


def train(spark: SparkSession, config: Dict, version: str, data: Prepared) -> Dict:
    """Run the rank function under TorchDistributor; returns rank 0's final ``last.pt`` state and the ranks' answer."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.ml.torch.distributor import TorchDistributor

    settings = with_profile(config["multidae"])
    dist_cfg, knobs = settings["distributor"], Knobs.from_settings(settings)
    processes = int(dist_cfg["num_processes"])
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, resolve(config, settings["petastorm"]["cache_dir"]))
    petastorm_hdfs.install()
    with logged_time(log, "petastorm: %d training rows materialised to Parquet", data.n_train):
        converter = make_spark_converter(data.train_items)
    work_uri = join(resolve(config, "models/multidae/_work"), version)
    spec = training.TrainingSpec(
        converter=converter, width=data.width, n_items=len(data.index), knobs=knobs,
        steps_per_epoch=knobs.steps_per_epoch(data.n_train, processes),
        validation=data.validation, work_uri=work_uri, use_gpu=bool(dist_cfg["use_gpu"]),
        threads_per_process=int(settings["threads_per_process"]), reader_workers=int(settings["petastorm"]["workers_count"]),
        shuffle_buffer=int(settings["petastorm"]["shuffle_buffer"]), eval_batch_size=int(settings["eval_batch_size"]),
        launched_at=time.time())
    log.info("training version %s (%s) with %d process(es), local_mode=%s, use_gpu=%s (re-run with --version %s to resume)",
             version, knobs, processes, dist_cfg["local_mode"], dist_cfg["use_gpu"], version)
    attempts = max(1, int(dist_cfg.get("max_attempts", 1)))
    try:
        for attempt in range(1, attempts + 1):
            try:
                with training.ship_by_value(), logged_time(log, "TorchDistributor ran the ranks"):
                    result = TorchDistributor(num_processes=processes, local_mode=bool(dist_cfg["local_mode"]),
                                              use_gpu=bool(dist_cfg["use_gpu"])).run(training.train_rank, spec)
                run_record.attempted("train", attempt, "succeeded")
                break
            except Exception as exc:
                error = f"{describe_error(exc)}\n{exc}"
                retry = attempt < attempts and lost_an_executor(error)
                run_record.attempted("train", attempt, "retried: lost an executor" if retry else "failed", error)
                if not retry:
                    raise
                log.warning("training attempt %d of %d lost an executor; resuming from the last checkpoint in %s: %s",
                            attempt, attempts, work_uri, error.splitlines()[0][:300])
    finally:
        converter.delete()
        data.train_items.unpersist()
    storage = HadoopStorage(spark)
    last_uri = join(work_uri, training.LAST_CHECKPOINT)
    state = from_bytes(blob_storage(storage, last_uri).read_bytes(last_uri))
    return {"state": state, "knobs": knobs, "work_uri": work_uri, "result": result or {}, "processes": processes}


def summarize_run(version: str, data: Prepared, trained: Dict, test_metrics: Dict) -> Dict:
    """metrics.json: the history, the best epoch (published) and the last epoch side by side, test figures."""
    state, history = trained["state"], trained["state"]["history"]
    best = state["best"] or {"epoch": history[-1]["epoch"], "record": history[-1]}
    return {"version": version, "interactions_run": data.run_id, "n_items": len(data.index), "train_users": data.n_train,
            "validation_users": len(data.validation["fold_in"]), "test_users": len(data.test["fold_in"]),
            "knobs": trained["knobs"].to_dict(), "epochs": history, "best_epoch": best["record"],
            "last_epoch": history[-1] if history else {}, "stopped_early": len(history) < trained["knobs"].epochs,
            "test": test_metrics, "world_size": int(trained["result"].get("world_size", trained["processes"])),
            "rank_process": trained["result"].get("process")}


def publish(spark: SparkSession, config: Dict, version: str, data: Prepared, trained: Dict) -> Dict:
    """Score the test users with the best epoch's weights and publish model.pt, metrics.json and the curve."""
    storage = HadoopStorage(spark)
    settings, state, knobs = with_profile(config["multidae"]), trained["state"], trained["knobs"]
    weights = state["best"]["weights"] if state.get("best") else state["model"]
    model_config = knobs.model_config(len(data.index))
    model = MultiDAE(model_config)
    model.load_state_dict(weights)
    test_metrics = evaluate_heldout(model_scorer(model), data.test, int(settings["eval_batch_size"]))
    metrics = summarize_run(version, data, trained, test_metrics)
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "version": version, "model_config": model_config.to_dict(), "state_dict": weights,
        "item_index": torch.from_numpy(data.index), "interactions_run": data.run_id, "split": dict(settings["split"]),
        "session_starts": bool(settings["session_starts"]), "training": knobs.to_dict(),
        "best_epoch": int(metrics["best_epoch"]["epoch"]), "world_size": metrics["world_size"], "versions": library_versions(),
    }
    model_bytes, curve = to_bytes(checkpoint), io.BytesIO()
    plot_curve(state["history"], checkpoint["best_epoch"], curve)
    final = model_dir(config, version)
    with atomic_output(storage, final) as tmp:
        blob_storage(storage, tmp).write_bytes(join(tmp, MODEL_FILE), model_bytes)
        storage.write_bytes(join(tmp, "metrics.json"), json.dumps(metrics, indent=2).encode())
        storage.write_bytes(join(tmp, "training_curve.png"), curve.getvalue())
        write_manifest(storage, tmp, {"job": "train_multidae", "model_version": version, "interactions_run": data.run_id,
                                      "model_sha256": sha256(model_bytes), "n_items": len(data.index), "test": test_metrics,
                                      "epochs": len(state["history"]), "best_epoch": checkpoint["best_epoch"]})
    write_pointer(storage, join(resolve(config, "models/multidae"), "LATEST"), version)
    storage.delete(trained["work_uri"])
    log.info("model %s: best epoch %d of %d, test %s", final, checkpoint["best_epoch"], len(state["history"]), test_metrics)
    return metrics


def run(spark: SparkSession, config: Dict, version: str, interactions_run: Optional[str] = None) -> Dict:
    storage = HadoopStorage(spark)
    with run_record.stage("split", "split and held-out users prepared"):
        data = prepare(spark, storage, config, interactions_run)
    run_record.read("training users", data.run_id, data.n_train)
    try:
        with run_record.stage("train"):
            trained = train(spark, config, version, data)
        with run_record.stage("publish", "published"):
            metrics = publish(spark, config, version, data, trained)
        run_record.wrote("model", model_dir(config, version), None)
        return metrics
    finally:
        data.heldout.unpersist()


def summary_line(metrics: Dict) -> Dict:
    """The one JSON line main prints: the published (best) epoch and the last one side by side."""
    def figures(record: Dict) -> Dict:
        return {k: record[k] for k in ("epoch", "loss", "val_ndcg@100", "val_recall@20", "val_recall@50") if k in record}

    return {"version": metrics["version"], "interactions_run": metrics["interactions_run"], "epochs": len(metrics["epochs"]),
            "final_loss": metrics["last_epoch"].get("loss"), "best_epoch": figures(metrics["best_epoch"]),
            "last_epoch": figures(metrics["last_epoch"]), "test": metrics["test"]}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train_multidae", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--interactions", help="interactions run id (default: multidae.interactions_run, LATEST)")
    parser.add_argument("--version", help="model version (default: UTC timestamp); an unfinished version resumes")
    parser.add_argument("--epochs", type=int, help="override multidae.epochs")
    parser.add_argument("--model-profile", help="a key of multidae.profiles laid over multidae (e.g. seed: the original shape and 10 epochs)")
    parser.add_argument("--num-processes", type=int, help="override multidae.distributor.num_processes")
    parser.add_argument("--local-mode", choices=["true", "false"], help="override multidae.distributor.local_mode")
    parser.add_argument("--use-gpu", choices=["true", "false"], help="override multidae.distributor.use_gpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"multidae.profile={args.model_profile}"] if args.model_profile else [])
    if args.epochs is not None:
        overrides.append(f"multidae.epochs={args.epochs}")
    if args.num_processes is not None:
        overrides.append(f"multidae.distributor.num_processes={args.num_processes}")
    if args.local_mode is not None:
        overrides.append(f"multidae.distributor.local_mode={args.local_mode}")
    if args.use_gpu is not None:
        overrides.append(f"multidae.distributor.use_gpu={args.use_gpu}")
    config = load_training_config(args.config, overrides)
    run_record.configured(config)
    version = args.version or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with logged_time(log, "Spark session"):
        spark = get_session("train_multidae", args.profile)
    metrics = run(spark, config, version, args.interactions)
    print(json.dumps(summary_line(metrics)))
    return 0
