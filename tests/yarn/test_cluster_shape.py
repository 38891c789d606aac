"""A production-shaped cluster: nodes that come and go, and two NameNodes behind one name service.

Two NodeManagers, three DataNodes (replication 2), an HA name service with no ZKFC (the test makes the
standby active, as an operator or the failover controller would), the environment installed on every node.
Each fault is done to the real daemons while a job, botify or botify-upload works, and judged by what the
user sees: the ResourceManager's verdict, output equal to a reference run, botify's answers.
"""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from common.storage import FsspecStorage, join
from testkit.artifacts import write_recommendations
from testkit.served import TOKEN, botify_serve
from tests.yarn.harness import (container_log_dir, running_a_task, staged_root, submit_in_background,
                                wait_for_an_executor)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

fs = FsspecStorage()
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def story(shaped, tmp_path_factory):
    """The world and botify's logs on the name service, staged, with a reference extract run ``ref``."""
    root = staged_root(shaped, tmp_path_factory.mktemp("shape"), "shape", seed=9)
    assert root.startswith("hdfs://minidfs-ns/")
    return root


def rows(root, run, part="interactions"):
    import pyarrow.parquet as pq

    files = [f for f in fs.list(join(root, "interactions", run, part)) if f.endswith(".parquet")]
    return sorted(tuple(sorted(r.items())) for f in files for r in pq.read_table(io.BytesIO(fs.read_bytes(f))).to_pylist())


def assert_same_output(root, run):
    for part in ("interactions", "users", "tracks"):
        assert rows(root, run, part) == rows(root, "ref", part), part


def test_the_node_without_the_application_master_lost_mid_extract(shaped, story):
    root = story
    thread, result = submit_in_background(shaped, "extract_interactions", root, "--run", "node-lost",
                                          "--input", "events/train")
    app_id = shaped.wait_running("botify-extract_interactions")
    other = 1 - shaped.am_node(app_id)

    def on_the_other_node(pid):
        return f"/nm-logs/{other}/" in str(container_log_dir(pid)) and running_a_task(pid)

    wait_for_an_executor(shaped, "botify-extract_interactions", on_the_other_node)
    try:
        shaped.cluster.admin("nodemanager-stop", str(other))  # the node and its containers, at once
        thread.join()
        shaped.assert_succeeded(result["done"])
        assert_same_output(root, "node-lost")
        # The ResourceManager's REST API names the lost node (liveness expiry: seconds here, minutes by default).
        [lost] = shaped.wait_nodes("LOST", 1, timeout=120)
        assert shaped.node_index(lost["id"]) == other
        assert shaped.cluster.rest("/ws/v1/cluster/metrics")["clusterMetrics"]["lostNodes"] == 1
    finally:
        shaped.cluster.admin("nodemanager-start", str(other))
    shaped.wait_nodes("RUNNING", 2)


def test_a_datanode_stopped_jobs_and_botify_reads_go_on(shaped, story, tmp_path):
    root = story
    lists = {u: [(u + i) % 500 for i in range(50)] for u in range(1, 401)}
    write_recommendations(root, "dn1", lists, top=list(range(50)))
    shaped.cluster.admin("datanode-stop", "0")
    try:
        # Every block has a second replica: reads fall back to it, writes leave the dead node out.
        done = shaped.submit("analyze_ab", "--experiment", "AB", "--control", "C", "--input", "events/train",
                             "--run", "dn", root=root)
        shaped.assert_succeeded(done)
        assert "| T" in fs.read_text(join(root, "ab", "AB", "dn", "report.md"))
        with botify_serve(root, tmp_path) as (base, _):
            reloaded = requests.post(base + "/admin/reload", headers=ADMIN, json={"version": "dn1"}, timeout=120)
            assert reloaded.status_code == 200, reloaded.text
            answer = requests.post(base + "/next/7", json={"track": 1, "time": 0.9}, timeout=10)
            assert answer.status_code == 200 and requests.get(base + "/", timeout=10).json()["recommendations"] == "dn1"
    finally:
        shaped.cluster.admin("datanode-start", "0")


