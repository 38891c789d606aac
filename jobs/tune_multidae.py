"""tune_multidae: a sweep over the MultiDAE knobs as Spark work, one trial per task.

Input: the interactions run and split ``train_multidae`` uses (``multidae.*``,
profile applied). The trials are the first ``--trials`` configurations of a
seeded shuffle of the grid ``multidae.tune.space`` (so a longer sweep extends a
shorter one). Each trial is one Spark task: a Python worker trains the model
in memory (common.training.train_in_memory, ``tune.threads_per_trial``
threads) on the same training rows, scores the validation users after every
epoch and reports its best epoch; a cluster runs as many trials at once as it
has task slots.

Output ``<root>/tuning/multidae/<run>/``: ``trials.json`` (one row per trial:
knobs, best epoch, validation NDCG@100 / Recall@20 / Recall@50, mean epoch
seconds), ``table.md``, ``winner.json`` (the best trial's knobs as
``multidae.*`` values, and its figures), ``_MANIFEST.json``, ``_SUCCESS``.
Re-running a run id reuses the trials its table already holds (same knobs,
same row) and trains only the missing ones, so a re-run is idempotent; each
trial's row is also kept in ``tuning/multidae/_work/<run>/`` as soon as it
finishes, so a sweep killed half-way resumes without redoing those.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
from pyspark.sql import SparkSession

from common import run_record
from common.heldout_split import build_split, collect_heldout
from common.interactions_run import interactions_dir, item_index
from common.manifest import write_manifest
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import FsspecStorage, HadoopStorage, atomic_output, join
from common.training import Knobs, load_training_config, with_profile

log = logging.getLogger(__name__)

FIGURES = ("val_ndcg@100", "val_recall@20", "val_recall@50")


# ---- pure parts ---------------------------------------------------------------------------------


def trial_knobs(base: Dict, space: Dict, trials: int, seed: int) -> List[Knobs]:
    """The first ``trials`` points of a seeded shuffle of the grid ``space`` (knob -> values), over ``base``."""
    names = sorted(space)
    grid = list(itertools.product(*(space[n] for n in names)))
    order = np.random.default_rng(seed).permutation(len(grid))
    return [Knobs.from_settings({**base, **dict(zip(names, grid[i]))}) for i in order[: min(trials, len(grid))]]


def key(knobs: Knobs) -> str:
    return json.dumps(knobs.to_dict(), sort_keys=True)


def trial_file(work_uri: str, knobs: Knobs) -> str:
    return join(work_uri, hashlib.sha256(key(knobs).encode()).hexdigest()[:16] + ".json")


def run_trial(knobs_dict: Dict, data, threads: int, work_uri: Optional[str] = None) -> Dict:
    """One trial in a Python worker: train, keep the best epoch, report its figures.

    The row is also written to ``work_uri`` at once, so a sweep killed half-way keeps its finished trials.
    """
    import torch

    from common.training import train_in_memory

    torch.set_num_threads(max(1, threads))
    train_lists, validation, n_items, eval_batch = data.value
    knobs = Knobs.from_settings(knobs_dict)
    history, best, _ = train_in_memory(train_lists, validation, n_items, knobs, eval_batch)
    seconds = [h["epoch_seconds"] for h in history]
    row = {"knobs": knobs.to_dict(), "best_epoch": best.epoch, "epochs_run": len(history),
           **{k.replace("val_", "val "): float(best.record.get(k, float("nan"))) for k in FIGURES},
           "epoch_seconds": float(np.mean(seconds)), "history": [{k: h.get(k) for k in ("epoch", "loss", *FIGURES)} for h in history]}
    if work_uri:
        try:
            FsspecStorage().write_atomically(trial_file(work_uri, knobs), json.dumps(row).encode())
        except Exception as exc:  # noqa: BLE001 - the row still reaches the driver; only resumability is lost
            log.warning("could not keep trial %s in %s: %s", knobs, work_uri, exc)
    return row


def markdown_table(rows: List[Dict]) -> str:
    """Trials, best first: the knobs that vary, then the best epoch's validation figures and the epoch time."""
    varying = [k for k in rows[0]["knobs"] if len({json.dumps(r["knobs"][k]) for r in rows}) > 1] if rows else []
    head = ["#", *varying, "best epoch", "val NDCG@100", "val Recall@20", "val Recall@50", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, r in enumerate(sorted(rows, key=lambda r: -r["val ndcg@100"]), start=1):
        cells = [str(rank), *(json.dumps(r["knobs"][k]) for k in varying), f"{r['best_epoch']}/{r['epochs_run']}",
                 f"{r['val ndcg@100']:.4f}", f"{r['val recall@20']:.4f}", f"{r['val recall@50']:.4f}", f"{r['epoch_seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- the job ------------------------------------------------------------------------------------


def load_data(spark: SparkSession, storage, config: Dict, settings: Dict):
    """(run id, training item lists, validation users, n_items) of the split train_multidae would use."""
    run_id, run_uri = interactions_dir(storage, config, settings.get("interactions_run"))
    n_items = len(item_index(spark, run_uri))
    train, heldout = build_split(spark.read.parquet(join(run_uri, "interactions")), settings["split"],
                                 bool(settings["session_starts"]))
    train_lists = [np.asarray(r["items"], dtype=np.int64) for r in train.select("items").collect()]
    return run_id, train_lists, collect_heldout(heldout, "validation"), n_items


def previous_rows(storage, out: str, work_uri: str) -> Dict[str, Dict]:
    """The trials earlier runs of this id finished, by knobs: the published table and a killed run's leftovers."""
    rows = []
    if storage.exists(join(out, "_SUCCESS")):
        rows += json.loads(storage.read_text(join(out, "trials.json")))["trials"]
    if storage.exists(work_uri):
        rows += [json.loads(storage.read_text(uri)) for uri in storage.list(work_uri) if uri.endswith(".json")]
    return {key(Knobs.from_settings(r["knobs"])): r for r in rows}


def run(spark: SparkSession, config: Dict, run_id: str, trials: int) -> Dict:
    settings = with_profile(config["multidae"])
    tune = settings["tune"]
    storage = HadoopStorage(spark)
    out = join(resolve(config, "tuning/multidae"), run_id)
    work_uri = join(resolve(config, "tuning/multidae/_work"), run_id)
    interactions, train_lists, validation, n_items = load_data(spark, storage, config, settings)
    wanted = trial_knobs(settings, tune["space"], trials, int(tune["seed"]))
    done = previous_rows(storage, out, work_uri)
    todo = [k.to_dict() for k in wanted if key(k) not in done]
    log.info("%d trials (%d from the previous run of %s), %d to train on %d users x %d items",
             len(wanted), len(wanted) - len(todo), run_id, len(todo), len(train_lists), n_items)
    if todo:
        data = spark.sparkContext.broadcast((train_lists, validation, n_items, int(settings["eval_batch_size"])))
        threads = int(tune["threads_per_trial"])
        fresh = spark.sparkContext.parallelize(todo, len(todo)).map(lambda k: run_trial(k, data, threads, work_uri)).collect()
        data.unpersist()
        done.update({key(Knobs.from_settings(r["knobs"])): r for r in fresh})
    rows = [done[key(k)] for k in wanted]
    winner = max(rows, key=lambda r: r["val ndcg@100"])
    report = {"run": run_id, "interactions_run": interactions, "validation_users": len(validation["fold_in"]),
              "train_users": len(train_lists), "n_items": n_items, "trials": rows}
    table = markdown_table(rows)
    with atomic_output(storage, out) as tmp:
        storage.write_text(join(tmp, "trials.json"), json.dumps(report, indent=2))
        storage.write_text(join(tmp, "table.md"), f"# MultiDAE sweep {run_id} on {interactions}\n\n" + table)
        storage.write_text(join(tmp, "winner.json"), json.dumps(winner, indent=2))
        write_manifest(storage, tmp, {"job": "tune_multidae", "run": run_id, "interactions_run": interactions,
                                      "trials": len(rows), "winner": winner["knobs"]})
    storage.delete(work_uri)
    run_record.read("training users", interactions, len(train_lists))
    run_record.wrote("trials", out, len(rows))
    return {"report": report, "winner": winner, "table": table, "uri": out}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tune_multidae", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--trials", type=int, help="configurations to try (default: multidae.tune.trials)")
    parser.add_argument("--model-profile", help="a key of multidae.profiles laid over multidae before the sweep's values")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"multidae.profile={args.model_profile}"] if args.model_profile else [])
    config = load_training_config(args.config, overrides)
    run_record.configured(config)
    trials = args.trials or int(config["multidae"]["tune"]["trials"])
    if trials < 1:
        raise ValueError("--trials must be at least 1")
    spark = get_session("tune_multidae", args.profile)
    result = run(spark, config, args.run, trials)
    print(result["table"], end="")
    print(json.dumps({"run": args.run, "trials": len(result["report"]["trials"]), "uri": result["uri"],
                      "winner": result["winner"]["knobs"], "val ndcg@100": result["winner"]["val ndcg@100"]}))
    return 0
