"""Bench: the MultiDAE's seed profile and tuned defaults against tuned ALS, on simulated event logs with structure.

    .venv/bin/python bench/train.py [--events 13000000 --users 10000 --tracks 50000]
    .venv/bin/python bench/train.py --root /path/to/warehouse   # reuse its interactions/LATEST
    .venv/bin/python bench/train.py --set 'evaluate.als.grid={rank: [128], reg_param: [0.01], alpha: [10.0]}'

The data are the simulator's own sessions (``sim.bulk_logs``: users answering
the StickyArtist policy in the generated world, the seed's volume by default)
taken through ``extract_interactions``, so held-out tracks are predictable from
what a user played: a better training regime shows as a better NDCG. (The
popularity draws of bench/multidae_data.py have nothing past popularity to
learn; they stay for the speed-only benches.) Both models are trained by the
real job (``train_multidae.run``: split, petastorm, TorchDistributor, 2 local
ranks) with ``multidae.profile=seed`` and with the conf's defaults; ALS is
``evaluate_offline``'s sweep (rank, regParam, alpha chosen on the validation
users) on the same split. Prints one line: s/epoch (mean after the first),
best epoch and test NDCG@100 of each, ALS's test NDCG@100, and the ratios.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from common.training import load_training_config  # noqa: E402


def simulate(base: str, events: int, users: int, tracks: int) -> tuple:
    """Bulk logs and the world's catalog under ``base`` (argument list, no shell)."""
    logs, catalog = os.path.join(base, "logs"), os.path.join(base, "tracks.jsonl")
    subprocess.run([sys.executable, "-m", "sim.bulk_logs", "--events", str(events), "--users", str(users),
                    "--tracks", str(tracks), "--artists", str(max(1, tracks // 10)), "--out", logs, "--catalog-out", catalog], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return logs, catalog


def extract(spark, root: str, logs: str, catalog: str, overrides: list) -> None:
    from jobs import extract_interactions

    config = load_training_config("pipeline.yml", [f"storage.root={root}", *overrides])
    extract_interactions.run(spark, config, "file://" + logs, "bench", "file://" + catalog)


def train(spark, root: str, profile: str, overrides: list) -> dict:
    from jobs import train_multidae

    chosen = [f"multidae.profile={profile}"] if profile != "tuned" else []
    config = load_training_config("pipeline.yml", [f"storage.root={root}", *overrides, *chosen])
    metrics = train_multidae.run(spark, config, f"bench-{profile}")
    seconds = [e["epoch_seconds"] for e in metrics["epochs"]]
    return {"s_per_epoch": float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)), "epochs": len(seconds),
            "best_epoch": metrics["best_epoch"]["epoch"], "ndcg": metrics["test"]["ndcg@100"], "knobs": metrics["knobs"]}


def als(spark, root: str, overrides: list) -> dict:
    """evaluate_offline's ALS sweep on the split the MultiDAE runs used; test NDCG@100 of the chosen fit."""
    from common.evaluation import evaluate_heldout
    from common.heldout_split import build_split, collect_heldout
    from common.interactions_run import interactions_dir, item_index
    from common.storage import HadoopStorage, join
    from jobs.evaluate_offline import als_tuned

    config = load_training_config("pipeline.yml", [f"storage.root={root}", *overrides])
    settings = config["multidae"]
    _, run_uri = interactions_dir(HadoopStorage(spark), config, settings["interactions_run"])
    train_rows, heldout = build_split(spark.read.parquet(join(run_uri, "interactions")), settings["split"],
                                      bool(settings["session_starts"]))
    heldout = heldout.cache()
    test, validation = collect_heldout(heldout, "test"), collect_heldout(heldout, "validation")
    scorer, chosen, sweep = als_tuned(train_rows, len(item_index(spark, run_uri)), config["evaluate"]["als"],
                                      validation, test["user_idx"], int(settings["eval_batch_size"]))
    return {"ndcg": evaluate_heldout(scorer, test, int(settings["eval_batch_size"]))["ndcg@100"], "chosen": chosen,
            "fits": len(sweep)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="a storage root whose interactions/LATEST to use (skips simulation and extract)")
    parser.add_argument("--events", type=int, default=13_000_000, help="simulated events (the seed's volume: ~13M)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="conf/pipeline.yml override for every step (e.g. a smaller evaluate.als.grid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from common.spark import get_session

    spark = get_session("bench-train", "local", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    root = args.root
    if root is None:
        base = tempfile.mkdtemp(prefix="bench-train-")
        root = os.path.join(base, "warehouse")
        extract(spark, root, *simulate(base, args.events, args.users, args.tracks), args.overrides)
        data = f"{args.events} simulated events, {args.users} users x {args.tracks} tracks"
    else:
        data = f"interactions/LATEST of {root}"
    seed, tuned = train(spark, root, "seed", args.overrides), train(spark, root, "tuned", args.overrides)
    baseline = als(spark, root, args.overrides)
    spark.stop()
    knobs = tuned["knobs"]
    print(f"bench/train: {data}, {os.cpu_count()} cores, test users | "
          f"seed profile {seed['s_per_epoch']:.1f} s/epoch, best epoch {seed['best_epoch']}/{seed['epochs']}, NDCG@100 {seed['ndcg']:.4f} | "
          f"tuned ({knobs['variant']} {knobs['dims']}, lr {knobs['lr']}, wd {knobs['weight_decay']}) {tuned['s_per_epoch']:.1f} s/epoch, "
          f"best epoch {tuned['best_epoch']}/{tuned['epochs']}, NDCG@100 {tuned['ndcg']:.4f} | "
          f"ALS tuned ({baseline['chosen']}, {baseline['fits']} fits) NDCG@100 {baseline['ndcg']:.4f} | "
          f"tuned/ALS = {tuned['ndcg'] / baseline['ndcg']:.2f}x, tuned/seed = {tuned['ndcg'] / seed['ndcg']:.2f}x, "
          f"seed/ALS = {seed['ndcg'] / baseline['ndcg']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
