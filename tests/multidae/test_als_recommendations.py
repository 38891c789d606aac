"""train_als: the ranking rule on small arrays (fast), and the job on a tiny interactions run writing a
recommendations version that botify's own checks accept as its `als` set (slow: a Spark ALS fit)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.train_als import top_items
from tests.multidae.conftest import GROUPS, NO_POSITIVES_USER, TRACK_ID_OFFSET, TRACKS, USERS, make_positives


def test_top_items_best_first_with_ties_by_lower_position():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [2.0, 0.0]], dtype=np.float32)
    known = np.ones(5, dtype=bool)
    got = top_items(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), items, 3, known)
    assert got.tolist() == [[4, 0, 2], [1, 3, 0]]


def test_top_items_puts_unrated_and_consumed_items_last():
    items = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    known = np.array([False, True, True, True, True])
    user = np.array([[1.0]], dtype=np.float32)
    assert top_items(user, items, 3, known).tolist() == [[1, 2, 3]]
    assert top_items(user, items, 3, known, consumed=[np.array([2])]).tolist() == [[1, 3, 4]]
    # Only when nothing else is left do they fill the list.
    assert top_items(user, items, 5, known, consumed=[np.array([2])]).tolist() == [[1, 3, 4, 0, 2]]


@pytest.fixture(scope="module")
def als_root(spark, tmp_path_factory):
    """A storage root of its own (the session's roots serve other jobs' tests) with one interactions run."""
    from tests.multidae.conftest import write_interactions_run

    root = "file://" + str(tmp_path_factory.mktemp("als-root"))
    write_interactions_run(spark, root)
    return root


@pytest.mark.slow  # fits ALS in a local Spark session
def test_the_job_writes_a_version_botify_serves_as_its_als_set(spark, als_root):
    from botify.artifacts import load_bundle
    from botify.settings import load_settings
    from common.storage import FsspecStorage, join, read_pointer
    from jobs import train_als
    from testkit.artifacts import catalog_rows, write_catalog
    from tests.multidae.conftest import tiny_config

    manifest = train_als.run(spark, tiny_config(als_root, "als.rank=8", "als.max_iter=8"))
    storage = FsspecStorage()
    recs_root = join(als_root, "recommendations")
    assert read_pointer(storage, join(recs_root, "LATEST-als")) == "als-run1" == manifest["model_version"]
    assert not storage.exists(join(recs_root, "LATEST"))  # the MultiDAE's pointer is not the ALS job's
    assert manifest["row_count"] == USERS + 1 and manifest["als"]["rank"] == 8

    rows = [json.loads(line) for rel in manifest["json_files"]
            for line in storage.read_text(join(recs_root, "als-run1", rel)).splitlines()]
    lists = {row["user"]: row["tracks"] for row in rows}
    assert sorted(lists) == sorted([u + 10 for u in range(USERS)] + [NO_POSITIVES_USER])
    for tracks in lists.values():
        assert len(set(tracks)) == 50 and all(TRACK_ID_OFFSET <= t < TRACK_ID_OFFSET + TRACKS for t in tracks)
    # The lists come from the factors: each group's users get mostly their group's block of tracks (chance: 1/4).
    block = TRACKS // GROUPS
    liked = make_positives()
    in_block = [np.mean([(t - TRACK_ID_OFFSET) // block == u % GROUPS for t in lists[u + 10][:10]]) for u in liked]
    assert np.mean(in_block) > 0.8

    # botify: the catalog holds the run's tracks; routing MODELS loads the als set with every check it has.
    write_catalog(als_root, [{**r, "track": r["track"] + TRACK_ID_OFFSET}
                             for r in catalog_rows(TRACKS, 16)])
    config = load_settings([f"storage.root={als_root}", "active_experiments=[MODELS]"], env={})
    bundle = load_bundle(config, storage)
    assert bundle.sets["default"] is None  # no MultiDAE version in this root
    assert bundle.sets["als"].version == "als-run1" and bundle.sets["als"].lists == lists
