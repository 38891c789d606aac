"""train_multidae (2 ranks, local_mode, petastorm) -> infer_recommendations -> evaluate_offline, on tiny data."""
import io
import json
import math
import posixpath

import numpy as np
import pytest
import torch
from pyspark.sql import functions as F

from common.manifest import sha256
from common.storage import FsspecStorage, join, local_path
from common.checkpoint import load_checkpoint, model_from_checkpoint
from jobs import evaluate_offline, infer_recommendations
from tests.multidae.conftest import NO_POSITIVES_USER, RESUME_MARKER_LOSS, RESUME_MARKER_NDCG, TRACK_ID_OFFSET, TRACKS, USERS, tiny_config

pytestmark = pytest.mark.slow

fs = FsspecStorage()


def test_training_resumed_and_published(trained_root):
    root, metrics, _ = trained_root
    model_dir = join(root, "models", "multidae", "v1")
    history = metrics["epochs"]
    # The interrupted run's epoch 1 is kept, only epochs 2 and 3 were trained.
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0]["loss"] == RESUME_MARKER_LOSS
    assert all(h["loss"] != RESUME_MARKER_LOSS and h["users_seen"] >= metrics["train_users"] for h in history[1:])
    # multidae.batch_size=16 is the users behind one optimiser step, split over the 2 ranks (8 each): the
    # steps a one-process sweep trial with the same knobs would take, not half as many.
    assert all(h["steps"] == math.ceil(metrics["train_users"] / 16) and h["users_seen"] == 16 * h["steps"]
               for h in history[1:])
    assert all(0 <= h["val_ndcg@100"] < RESUME_MARKER_NDCG for h in history[1:])
    assert set(metrics["test"]) == {"ndcg@100", "recall@20", "recall@50"}
    assert metrics["world_size"] == 2 and metrics["rank_process"]["executable"]  # two local ranks beside the driver
    assert fs.read_text(join(root, "models", "multidae", "LATEST")).strip() == "v1"
    assert not fs.exists(join(root, "models", "multidae", "_work", "v1"))
    for name in ("model.pt", "metrics.json", "training_curve.png", "_MANIFEST.json", "_SUCCESS"):
        assert fs.exists(join(model_dir, name)), name
    assert fs.read_bytes(join(model_dir, "training_curve.png"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(fs.read_text(join(model_dir, "metrics.json")))["epochs"] == history

    data = fs.read_bytes(join(model_dir, "model.pt"))
    checkpoint = torch.load(io.BytesIO(data), weights_only=True)  # plain tensors and containers only
    assert checkpoint["model_config"] == {"n_items": TRACKS, "dims": [32, 8], "dropout": 0.5, "variant": "dae"}
    assert checkpoint["item_index"].tolist() == list(range(TRACK_ID_OFFSET, TRACK_ID_OFFSET + TRACKS))
    assert checkpoint["interactions_run"] == "run1" and checkpoint["versions"]["torch"] == torch.__version__
    assert json.loads(fs.read_text(join(model_dir, "_MANIFEST.json")))["model_sha256"] == sha256(data)


def test_peak_epoch_weights_are_published(trained_root):
    """Validation peaked at epoch 1 (kept through the resume): the published weights are epoch 1's, not the last's."""
    root, metrics, first_epoch = trained_root
    assert metrics["best_epoch"]["epoch"] == 1 and metrics["best_epoch"]["val_ndcg@100"] == RESUME_MARKER_NDCG
    assert metrics["last_epoch"]["epoch"] == 3 and metrics["last_epoch"]["val_ndcg@100"] < RESUME_MARKER_NDCG
    checkpoint = torch.load(io.BytesIO(fs.read_bytes(join(root, "models", "multidae", "v1", "model.pt"))), weights_only=True)
    assert checkpoint["best_epoch"] == 1 and set(checkpoint["state_dict"]) == set(first_epoch)
    for name, tensor in first_epoch.items():
        assert torch.equal(checkpoint["state_dict"][name], tensor), name


def test_tampered_model_is_rejected(trained_root, tmp_path):
    root, _, _ = trained_root
    copy = "file://" + str(tmp_path / "root")
    src = local_path(join(root, "models", "multidae", "v1"))
    import shutil

    shutil.copytree(src, str(tmp_path / "root" / "models" / "multidae" / "v1"))
    path = tmp_path / "root" / "models" / "multidae" / "v1" / "model.pt"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        load_checkpoint(fs, tiny_config(copy), "v1")


def test_scores_descending_distinct_valid_and_exclusion(spark, trained_root):
    root, _, _ = trained_root
    model_bytes = fs.read_bytes(join(root, "models", "multidae", "v1", "model.pt"))
    users = spark.createDataFrame([(1, [0, 1, 2, 3, 4]), (2, []), (3, list(range(100)))], "user long, items array<int>")
    for exclude in (False, True):
        rows = {r["user"]: r for r in infer_recommendations.score_users(users, model_bytes, 50, exclude, batch_size=2).collect()}
        assert set(rows) == {1, 2, 3}
        for user, r in rows.items():
            assert len(r["tracks"]) == 50 == len(set(r["tracks"]))
            assert all(TRACK_ID_OFFSET <= t < TRACK_ID_OFFSET + TRACKS for t in r["tracks"])
            assert all(a >= b for a, b in zip(r["scores"], r["scores"][1:]))
        consumed = {t + TRACK_ID_OFFSET for t in range(100)}
        if exclude:
            assert not consumed & set(rows[3]["tracks"])
        else:  # exactly the model's 50 highest logits, consumed or not
            model = model_from_checkpoint(torch.load(io.BytesIO(model_bytes), weights_only=True))
            with torch.no_grad():
                logits = model(torch.arange(100).unsqueeze(0), torch.tensor([100]))[0]
            assert rows[3]["tracks"] == (logits.topk(50).indices + TRACK_ID_OFFSET).tolist()


def test_infer_writes_the_recommendations_contract(spark, trained_root):
    root, _, _ = trained_root
    manifest = infer_recommendations.run(spark, tiny_config(root))
    out = join(root, "recommendations", "v1")
    assert fs.read_text(join(root, "recommendations", "LATEST")).strip() == "v1" and fs.exists(join(out, "_SUCCESS"))
    files = manifest["json_files"]
    assert files == sorted(files) and all(posixpath.basename(f).startswith("part-") and f.endswith(".json") for f in files)
    data = b"".join(fs.read_bytes(join(out, f)) for f in files)
    assert manifest["json_sha256"] == sha256(data)
    rows = [json.loads(line) for line in data.splitlines()]
    assert manifest["row_count"] == len(rows) == USERS + 1
    assert {r["user"] for r in rows} == {u + 10 for u in range(USERS)} | {NO_POSITIVES_USER}
    assert all(set(r) == {"user", "tracks"} and len(set(r["tracks"])) == 50 for r in rows)
    top = fs.read_bytes(join(out, "top_tracks.json"))
    assert top == fs.read_bytes(join(root, "interactions", "run1", "top_tracks.json"))
    assert manifest["top_tracks_sha256"] == sha256(top) and manifest["model_version"] == "v1"
    assert manifest["interactions_run"] == "run1"
    parquet = spark.read.parquet(join(out, "parquet"))
    assert dict(parquet.dtypes) == {"user": "bigint", "tracks": "array<bigint>"}
    assert {(r["user"], tuple(r["tracks"])) for r in parquet.collect()} == {(r["user"], tuple(r["tracks"])) for r in rows}


def test_evaluation_table(spark, trained_root):
    root, metrics, _ = trained_root
    grid = "evaluate.als.grid={rank: [4, 8], reg_param: [0.01, 1.0], alpha: [1.0, 10.0]}"
    report = evaluate_offline.run(spark, tiny_config(root, grid, "evaluate.ease.grid=[1.0, 500.0]"))
    results = report["results"]
    assert list(results) == ["TopPop", "ALS", "EASE", "MultiDAE"]
    # ALS was chosen on the validation users: one knob at a time, the chosen fit the best one seen.
    sweep = report["als"]["sweep"]
    assert len(sweep) == 1 + 3 and len({json.dumps(f["params"], sort_keys=True) for f in sweep}) == len(sweep)
    chosen = [f for f in sweep if f["params"] == report["als"]["chosen"]][0]
    assert chosen["validation"]["ndcg@100"] == max(f["validation"]["ndcg@100"] for f in sweep)
    for figures in results.values():
        assert all(0 <= v <= 1 for v in figures.values())
    # Same split, same users: the job's MultiDAE figures are the ones training reported on test users.
    assert results["MultiDAE"] == pytest.approx(metrics["test"])
    # Users like their group's block of tracks: item-item EASE must beat popularity by far.
    assert results["EASE"]["recall@20"] > 2 * results["TopPop"]["recall@20"]
    out = join(root, "evaluation", "v1")
    assert "| EASE |" in fs.read_text(join(out, "metrics.md"))
    # EASE's lambda, like ALS's knobs, is the best on the validation users.
    ease = report["ease"]
    assert len(ease["sweep"]) == 2 and ease["chosen"]["lambda"] == max(ease["sweep"], key=lambda f: f["validation"]["ndcg@100"])["lambda"]
    assert json.loads(fs.read_text(join(out, "metrics.json")))["results"] == results


def test_ease_models_the_most_popular_items_when_the_seen_ones_do_not_fit():
    # Item 2 has two training positives, items 0, 1 and 3 one each, items 4-9 none.
    X = evaluate_offline.train_matrix([np.array([0, 1, 2]), np.array([2, 3])], 10)
    assert evaluate_offline.ease_items(X, max_items=4).tolist() == [0, 1, 2, 3]  # every seen item fits
    top = evaluate_offline.ease_items(X, max_items=2)
    assert top.tolist() == [0, 2]  # the most popular, ties by item id
    scores = evaluate_offline.ease_scorer(X, 1.0, top)([np.array([2])], np.array([0]))
    # Only modelled items get a score; the fold-in item's own weight is zero (EASE's zero diagonal).
    assert scores.shape == (1, 10) and np.isneginf(scores[0, [1, 3, 4, 9]]).all() and scores[0, 2] == 0.0
    assert np.isfinite(scores[0, 0]) and scores[0, 0] > 0  # 0 and 2 were listened to together


