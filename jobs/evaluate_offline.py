"""evaluate_offline: MultiDAE against baselines on the same held-out users, one table.

The split is the one the model was trained with (its settings and
interactions run are read from the checkpoint), so every model is scored on
exactly the same users, fold-ins and targets. Each model scores all items for a
held-out user from their fold-in; fold-in items are never ranked; the figures
are mean NDCG@100, Recall@20 and Recall@50 (Liang et al. 2018).

Every model learns from the same data, the split's ``train`` rows: all
positives except the held-out users' targets.

- TopPop: item popularity in the training rows.
- ALS: Spark MLlib ALS with implicit preferences, scored as user factors x
  item factors (the fold-ins are in its training rows, so every held-out
  user has a factor). Its rank, regParam and alpha are chosen on the
  validation users (``evaluate.als.grid``, one knob at a time), as the
  MultiDAE's epoch and knobs are: a tuned model against a tuned model.
- EASE (Steck 2019): closed form over the items with any training positive;
  past ``evaluate.ease.max_items`` of them, over that many with most training
  positives (it inverts a dense items x items matrix; the others are never
  recommended). Its ``lambda`` is chosen on the validation users
  (``evaluate.ease.grid``).
- MultiDAE: the model version, and with ``--also`` other versions trained on
  the same run and split (e.g. the seed profile and a Mult-VAE).

Output ``<root>/evaluation/<model version>/``: ``metrics.md``, ``metrics.json``, ``_SUCCESS``.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import sparse

from common import run_record
from common.checkpoint import load_checkpoint, model_from_checkpoint
from common.config import load_config
from common.evaluation import Scorer, evaluate_heldout, model_scorer
from common.heldout_split import build_split, collect_heldout
from common.interactions_run import interactions_dir
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import HadoopStorage, atomic_output, join

log = logging.getLogger(__name__)

# ---- baselines: each returns a Scorer -------------------------------------------------------


def train_matrix(rows: List[np.ndarray], n_items: int) -> sparse.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_items))


def toppop_scorer(X: sparse.csr_matrix) -> Scorer:
    popularity = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
    return lambda fold_in, user_idx: np.tile(popularity, (len(fold_in), 1))


def ease_items(X: sparse.csr_matrix, max_items: int) -> np.ndarray:
    """The items EASE models: every item with a training positive or, past ``max_items`` of them, the
    ``max_items`` with most (its items x items inverse is dense). The rest are never recommended."""
    popularity = np.asarray(X.sum(axis=0)).ravel()
    seen = np.flatnonzero(popularity > 0)
    if len(seen) <= max_items:
        return seen
    return np.sort(np.argsort(-popularity, kind="stable")[:max_items])


def ease_scorer(X: sparse.csr_matrix, lam: float, items: np.ndarray) -> Scorer:
    """B = I - P diagMat(1/diag(P)), P = (X'X + lam I)^-1, over ``items``."""
    Xs = X[:, items]
    # The Gram matrix is rebuilt for each lambda of a sweep: the sparse product takes seconds beside the inverse's
    # minutes, and keeping one copy across the sweep would hold another items x items matrix in memory.
    # float32: the ridge (lam on the diagonal) keeps the inverse well conditioned, and it halves the memory.
    gram = (Xs.T @ Xs).toarray().astype(np.float32, copy=False)
    gram[np.diag_indices_from(gram)] += lam
    P = np.linalg.inv(gram)
    del gram
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    position = np.full(X.shape[1], -1, dtype=np.int64)
    position[items] = np.arange(len(items))
    n_items = X.shape[1]

    def score(fold_in: Sequence[np.ndarray], user_idx: np.ndarray) -> np.ndarray:
        out = np.full((len(fold_in), n_items), -np.inf, dtype=np.float32)
        rows = np.zeros((len(fold_in), len(items)), dtype=np.float32)
        for r, listened in enumerate(fold_in):
            known = position[listened]
            rows[r, known[known >= 0]] = 1.0
        out[:, items] = rows @ B
        return out

    return score


def ease_tuned(X: sparse.csr_matrix, settings: Dict, validation: Dict, batch: int) -> Tuple[Scorer, Dict, List[Dict]]:
    """EASE with its ``lambda`` chosen on the validation users from ``evaluate.ease.grid``: the chosen scorer,
    ``{"lambda", "items"}`` (how many items it models) and every fit's validation figures."""
    items = ease_items(X, int(settings["max_items"]))
    best: Tuple[float, Optional[Scorer], float] = (-1.0, None, 0.0)
    sweep = []
    for lam in settings["grid"]:
        scorer = ease_scorer(X, float(lam), items)
        figures = evaluate_heldout(scorer, validation, batch)
        sweep.append({"lambda": float(lam), "validation": figures})
        log.info("EASE lambda %s over %d items: validation %s", lam, len(items), figures)
        if figures["ndcg@100"] > best[0]:
            best = (figures["ndcg@100"], scorer, float(lam))
        del scorer  # each holds an items x items matrix: only the best stays alive through the next inverse
    return best[1], {"lambda": best[2], "items": len(items)}, sweep


def als_fit(ratings: DataFrame, n_items: int, params: Dict, settings: Dict, users: np.ndarray) -> Scorer:
    """Fit implicit ALS with ``params`` (rank, reg_param, alpha); a Scorer for the ``users`` it will be asked about."""
    from pyspark.ml.recommendation import ALS

    rank = int(params["rank"])
    als = ALS(implicitPrefs=True, rank=rank, regParam=float(params["reg_param"]), alpha=float(params["alpha"]),
              maxIter=int(settings["max_iter"]), seed=int(settings["seed"]),
              userCol="user_idx", itemCol="item", ratingCol="rating", coldStartStrategy="drop")
    model = als.fit(ratings)
    items = np.zeros((n_items, rank), dtype=np.float32)
    for row in model.itemFactors.collect():
        items[row["id"]] = row["features"]
    factors = {int(r["id"]): np.asarray(r["features"], dtype=np.float32)
               for r in model.userFactors.where(F.col("id").isin([int(u) for u in users])).collect()}

    def score(fold_in: Sequence[np.ndarray], user_idx: np.ndarray) -> np.ndarray:
        U = np.stack([factors.get(int(u), np.zeros(rank, dtype=np.float32)) for u in user_idx])
        return U @ items.T

    return score


def als_tuned(train: DataFrame, n_items: int, settings: Dict, validation: Dict, scored: np.ndarray,
              batch: int) -> Tuple[Scorer, Dict, List[Dict]]:
    """ALS with rank, reg_param and alpha chosen on the validation users: one knob at a time over
    ``evaluate.als.grid``, starting from the configured values (coordinate search: 1 + sum(len - 1) fits).

    Returns the chosen model's scorer (for the ``scored`` users), its parameters and every fit's figures.
    """
    # train holds the held-out users' fold-ins too: ALS has a factor for every user it scores.
    ratings = train.select("user_idx", F.explode("items").alias("item")).withColumn("rating", F.lit(1.0).cast("float")).cache()
    users = np.union1d(validation["user_idx"], scored)
    best = {k: settings[k] for k in ("rank", "reg_param", "alpha")}
    tried: Dict[str, Dict] = {}

    def fit(params: Dict) -> Dict:
        name = json.dumps(params, sort_keys=True)
        if name not in tried:
            scorer = als_fit(ratings, n_items, params, settings, users)
            tried[name] = {"params": dict(params), "scorer": scorer, "validation": evaluate_heldout(scorer, validation, batch)}
            log.info("ALS %s: validation %s", params, tried[name]["validation"])
        return tried[name]

    for knob, values in settings["grid"].items():
        for value in values:
            if fit({**best, knob: value})["validation"]["ndcg@100"] > fit(best)["validation"]["ndcg@100"]:
                best = {**best, knob: value}
    ratings.unpersist()
    sweep = [{"params": t["params"], "validation": t["validation"]} for t in tried.values()]
    return fit(best)["scorer"], best, sweep


def markdown_table(results: Dict[str, Dict[str, float]], settings: Dict[str, str]) -> str:
    lines = ["| model | NDCG@100 | Recall@20 | Recall@50 | settings |", "|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['ndcg@100']:.4f} | {m['recall@20']:.4f} | {m['recall@50']:.4f} | {settings.get(name, '')} |")
    return "\n".join(lines) + "\n"


def model_label(checkpoint: Dict) -> str:
    config, knobs = checkpoint["model_config"], checkpoint.get("training", {})
    shape = "-".join(str(d) for d in [config["n_items"], *config["dims"], *reversed(config["dims"][:-1]), config["n_items"]])
    extra = "".join(f", {k} {knobs[k]}" for k in ("lr", "weight_decay", "batch_size") if k in knobs)
    return f"{config.get('variant', 'dae')} {shape}{extra}, best epoch {checkpoint.get('best_epoch', '?')}"


def multidae_scorers(storage, config: Dict, primary: Tuple[str, Dict], also: Sequence[str]) -> Dict[str, Tuple[Scorer, str]]:
    """The model version under evaluation ("MultiDAE") and any others trained on the same run and split."""
    version, checkpoint = primary
    out = {"MultiDAE": (model_scorer(model_from_checkpoint(checkpoint)), f"{version}: {model_label(checkpoint)}")}
    for other in also:
        other, other_checkpoint = load_checkpoint(storage, config, other)
        for field in ("interactions_run", "split", "session_starts"):
            if other_checkpoint.get(field) != checkpoint.get(field):
                raise ValueError(f"model {other} was trained with another {field} than {version}: not the same held-out users")
        out[f"MultiDAE {other}"] = (model_scorer(model_from_checkpoint(other_checkpoint)), model_label(other_checkpoint))
    return out


def run(spark: SparkSession, config: Dict, model_version: Optional[str] = None, role: Optional[str] = None,
        also: Sequence[str] = ()) -> Dict:
    settings = config["evaluate"]
    role = role or settings["users"]
    if role not in ("test", "validation"):
        raise ValueError(f"evaluate.users must be test or validation, not {role!r}")
    storage = HadoopStorage(spark)
    model_version, checkpoint = load_checkpoint(storage, config, model_version or settings["model_version"])
    run_id, run_uri = interactions_dir(storage, config, checkpoint["interactions_run"])
    n_items = int(checkpoint["model_config"]["n_items"])
    batch = int(config["multidae"]["eval_batch_size"])
    train, heldout = build_split(spark.read.parquet(join(run_uri, "interactions")), checkpoint["split"],
                                 checkpoint.get("session_starts", False))
    train, heldout = train.cache(), heldout.cache()
    users, validation = collect_heldout(heldout, role), collect_heldout(heldout, "validation")
    if not users["fold_in"]:
        raise ValueError(f"no {role} users in the split of {run_id}")
    X = train_matrix([np.asarray(r["items"], dtype=np.int64) for r in train.select("items").collect()], n_items)

    results: Dict[str, Dict[str, float]] = {}
    described: Dict[str, str] = {"TopPop": "training-row popularity"}
    results["TopPop"] = evaluate_heldout(toppop_scorer(X), users, batch)
    with run_record.stage("ALS sweep", "ALS sweep"):
        als, chosen, sweep = als_tuned(train, n_items, settings["als"], validation, users["user_idx"], batch)
    results["ALS"] = evaluate_heldout(als, users, batch)
    described["ALS"] = f"implicit, rank {chosen['rank']}, regParam {chosen['reg_param']}, alpha {chosen['alpha']} " \
                       f"(best of {len(sweep)} fits on validation users)"
    log.info("ALS: %s", results["ALS"])
    with run_record.stage("EASE sweep", "EASE sweep"):
        ease, ease_chosen, ease_sweep = ease_tuned(X, settings["ease"], validation, batch)
    results["EASE"] = evaluate_heldout(ease, users, batch)
    del ease
    seen = int((np.asarray(X.sum(axis=0)).ravel() > 0).sum())
    described["EASE"] = f"lambda {ease_chosen['lambda']:g} (best of {len(ease_sweep)} on validation users), " + (
        f"{seen} items" if ease_chosen["items"] == seen else f"the {ease_chosen['items']} of {seen} items with most training positives")
    for name, (scorer, label) in multidae_scorers(storage, config, (model_version, checkpoint), also).items():
        results[name], described[name] = evaluate_heldout(scorer, users, batch), label
    table = markdown_table(results, described)
    report = {"model_version": model_version, "interactions_run": run_id, "users": role, "n_users": len(users["fold_in"]),
              "n_items": n_items, "results": results, "settings": described,
              "als": {"chosen": chosen, "sweep": sweep}, "ease": {"chosen": ease_chosen, "sweep": ease_sweep}}
    final = join(resolve(config, "evaluation"), model_version)
    with atomic_output(storage, final) as tmp:
        storage.write_text(join(tmp, "metrics.md"), f"# Offline evaluation: model {model_version}, {len(users['fold_in'])} {role} users\n\n" + table)
        storage.write_text(join(tmp, "metrics.json"), json.dumps(report, indent=2))
    train.unpersist()
    heldout.unpersist()
    run_record.read(f"{role} users", join(run_uri, "interactions"), len(users["fold_in"]))
    run_record.wrote("evaluation", final, len(results))
    report["markdown"] = table
    return report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate_offline", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--model-version", help="models/multidae/<version> (default: evaluate.model_version, LATEST)")
    parser.add_argument("--users", choices=["test", "validation"], help="held-out users to score (default: evaluate.users)")
    parser.add_argument("--also", action="append", default=[], metavar="VERSION",
                        help="another model version trained on the same run and split, scored on the same users (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    spark = get_session("evaluate_offline", args.profile)
    report = run(spark, config, args.model_version, args.users, args.also)
    print(report["markdown"], end="")
    return 0