def test_the_active_namenode_killed_mid_job_and_the_standby_made_active(shaped, story):
    root = story
    thread, result = submit_in_background(shaped, "extract_interactions", root, "--run", "failover",
                                          "--input", "events/train")
    wait_for_an_executor(shaped, "botify-extract_interactions", running_a_task)
    stopped, _ = failover_by_kill(shaped)
    try:
        thread.join()
        shaped.assert_succeeded(result["done"])
        assert_same_output(root, "failover")
    finally:
        shaped.cluster.admin("namenode-start", stopped)  # back as the standby


def failover_by_kill(shaped, gap_s: float = 3.0, during=lambda: None):
    """Kill the active NameNode; after ``gap_s`` with none active (``during()`` runs then), make the other one
    active. Returns (the stopped NameNode's index, what ``during()`` returned)."""
    stopped = shaped.cluster.admin("namenode-stop").split()[1]
    started = time.monotonic()
    seen = during()
    time.sleep(max(0.0, gap_s - (time.monotonic() - started)))
    shaped.cluster.admin("namenode-activate", str(1 - int(stopped)))
    return stopped, seen


def test_botify_keeps_serving_through_a_failover_and_reloads_after_it(shaped, story, tmp_path):
    root = story
    lists = {u: [(u * 7 + i) % 500 for i in range(50)] for u in range(1, 401)}
    write_recommendations(root, "ha1", lists, top=list(range(50)))
    write_recommendations(root, "ha2", {u: t[::-1] for u, t in lists.items()}, top=list(range(50, 100)))
    with botify_serve(root, tmp_path) as (base, _):
        assert requests.post(base + "/admin/reload", headers=ADMIN, json={"version": "ha1"}, timeout=120).ok

        def while_no_namenode_is_active():
            started = time.monotonic()
            refused = requests.post(base + "/admin/reload", headers=ADMIN, json={"version": "ha2"}, timeout=120)
            return (refused, time.monotonic() - started,
                    requests.post(base + "/next/3", json={"track": 1, "time": 0.9}, timeout=10),
                    requests.get(base + "/", timeout=10).json()["recommendations"])

        stopped, (refused, took, answered, version) = failover_by_kill(shaped, gap_s=5,
                                                                        during=while_no_namenode_is_active)
        try:
            # No active NameNode: the reload is refused at once and the loaded lists keep serving.
            assert refused.status_code == 503 and "previous version still serving" in refused.json()["error"]
            assert took < 30, took
            assert answered.status_code == 200 and version == "ha1"
            # The standby is active now: the same reload goes through, nothing restarted.
            reloaded = requests.post(base + "/admin/reload", headers=ADMIN, json={"version": "ha2"}, timeout=120)
            assert reloaded.status_code == 200, reloaded.text
            assert requests.get(base + "/", timeout=10).json()["recommendations"] == "ha2"
        finally:
            shaped.cluster.admin("namenode-start", stopped)


def test_an_upload_through_a_failover_completes_without_duplicates(shaped, story, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(40):
        (logs / f"part-{i:05d}.jsonl").write_bytes(json.dumps({"i": i, "pad": "x" * 300_000}).encode() + b"\n")
    root = shaped.new_root("upload")
    argv = [str(Path(sys.executable).parent / "botify-upload"), "up", "--no-progress", "--log-dir", str(logs),
            "--set", f"storage.root={root}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=shaped.env())
    dataset = join(root, "logs", "up")
    deadline = time.monotonic() + 120
    while not (fs.exists(dataset) and len(fs.list(dataset)) >= 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped, _ = failover_by_kill(shaped)
    try:
        out, err = proc.communicate(timeout=600)
        # It finished through the failover, or a second run (what cron does next) finishes it.
        if proc.returncode != 0:
            again = subprocess.run(argv, capture_output=True, text=True, env=shaped.env(), timeout=600)
            assert again.returncode == 0, err + again.stderr
    finally:
        shaped.cluster.admin("namenode-start", stopped)
    shipped = {f.uri.rsplit("/", 1)[1]: f.size for f in fs.list_files(dataset)}  # hidden _tmp- names left out
    assert shipped == {p.name: p.stat().st_size for p in logs.glob("*.jsonl")}
