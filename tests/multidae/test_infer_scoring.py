"""infer_recommendations.score_users against the model itself: every user's list equals a direct torch top-k.

A tiny untrained model (random weights are as good as trained ones for "the job
computes what the model says"), users with histories of every length including
none, scored through the job's Spark path in several partitions and batches
that do not divide them; the reference scores each user alone, unpadded.
"""
import numpy as np
import pytest
import torch

from common.checkpoint import CHECKPOINT_FORMAT, from_bytes, model_from_checkpoint, to_bytes
from common.model import MultiDAE, MultiDAEConfig
from jobs.infer_recommendations import score_users

pytestmark = pytest.mark.slow  # the first Spark Python worker imports torch: well over 5 s on a loaded 2-core machine

TRACKS, USERS, K, ID_OFFSET = 300, 41, 20, 5000  # track ids != positions, so an index mix-up shows


@pytest.fixture(scope="module")
def model_bytes():
    torch.manual_seed(3)
    config = MultiDAEConfig(n_items=TRACKS, dims=[24, 6])
    return to_bytes({"format": CHECKPOINT_FORMAT, "model_config": config.to_dict(), "state_dict": MultiDAE(config).state_dict(),
                     "item_index": torch.arange(ID_OFFSET, ID_OFFSET + TRACKS, dtype=torch.int64)})


def histories():
    rng = np.random.default_rng(11)
    return {user: sorted(rng.choice(TRACKS, size=int(rng.integers(0, 60)) if user % 7 else 0, replace=False).tolist())
            for user in range(100, 100 + USERS)}


def reference(model_bytes, items, k, exclude):
    """(track ids, scores) of one user's top ``k``, straight from the model's forward pass."""
    model = model_from_checkpoint(from_bytes(model_bytes))
    with torch.no_grad():
        logits = model(torch.tensor([items or [0]]), torch.tensor([len(items)]))[0]
    if exclude and items:
        logits[items] = float("-inf")
    scores, top = logits.topk(k)
    return (top + ID_OFFSET).tolist(), scores.tolist()


@pytest.mark.parametrize("exclude", [False, True])
def test_lists_equal_the_models_own_top_k(spark, model_bytes, exclude):
    liked = histories()
    users = spark.createDataFrame(sorted(liked.items()), "user long, items array<int>").repartition(3)
    rows = {r["user"]: r for r in score_users(users, model_bytes, K, exclude, batch_size=4).collect()}
    assert set(rows) == set(liked)
    for user, items in liked.items():
        tracks, scores = reference(model_bytes, items, K, exclude)
        assert rows[user]["tracks"] == tracks, user
        assert np.allclose(rows[user]["scores"], scores, rtol=1e-5, atol=1e-6), user
    assert any(not items for items in liked.values()) and any(len(items) > 40 for items in liked.values())


def test_top_k_larger_than_the_catalogue_is_an_error(spark, model_bytes):
    users = spark.createDataFrame([(1, [1, 2])], "user long, items array<int>")
    with pytest.raises(Exception, match="top_k=301"):
        score_users(users, model_bytes, TRACKS + 1, False).collect()
