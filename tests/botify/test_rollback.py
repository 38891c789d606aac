"""An operator rolls botify back and holds serving, against a running `botify serve`: the version rolled back
to serves now and after a restart, the version rolled away from is never served again, and no job moves
LATEST while the hold is set."""
import json
import subprocess
import sys

import pytest
import requests

from common import serving_control
from common.storage import FsspecStorage, join
from tests.botify.conftest import TOP, USERS, v2_list
from testkit.artifacts import write_recommendations
from testkit.served import TOKEN, botify_serve, serve_env

pytestmark = pytest.mark.slow  # two gunicorn starts

BOTIFY = [sys.executable, "-m", "botify"]


def served_version(base: str) -> str:
    """What botify says it serves (GET /): the version in Redis's active namespace, every worker's answer."""
    return requests.get(base + "/", timeout=10).json()["recommendations"]


def cli(root: str, *args: str, base: str = "") -> subprocess.CompletedProcess:
    env = {**serve_env(root), "BOTIFY_ADMIN_TOKEN": TOKEN}
    url = ["--url", base] if base and args[0] == "rollback" else []
    return subprocess.run([*BOTIFY, *args, *url], capture_output=True, text=True, env=env, timeout=120)


def test_a_rollback_serves_now_survives_a_restart_and_its_rejected_version_never_comes_back(world, tmp_path):
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)  # LATEST -> v2
    recs = join(world, "recommendations")
    with botify_serve(world, tmp_path) as (base, _):
        assert served_version(base) == "v2"
        done = cli(world, "rollback", "--to", "v1", "--reason", "bad lists", base=base)
        assert done.returncode == 0, done.stderr
        assert served_version(base) == "v1"
        again = requests.post(base + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"version": "v2", "force": True}, timeout=60)
        assert again.status_code >= 400 and "rejected" in again.json()["error"]
        assert served_version(base) == "v1"
    storage = FsspecStorage()
    assert storage.read_text(join(recs, "LATEST")).strip() == "v1"
    assert set(serving_control.rejected(storage, recs)) == {"v2"}
    assert serving_control.held(storage, recs)["version"] == "v1"
    # A restart reads LATEST: still v1.
    with botify_serve(world, tmp_path) as (base, _):
        assert served_version(base) == "v1"
    # Rolling forward onto the rejected version is refused, and changes nothing.
    refused = cli(world, "rollback", "--to", "v2")
    assert refused.returncode == 1 and "rejected" in refused.stderr
    assert storage.read_text(join(recs, "LATEST")).strip() == "v1"


def test_a_hold_keeps_latest_while_a_job_publishes_and_release_lifts_it(world, tmp_path, spark):
    from common.config import load_config
    from common.recommendation_lists import publish

    recs = join(world, "recommendations")
    assert cli(world, "hold", "--reason", "investigating").returncode == 0
    config = load_config("pipeline.yml", [f"storage.root={world}"])
    lists = spark.createDataFrame([(u, v2_list(u)) for u in range(USERS)], "user long, tracks array<long>")
    publish(FsspecStorage(), config, lists, json.dumps(TOP).encode(), "v3", {"model_version": "v3"})
    storage = FsspecStorage()
    assert storage.exists(join(recs, "v3", "_SUCCESS"))
    assert storage.read_text(join(recs, "LATEST")).strip() == "v1"
    released = cli(world, "release")
    assert released.returncode == 0 and json.loads(released.stdout)["status"] == "released"
    publish(FsspecStorage(), config, lists, json.dumps(TOP).encode(), "v4", {"model_version": "v4"})
    assert storage.read_text(join(recs, "LATEST")).strip() == "v4"
