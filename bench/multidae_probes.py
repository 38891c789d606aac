"""Probes: why the MultiDAE stays below EASE, on the items EASE models, beside EASE fitted in the same run.

    .venv/bin/python bench/multidae_probes.py --root file:///path/to/warehouse \
        --probe width=1000 --probe width=3000 --probe width=1000,emphasis=0 --probe width=1000,weight_decay=0.001

Reads the storage root's interactions (``interactions/LATEST``, or ``--run``)
and splits them as every job does (conf ``multidae.split``). Both models see
only the ``--items`` tracks with most training positives (EASE's rule in
``evaluate_offline``; the others are never recommended), so the comparison
is the one issue 14 asks for, "the MultiDAE against EASE where EASE fits".
EASE (``--ease-lambda``) and TopPop are fitted in the same run, on the same
rows. Each probe trains a one-hidden-layer MultiDAE in this process
(``common.training``'s optimiser and best-epoch rule, the paper's protocol:
the epoch with the best validation NDCG@100, then the test users) with one
knob changed from the first probe's:

- ``width``: the hidden layer (is the code too narrow to hold the world's
  5,000 artists apart?);
- ``emphasis``: the loss weight of the items that survived input dropout
  (1: the Mult-DAE's loss; 0: only the dropped items count, Steck 2020,
  "Autoencoders that don't overfit towards the identity"): does the network
  spend itself copying its input?;
- ``weight_decay``, ``dropout``, ``lr``: the usual regularisers.

Prints one line: per probe the best epoch, validation and test NDCG@100 and
the ratio to EASE's test figure. A research bench, not a job: what it shows is
in docs/model.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from common.evaluation import evaluate_heldout  # noqa: E402
from common.model import MultiDAE, pad_batch  # noqa: E402
from common.training import BestEpoch, Knobs, make_optimizer  # noqa: E402

PROBE_KEYS = {"width": int, "emphasis": float, "weight_decay": float, "dropout": float, "lr": float}
DEFAULT_PROBE = {"width": 1000, "emphasis": 1.0, "weight_decay": 0.0, "dropout": 0.5, "lr": 0.001}


def parse_probe(text: str) -> dict:
    probe = dict(DEFAULT_PROBE)
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in PROBE_KEYS:
            raise argparse.ArgumentTypeError(f"unknown probe knob {key!r} (known: {sorted(PROBE_KEYS)})")
        probe[key] = PROBE_KEYS[key](value)
    return probe


def load_split(root: str, run: str | None):
    """Training item lists, validation and test users (full track_idx space), and the item count."""
    from common.config import load_config
    from common.heldout_split import build_split, collect_heldout
    from common.interactions_run import interactions_dir, item_index
    from common.spark import get_session
    from common.storage import HadoopStorage, join

    config = load_config("pipeline.yml", [f"storage.root={root}"])
    settings = config["multidae"]
    spark = get_session("bench-multidae-probes", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    _, run_uri = interactions_dir(HadoopStorage(spark), config, run or settings["interactions_run"])
    n_items = len(item_index(spark, run_uri))
    train, heldout = build_split(spark.read.parquet(join(run_uri, "interactions")), settings["split"],
                                 bool(settings["session_starts"]))
    heldout = heldout.cache()
    validation, test = collect_heldout(heldout, "validation"), collect_heldout(heldout, "test")
    rows = [np.asarray(r["items"], dtype=np.int64) for r in train.select("items").collect()]
    spark.stop()
    return rows, validation, test, n_items


class ItemSubset:
    """The ``keep`` tracks as a dense 0..K-1 space for the network, scores spread back over all tracks."""

    def __init__(self, keep: np.ndarray, n_items: int):
        self.keep, self.n_items = keep, n_items
        self.position = np.full(n_items, -1, dtype=np.int64)
        self.position[keep] = np.arange(len(keep))

    def narrow(self, items: np.ndarray) -> np.ndarray:
        inside = self.position[items]
        return inside[inside >= 0]

    def widen(self, scores: np.ndarray) -> np.ndarray:
        full = np.full((scores.shape[0], self.n_items), -np.inf, dtype=np.float32)
        full[:, self.keep] = scores
        return full


class MaskedDAE(MultiDAE):
    """The MultiDAE that remembers which input items survived dropout in its last forward pass."""

    def input_weights(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        weights = super().input_weights(lengths, width)
        self.survived = weights > 0
        return weights


def emphasised_loss(model: MaskedDAE, items: torch.Tensor, lengths: torch.Tensor, emphasis: float) -> torch.Tensor:
    """The multinomial loss with the surviving input items weighted ``emphasis`` (dropped ones 1)."""
    logits = model(items, lengths)
    present = (torch.arange(items.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).float()
    weight = present * torch.where(model.survived, torch.tensor(emphasis), torch.tensor(1.0))
    return -(F.log_softmax(logits, dim=1).gather(1, items) * weight).sum(dim=1).mean()


def run_probe(probe: dict, train_lists, subset: ItemSubset, validation, test, epochs: int, patience: int) -> dict:
    knobs = Knobs(dims=(probe["width"],), dropout=probe["dropout"], lr=probe["lr"], weight_decay=probe["weight_decay"],
                  epochs=epochs, patience=patience, batch_size=100)
    torch.manual_seed(knobs.seed)
    rng = np.random.default_rng(knobs.seed)
    model = MaskedDAE(knobs.model_config(len(subset.keep)))
    optimizer = make_optimizer(model, knobs)

    def score(lists, user_idx=None):
        model.eval()
        inside = [subset.narrow(x) for x in lists]
        items, _ = pad_batch(inside)
        with torch.no_grad():
            logits = model(items, torch.tensor([len(x) for x in inside])).numpy()
        return subset.widen(logits)

    best, seconds = BestEpoch(patience), []
    for epoch in range(1, epochs + 1):
        model.train()
        started = time.perf_counter()
        order = rng.permutation(len(train_lists))
        for start in range(0, len(order), knobs.batch_size):
            items, lengths = pad_batch([train_lists[i] for i in order[start : start + knobs.batch_size]])
            loss = emphasised_loss(model, items, lengths, probe["emphasis"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
        record = {"epoch": epoch, **{f"val_{k}": v for k, v in evaluate_heldout(score, validation).items()}}
        logging.info("probe %s: %s", probe, json.dumps(record))
        best.update(record, model)
        if best.should_stop(epoch):
            break
    model.load_state_dict(best.weights)
    return {"best_epoch": best.epoch, "epochs": len(seconds), "s_per_epoch": float(np.mean(seconds)),
            "val": best.record["val_ndcg@100"], "test": evaluate_heldout(score, test)["ndcg@100"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="storage root with an interactions run (e.g. the seed demo's)")
    parser.add_argument("--run", help="interactions run id (default: the conf's, else LATEST)")
    parser.add_argument("--items", type=int, default=20000, help="most popular training tracks both models see")
    parser.add_argument("--ease-lambda", type=float, default=50.0)
    parser.add_argument("--probe", type=parse_probe, action="append", default=[],
                        help=f"comma-separated knobs over {DEFAULT_PROBE}; repeat for several")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patience", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(os.cpu_count() or 1)
    from jobs.evaluate_offline import ease_items, ease_scorer, toppop_scorer, train_matrix

    rows, validation, test, n_items = load_split(args.root, args.run)
    X = train_matrix(rows, n_items)
    subset = ItemSubset(ease_items(X, args.items), n_items)
    train_lists = [x for x in (subset.narrow(r) for r in rows) if len(x)]
    toppop = evaluate_heldout(toppop_scorer(X), test)["ndcg@100"]
    started = time.perf_counter()
    ease = ease_scorer(X, args.ease_lambda, subset.keep)
    ease_s = time.perf_counter() - started
    ease_val, ease_test = evaluate_heldout(ease, validation)["ndcg@100"], evaluate_heldout(ease, test)["ndcg@100"]
    del ease
    parts = []
    for probe in args.probe or [dict(DEFAULT_PROBE)]:
        got = run_probe(probe, train_lists, subset, validation, test, args.epochs, args.patience)
        changed = ",".join(f"{k}={v}" for k, v in probe.items() if v != DEFAULT_PROBE[k]) or "defaults"
        parts.append(f"dae {changed}: best epoch {got['best_epoch']}/{got['epochs']} ({got['s_per_epoch']:.0f} s/epoch) "
                     f"val {got['val']:.4f} test {got['test']:.4f} = {got['test'] / ease_test:.2f}x EASE")
    print(f"multidae_probes: {len(rows)} training users, {len(test['fold_in'])} test users, {args.items} of {n_items} items "
          f"({DEFAULT_PROBE}) | TopPop test {toppop:.4f} | EASE lambda {args.ease_lambda:g} val {ease_val:.4f} "
          f"test {ease_test:.4f} (fit {ease_s:.0f} s) | " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
