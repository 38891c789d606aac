"""What goes wrong on a real cluster, done to the real mini cluster: each fault, then what the user sees.

An executor's container is killed mid-training, or a rank raises; HDFS is in
safe mode or the job's directory is out of space quota; an application is killed through the
ResourceManager's REST API under botify-daily. In every case a reader of the
storage root sees the old complete output or the new complete one, never a
part, and the error says what happened. Lost nodes and NameNodes are
test_cluster_shape.py's.
"""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.storage import FsspecStorage, join
from tests.yarn.harness import descendants_running, kill_an_executor_when, staged_root, submit_in_background

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
fs = FsspecStorage()


@pytest.fixture(scope="module")
def staged(yarn, tmp_path_factory):
    """An HDFS root with the world, botify's logs staged, and a reference extract run ``ref``."""
    return staged_root(yarn, tmp_path_factory.mktemp("faults"), "faults", seed=8)


TINY = [a for item in ["multidae.dims=[32, 8]", "multidae.epochs=8", "multidae.batch_size=32", "multidae.partitions=4",
                       "multidae.threads_per_process=1", "multidae.petastorm.workers_count=1"] for a in ("--set", item)]


def rows(spark, uri):
    return sorted(tuple(r) for r in spark.read.parquet(uri).collect())


class PartialWatcher:
    """Lists a directory over and over while a job runs; remembers any entry a reader could take for output
    (no leading underscore) that had no _SUCCESS in it."""

    def __init__(self, uri):
        self.uri, self.partial, self.looks = uri, set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for child in fs.list(self.uri):
                name = child.rstrip("/").rsplit("/", 1)[-1]
                if not name.startswith(("_", ".")) and not fs.exists(join(child, "_SUCCESS")) \
                        and fs.exists(child) and not name.isupper():
                    self.partial.add(name)
            self.looks += 1
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_an_executor_killed_mid_training_resumes_from_its_checkpoint_inside_the_same_submit(yarn, staged):
    root = staged
    args = ("--interactions", "ref", "--version", "k1", "--local-mode", "false", "--num-processes", "2", *TINY)
    with PartialWatcher(join(root, "models", "multidae")) as watcher:
        thread, result = submit_in_background(yarn, "train_multidae", root, *args)
        # Mid-training: torchrun's ranks are running inside the executor's barrier task.
        app_id, killed = kill_an_executor_when(yarn, "botify-train_multidae",
                                               lambda pid: descendants_running(pid, "torch.distributed.run"))
        thread.join()
    done = result["done"]
    assert done.returncode == 0, done.explain(yarn)
    assert yarn.final_status(app_id) == ("FINISHED", "SUCCEEDED")
    assert not watcher.partial
    model = join(root, "models", "multidae", "k1")
    metrics = json.loads(fs.read_text(join(model, "metrics.json")))
    assert fs.exists(join(model, "_SUCCESS")) and metrics["world_size"] == 2
    # Every epoch once in the model's history: the second attempt went on from the last checkpoint.
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, len(metrics["epochs"]) + 1))
    record = json.loads(fs.read_text(fs.list(join(root, "runs", "train_multidae"))[-1]))
    outcomes = [a["outcome"] for a in record["attempts"]]
    assert outcomes == ["retried: lost an executor", "succeeded"], record["attempts"]


def test_a_rank_that_raises_fails_the_submit_after_one_attempt(yarn, staged):
    from common.checkpoint import to_bytes

    root = staged
    # The version's checkpoint was trained with other dims: every rank refuses to resume from it. Retrying would
    # only repeat that, unlike a lost executor.
    fs.write_bytes(join(root, "models", "multidae", "_work", "mismatch", "last.pt"),
                   to_bytes({"epoch": 1, "model_config": {"n_items": 3, "dims": [2]}}))
    done = yarn.submit("train_multidae", "--interactions", "ref", "--version", "mismatch", "--local-mode", "false",
                       "--num-processes", "2", *TINY, root=root)
    assert done.returncode != 0 and yarn.final_status(done.app_id) == ("FINISHED", "FAILED"), done.explain(yarn)
    record = json.loads(fs.read_text(fs.list(join(root, "runs", "train_multidae"))[-1]))
    assert record["status"] == "failed"
    [attempt] = record["attempts"]
    assert attempt["outcome"] == "failed", attempt
    # The rank's own words are in its container's output (TorchDistributor may hand the driver only "failed").
    assert "use another --version" in yarn.container_logs(done.app_id) + attempt["error"], done.explain(yarn)
    assert not fs.exists(join(root, "models", "multidae", "mismatch"))


