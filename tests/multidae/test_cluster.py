"""The cluster path: ./spark-submit.sh on a real Spark standalone cluster (2 one-core workers).

train_multidae runs TorchDistributor with local_mode=False: both DDP ranks are
barrier tasks on executors that run the shipped Python environment and read
their own petastorm shard; then infer_recommendations scores on the executors.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from common.storage import FsspecStorage, join
from tests.multidae.conftest import TINY, USERS, write_interactions_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]


def submit(job, master, root, *args):
    sets = [a for item in [f"storage.root={root}", *TINY] for a in ("--set", item)]
    return subprocess.run([str(REPO / "spark-submit.sh"), job, "--master", master, *LOOPBACK, *sets, *args],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))


def last_json(stdout: str) -> dict:
    """The job's summary line (log lines from py4j may follow it on stdout)."""
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def test_train_and_infer_on_standalone_cluster(spark, standalone_cluster, tmp_path):
    root = "file://" + str(tmp_path / "root")
    write_interactions_run(spark, root)
    master = standalone_cluster.master_url

    trained = submit("train_multidae", master, root, "--version", "c1", "--local-mode", "false", "--num-processes", "2")
    assert trained.returncode == 0, trained.stderr[-4000:] + standalone_cluster.logs()
    summary = last_json(trained.stdout)
    assert summary["version"] == "c1" and summary["epochs"] == 2
    metrics = json.loads(FsspecStorage().read_text(join(root, "models", "multidae", "c1", "metrics.json")))
    # Two ranks each ran steps_per_epoch batches from their own shard; together they covered the training users.
    assert all(e["users_seen"] >= metrics["train_users"] for e in metrics["epochs"])
    # local_mode=False: the ranks ran inside an executor of this cluster, on the shipped environment.
    assert metrics["world_size"] == 2 and str(standalone_cluster.dir) in metrics["rank_process"]["cwd"]
    assert metrics["rank_process"]["executable"].endswith("environment/bin/python")

    inferred = submit("infer_recommendations", master, root)
    assert inferred.returncode == 0, inferred.stderr[-4000:] + standalone_cluster.logs()
    assert last_json(inferred.stdout) == {"model_version": "c1", "row_count": USERS + 1,
                                                                    "interactions_run": "run1"}
