"""Run records (common/run_record.py through launcher/launch.py): the counts a job records are the counts of what it
wrote, counted here independently; a failed job leaves a failed record with its error (real Spark, real files)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from common import run_record
from launcher import launch

pytestmark = pytest.mark.slow  # each test runs whole jobs

REPO = Path(__file__).resolve().parents[2]
DAY = 86_400_000
D1 = 20_000 * DAY  # 2024-10-04, UTC
BAD = ["not json", '{"message": "next", "timestamp": 5, "user": "1", "track": 2, "time": 0.5}', "[1, 2]"]


def events(start: int, users: int, per_user: int = 4):
    return [{"message": "last" if step == per_user - 1 else "next", "timestamp": start + user * 100 + step,
             "user": user, "track": (user + step) % 7, "time": 0.3 * step, "latency": 0.002, "recommendation": step,
             "experiments": {"AB": "C" if user % 2 else "T1"}}
            for user in range(users) for step in range(per_user)]


def write_logs(root: Path) -> int:
    """Two days of events, one exact duplicate and three bad lines; returns the lines written."""
    good = events(D1, 6) + events(D1 + DAY, 5)
    lines = [json.dumps(e) for e in good + good[:1]] + BAD
    path = root / "logs" / "botify" / "part-0.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def records(root: Path, job: str):
    return [json.loads(p.read_text()) for p in sorted((root / "runs" / job).glob("*.json"))]


def local(uri: str) -> str:
    return uri.removeprefix("file://")


def test_records_hold_the_counts_of_what_the_jobs_wrote(spark, tmp_path):
    lines = write_logs(tmp_path)
    root = f"storage.root=file://{tmp_path}"
    assert launch.run(["stage_events", "--run", "r1", "--input", "logs/botify", "--dataset", "botify",
                       "--set", root, "--set", "stage.max_error_ratio=0.5", "--record-id", "night-1"]) == 0
    [staged] = records(tmp_path, "stage_events")
    assert staged["run_id"] == "night-1" and staged["status"] == "succeeded" and staged["error"] is None
    assert staged["job"] == "stage_events" and "--record-id" not in staged["arguments"]
    assert staged["config"]["storage"]["root"] == f"file://{tmp_path}" and staged["config"]["stage"]["max_error_ratio"] == 0.5
    assert staged["version"] and staged["commit"]
    assert set(staged["stages"]) >= {"read", "write"} and staged["seconds"] > 0
    assert staged["inputs"] == [{"name": "event log lines", "uri": f"file://{tmp_path}/logs/botify", "rows": lines}]
    # every output counted again here, from the Parquet the job published
    assert len(staged["outputs"]) == 2
    for output in staged["outputs"]:
        assert output["rows"] == spark.read.parquet(output["uri"]).count() > 0
    # the quarantine, read back and grouped by reason here, is what the record says
    quarantine = tmp_path / "quarantine" / "stage_events" / "botify" / "r1"
    reasons = Counter(json.loads(line)["reason"] for f in quarantine.rglob("*.json") for line in f.read_text().splitlines())
    assert staged["quarantined"] == dict(reasons) and sum(reasons.values()) == len(BAD)

    assert launch.run(["extract_interactions", "--run", "r1", "--input", "events/botify", "--catalog", "none",
                       "--set", root]) == 0
    [extracted] = records(tmp_path, "extract_interactions")
    assert extracted["status"] == "succeeded" and extracted["run_id"].endswith(tuple("0123456789abcdef"))
    out = {o["name"]: o for o in extracted["outputs"]}
    interactions = spark.read.parquet(out["interactions"]["uri"])
    assert out["interactions"]["rows"] == interactions.count() > 0
    assert out["users"]["rows"] == interactions.select("user").distinct().count() == 6
    assert out["tracks"]["rows"] == spark.read.parquet(out["tracks"]["uri"]).count() == 7
    assert extracted["inputs"][0]["rows"] == lines  # the lines staging read, as the staged manifest says
    assert extracted["quarantined"] == {}  # staging quarantined the bad lines; no unknown tracks without a catalog

    assert launch.run(["analyze_ab", "--run", "r1", "--input", "events/botify", "--experiment", "AB", "--control", "C",
                       "--set", root]) == 0
    [analysed] = records(tmp_path, "analyze_ab")
    [user_metrics] = analysed["outputs"]
    assert user_metrics["rows"] == spark.read.parquet(user_metrics["uri"]).count() > 0
    assert set(analysed["stages"]) >= {"sessions", "effects", "publish"}


def test_a_failed_job_leaves_a_failed_record_with_its_error(spark, tmp_path):
    write_logs(tmp_path)
    code = launch.run(["extract_interactions", "--run", "r1", "--input", "logs/botify", "--catalog", "none",
                       "--set", f"storage.root=file://{tmp_path}", "--record-id", "bad-night"])
    assert code == 1  # 3 bad lines of 46 are over the default 1% ratio
    record = json.loads((tmp_path / "runs" / "extract_interactions" / "bad-night.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("TooManyMalformed: ")
    assert "max_error_ratio" in record["error"] and record["finished_at"] and record["outputs"] == []
    assert not (tmp_path / "interactions").exists()
    assert not [p for p in (tmp_path / "runs" / "extract_interactions").iterdir() if p.name.startswith("_tmp")]


def test_a_job_that_cannot_start_is_recorded_too(spark, tmp_path):
    with pytest.raises(SystemExit):  # as the job exits under spark-submit: its message, exit code 1
        launch.run(["stage_events", "--dataset", "../x", "--input", "logs", "--set", f"storage.root=file://{tmp_path}",
                    "--record-id", "r"])
    record = json.loads((tmp_path / "runs" / "stage_events" / "r.json").read_text())
    assert record["status"] == "failed" and "--dataset '../x'" in record["error"]


def test_under_spark_submit_the_record_names_the_application_and_its_event_log(tmp_path):
    """The real path: spark-submit.sh, the code zip, a Spark event log the History Server can read."""
    write_logs(tmp_path)
    events_dir = tmp_path / "spark-events"  # does not exist yet: the job creates it
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.run([str(REPO / "spark-submit.sh"), "extract_interactions", "--master", "local[1]",
                           "--conf", f"spark.eventLog.dir=file://{events_dir}", "--run", "r1", "--input", "logs/botify",
                           "--catalog", "none", "--set", f"storage.root=file://{tmp_path}", "--set",
                           "extract.max_error_ratio=0.5", "--record-id", "submitted"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / "extract_interactions" / "submitted.json").read_text())
    assert record["status"] == "succeeded" and record["spark"]["master"] == "local[1]"
    assert record["spark"]["event_log_dir"] == f"file://{events_dir}"
    assert [p.name for p in events_dir.iterdir()] == [f"eventlog_v2_{record['spark']['app_id']}"]
    assert list(record["stages"])[0] == "session" and "publish" in record["stages"]
    assert record["quarantined"] == {"not_json_object": 2, "bad_user": 1}
    # docs/operations.md's History Server command over that directory lists the application
    assert record["spark"]["app_id"] in [app["id"] for app in history_server_apps(events_dir)]


def history_server_apps(events_dir: Path) -> list:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_HISTORY_OPTS": f"-Dspark.history.fs.logDirectory=file://{events_dir} -Dspark.history.ui.port={port}"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "spark-class"),
                               "org.apache.spark.deploy.history.HistoryServer"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/applications", timeout=5) as answer:
                    apps = json.loads(answer.read())
                if apps or time.monotonic() > deadline:  # the provider scans the directory every 10 s
                    return apps
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_code_zip_stamped_at_submit_names_the_commit_without_git(tmp_path):
    """A cluster node has no .git: the commit comes from common/build_info.py in the code zip."""
    from launcher.submit import build_code_zip

    code = build_code_zip(tmp_path / "code.zip")
    with zipfile.ZipFile(code, "a") as zf:
        if "common/build_info.py" not in zf.namelist():  # launcher/submit.py stamps it once the hook is in
            zf.writestr("common/build_info.py", run_record.build_info_source())
    probe = "import json, common.run_record as r; print(json.dumps([r.__file__, r.build_info()]))"
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(code)!r}); {probe}"],
                         cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120).stdout
    where, info = json.loads(out)
    assert where.startswith(str(code))  # the zip's code ran, as on a node
    assert info["commit"] == run_record.git_commit(REPO) and len(info["commit"].split("-")[0]) == 40
    assert info["version"] == run_record.installed_version()


# What a failed TorchDistributor barrier stage raises in the driver, cut down: the rank's own error sits in
# torchrun's output, inside the task's "Command ... failed" message, under the JVM's words.
BARRIER_FAILURE = """An error occurred while calling o449.collectToPython.
: org.apache.spark.SparkException: Job aborted due to stage failure: Could not recover from a failed barrier ResultStage.
Lost task 0.0 in stage 5.0 (TID 9) (localhost executor 1): org.apache.spark.api.python.PythonException: Traceback (most recent call last):
  File "/env/lib/python3.11/site-packages/pyspark/ml/torch/distributor.py", line 516, in _execute_command
    raise RuntimeError(
RuntimeError: Command ['/env/bin/python', '-m', 'torch.distributed.run', 'train.py'] failed with return code 1. The task output is included below: Traceback (most recent call last):
  File "/tmp/train.py", line 9, in <module>
    state = _restore(spec, model)
[rank0]: ValueError: hdfs:///w/last.pt was trained with {'dims': [2]}, not {'dims': [32, 8]}: use another --version
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: train.py FAILED

\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:572)
\tat java.base/java.lang.Thread.run(Thread.java:840)
Caused by: java.io.IOException: not the cause a reader wants
"""


def test_a_python_task_failure_is_led_by_the_error_the_task_really_raised():
    described = run_record.describe_error(RuntimeError(BARRIER_FAILURE))
    first = described.splitlines()[0]
    assert first.startswith("[rank0]: ValueError: hdfs:///w/last.pt was trained with"), first
    assert first.endswith("(root cause of RuntimeError: An error occurred while calling o449.collectToPython.)")