def test_hdfs_in_safe_mode_refuses_the_job_and_the_upload_with_the_reason(yarn, staged, tmp_path):
    root = staged
    before = fs.list(join(root, "interactions"))
    logs = tmp_path / "more-logs"
    logs.mkdir()
    (logs / "botify-1.jsonl").write_text("{}\n")  # a completed file, as botify names them
    yarn.cluster.admin("safemode-enter")
    try:
        done = yarn.submit("extract_interactions", "--run", "sm", "--input", "events/train", root=root)
        upload = subprocess.run([str(Path(sys.executable).parent / "botify-upload"), "more", "--no-progress",
                                 "--log-dir", str(logs), "--set", f"storage.root={root}"],
                                capture_output=True, text=True, env=yarn.env(), timeout=300)
    finally:
        yarn.cluster.admin("safemode-leave")
    assert done.returncode != 0 and "safe mode" in done.stderr.lower(), done.explain(yarn)
    assert upload.returncode != 0 and "safe mode" in (upload.stderr + upload.stdout).lower(), upload.stderr
    assert fs.list(join(root, "interactions")) == before
    assert not fs.exists(join(root, "logs", "more"))


def test_a_directory_out_of_space_quota_fails_the_job_and_keeps_the_old_output(yarn, staged, spark):
    root = staged
    target = join(root, "interactions")
    path = "/" + target.split("://", 1)[1].split("/", 1)[1]
    reference = rows(spark, join(target, "ref", "interactions"))
    yarn.cluster.admin("space-quota", path, str(1024 * 1024))
    try:
        done = yarn.submit("extract_interactions", "--run", "ref", "--input", "events/train", root=root)
    finally:
        yarn.cluster.admin("clear-quota", path)
    assert done.returncode != 0 and done.app_id, done.explain(yarn)
    assert yarn.final_status(done.app_id)[1] == "FAILED"
    record = json.loads(fs.read_text(fs.list(join(root, "runs", "extract_interactions"))[-1]))
    assert record["status"] == "failed" and "quota" in record["error"].lower(), record
    # The run it tried to replace is still there, whole; nothing of the failed attempt is left beside it.
    assert rows(spark, join(target, "ref", "interactions")) == reference
    assert not [u for u in fs.list(target) if u.rstrip("/").rsplit("/", 1)[-1].startswith("_tmp-")]


def test_botify_daily_reports_a_killed_application_and_resumes_from_it(yarn, staged, tmp_path):
    root = staged
    date = "2026-12-01"
    daily = [str(Path(sys.executable).parent / "botify-daily"), "--date", date, "--master", "yarn",
             "--profile", "minicluster", "--only", "stage_events", "--only", "extract_interactions"]
    # The staged logs are from 2023: the training window reads every date up to the night.
    sets = [a for item in [f"storage.root={root}", "daily.dataset=train", f"daily.log_dir={tmp_path / 'logs'}",
                           f"daily.lock_file={tmp_path / 'daily.lock'}", "daily.train_window_days=null"]
            for a in ("--set", item)]
    killed = {}

    def kill_extract():
        killed["app"] = yarn.wait_running("botify-extract_interactions", 900)
        yarn.kill(killed["app"])

    killer = threading.Thread(target=kill_extract, daemon=True)
    killer.start()
    night = subprocess.run([*daily, *sets], capture_output=True, text=True, env=yarn.env(), timeout=1500)
    killer.join()
    assert night.returncode == 1, night.stdout + night.stderr
    assert "extract_interactions" in night.stderr and yarn.app(killed["app"])["state"] == "KILLED"
    assert not fs.exists(join(root, "interactions", date))
    resumed = subprocess.run([*daily, "--from-step", "extract_interactions", *sets], capture_output=True, text=True,
                             env=yarn.env(), timeout=1500)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert fs.exists(join(root, "interactions", date, "_SUCCESS"))

    # The next night one new log file has arrived: staging reads it alone and leaves the other dates be.
    before = json.loads(fs.read_text(join(root, "events", "train", "_STAGED.json")))
    subprocess.run([sys.executable, "-m", "sim", "generate", "--seed", "9", "--tracks", "300", "--users", "50",
                    "--out", str(tmp_path / "world")], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "sim", "bulk", "--events", "1500", "--world", str(tmp_path / "world"),
                    "--files", "1", "--date", "2026-12-02", "--out", str(tmp_path / "new-logs")],
                   check=True, capture_output=True)
    shipped = subprocess.run([str(Path(sys.executable).parent / "botify-upload"), "train", "--no-progress",
                              "--log-dir", str(tmp_path / "new-logs"), "--set", f"storage.root={root}"],
                             capture_output=True, text=True, env=yarn.env(), timeout=300)
    assert shipped.returncode == 0, shipped.stderr
    second = subprocess.run([*daily[:2], "2026-12-02", *daily[3:7], "--only", "stage_events", *sets],
                            capture_output=True, text=True, env=yarn.env(), timeout=1500)
    assert second.returncode == 0, second.stdout + second.stderr
    after = json.loads(fs.read_text(join(root, "events", "train", "_STAGED.json")))
    new_inputs = {u: v for u, v in after["inputs"].items() if u not in before["inputs"]}
    assert len(new_inputs) == 1 and all(v["run"] == "2026-12-02" for v in new_inputs.values())
    assert after["dates"]["2026-12-02"]["events"] == 1500
    assert {d: v for d, v in after["dates"].items() if d != "2026-12-02"} == before["dates"]
    record = json.loads(fs.read_text(fs.list(join(root, "runs", "stage_events"))[-1]))
    assert [i["rows"] for i in record["inputs"]] == [1500]
