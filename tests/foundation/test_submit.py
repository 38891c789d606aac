"""spark-submit.sh: command rendering, errors, and real submissions to local[*] and to a
real Spark standalone cluster with code and Python environment shipped the YARN way."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim import bulk_logs

# Every test here runs ./spark-submit.sh as a subprocess (a JVM start each) or a standalone cluster.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUBMIT = str(REPO / "spark-submit.sh")


def submit(*args, env=None, timeout=600):
    return subprocess.run([SUBMIT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def event_root(tmp_path_factory):
    """A storage root with a small generated log (plus malformed lines) and a catalog."""
    root = tmp_path_factory.mktemp("root")
    bulk_logs.write_catalog(str(root / "world" / "tracks.jsonl"), tracks=500, artists=50, seed=1)
    bulk_logs.generate(str(root / "logs" / "train"), events=20_000, users=300, tracks=500, seed=1, files=2,
                       progress=False)
    with open(root / "logs" / "train" / "part-00000.jsonl", "a") as fh:
        fh.write("this is not json\n")
        fh.write('{"message": "next", "timestamp": 1, "user": 1, "track": 2, "time": 7}\n')
    return root


def test_dry_run_local_renders_exact_command():
    result = submit("extract_interactions", "--dry-run", "--run", "r1", "--set", "extract.threshold=0.9")
    assert result.returncode == 0, result.stderr
    argv = result.stdout.split()
    assert "--master" in argv and argv[argv.index("--master") + 1] == "'local[*]'"
    assert argv[argv.index("--py-files") + 1].endswith("botify-code.zip")
    assert argv[-5:] == ["extract_interactions", "--run", "r1", "--set", "extract.threshold=0.9"]
    assert "--archives" not in argv


def test_dry_run_yarn_ships_environment():
    result = submit("extract_interactions", "--master", "yarn", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "--deploy-mode cluster" in out
    assert "#environment" in out
    assert "spark.pyspark.python=./environment/bin/python" in out
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in out
    assert "pipeline.yml" in out.split("--files")[1].split()[0]


def test_an_environment_installed_on_every_node_ships_nothing():
    result = submit("extract_interactions", "--master", "yarn", "--python", "/opt/botify/bin/python", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "--archives" not in result.stdout and "#environment" not in result.stdout
    for key in ("spark.pyspark.python", "spark.yarn.appMasterEnv.PYSPARK_PYTHON", "spark.executorEnv.PYSPARK_PYTHON"):
        assert f"{key}=/opt/botify/bin/python" in result.stdout
    relative = submit("extract_interactions", "--master", "yarn", "--python", "venv/bin/python", "--dry-run")
    assert relative.returncode == 2 and "must be an absolute path" in relative.stderr


def test_unknown_job_lists_known_ones():
    result = submit("train_everything")
    assert result.returncode == 2
    assert "unknown job 'train_everything'" in result.stderr
    assert "extract_interactions" in result.stderr


def test_help_after_a_job_shows_the_jobs_own_options():
    result = submit("train_multidae", "--help")
    assert result.returncode == 0, result.stderr
    wrapper, _, job = result.stdout.partition("train_multidae options (after the job name):")
    assert "--dry-run" in wrapper and "--master" in wrapper
    assert "--model-profile" in job and "--num-processes" in job  # the job's parser, not the wrapper's
    unknown = submit("train_everything", "--help")
    assert unknown.returncode == 2 and "unknown job 'train_everything'" in unknown.stderr


def test_missing_java_is_reported(tmp_path):
    # A PATH with only this Python on it: no java anywhere.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(bin_dir)
    result = subprocess.run([SUBMIT, "extract_interactions"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Java not found" in result.stderr


def test_missing_conf_is_reported(tmp_path):
    result = submit("extract_interactions", "--dry-run", env={"BOTIFY_CONF_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "pipeline.yml" in result.stderr and "not found" in result.stderr


def read_result(root, run):
    manifest = json.loads((root / "interactions" / run / "_MANIFEST.json").read_text())
    top = json.loads((root / "interactions" / run / "top_tracks.json").read_text())
    return manifest, top


def test_extract_interactions_local(event_root, spark):
    result = submit("extract_interactions", "--run", "local", "--set", f"storage.root={event_root}")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest, top = read_result(event_root, "local")
    assert manifest["lines"] == 20_002
    assert manifest["malformed"] == {"not_json_object": 1, "bad_time": 1}
    assert manifest["events"] == 20_000
    assert manifest["tracks"] == 500
    assert (event_root / "interactions" / "LATEST").read_text().strip() == "local"
    quarantined = [json.loads(l) for p in (event_root / "quarantine" / "extract_interactions" / "local" / "lines").glob("*.json")
                   for l in p.read_text().splitlines()]
    assert sorted(q["reason"] for q in quarantined) == ["bad_time", "not_json_object"]
    assert all(q["source"].endswith("part-00000.jsonl") for q in quarantined)

    # Independent check of the aggregation with plain Python on the same files.
    pairs, by_user = {}, {}
    for part in (event_root / "logs" / "train").glob("*.jsonl"):
        for line in part.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if not isinstance(e, dict) or not 0 <= e.get("time", -1) <= 1:
                continue
            pairs.setdefault((e["user"], e["track"]), []).append(e["time"])
            by_user.setdefault(e["user"], []).append((e["timestamp"], e["message"] == "last", e["message"]))
    # A session starts with the user's first `next`, and with each `next` right after a `last`
    # (a `next` sorts before a `last` of the same millisecond: common/sessions.py).
    starts = sum(1 for events in by_user.values() for prev, cur in zip([None] + sorted(events), sorted(events))
                 if cur[2] == "next" and (prev is None or prev[2] == "last"))
    table = spark.read.parquet(str(event_root / "interactions" / "local" / "interactions"))
    assert table.count() == manifest["row_count"] == len(pairs)
    assert table.where("label = 1").count() == sum(1 for t in pairs.values() if max(t) > 0.8)
    assert starts > 0 and manifest["session_starts"] == starts == table.agg({"starts": "sum"}).first()[0]
    assert len(top) == 100


def test_too_many_malformed_publishes_nothing(event_root):
    result = submit("extract_interactions", "--run", "strict", "--set", f"storage.root={event_root}",
                    "--set", "extract.max_error_ratio=0.00001")
    assert result.returncode != 0
    # spark-submit relays the Python driver's stderr on its stdout.
    assert "max_error_ratio" in result.stdout + result.stderr
    assert not (event_root / "interactions" / "strict").exists()
    assert not (event_root / "quarantine" / "extract_interactions" / "strict").exists()  # nothing written


def test_standalone_cluster_ships_code_and_environment(standalone_cluster):
    master = standalone_cluster.master_url
    local_ip = ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]
    check = submit("cluster_check", "--master", master, *local_ip, "--tasks", "2", timeout=900)
    assert check.returncode == 0, check.stderr[-3000:] + standalone_cluster.logs()
    executors = [json.loads(l.split("executor: ", 1)[1]) for l in check.stdout.splitlines() if l.startswith("executor: ")]
    assert executors, check.stdout
    for seen in executors:
        # Python workers ran from the unpacked archive, project code came from the --py-files zip.
        assert seen["executable"].endswith("environment/bin/python"), seen
        assert str(standalone_cluster.dir) in seen["executable"] or "/environment/" in seen["executable"]
        assert "botify-code.zip" in seen["code"], seen
        assert seen["python"].startswith("3.11") and seen["numpy"].startswith("1.26")
    # A job's output on a cluster equal to the local run's is the YARN suite's (tests/yarn/test_jobs_on_yarn.py).


def test_the_code_zip_is_the_same_bytes_each_time_it_is_built(tmp_path):
    # A local-mode Spark fails a job whose --py-files changed under it, and two submits share build/.
    from launcher.submit import build_code_zip
    first = build_code_zip(tmp_path / "a.zip").read_bytes()
    time.sleep(2.1)  # a zip's timestamps have two-second resolution
    assert build_code_zip(tmp_path / "b.zip").read_bytes() == first


def test_no_job_imports_a_package_the_pack_leaves_out():
    from launcher.submit import PACK_EXCLUDES
    left_out = {p.rsplit("site-packages/", 1)[1][:-2] for p in PACK_EXCLUDES if p.endswith("/*")}
    left_out = {name for name in left_out if "/" not in name and "*" not in name}
    jobs = [p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"]
    code = ("import importlib, json, sys\n"
            f"for job in {jobs!r}: importlib.import_module('jobs.' + job)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch" in json.loads(done.stdout)
    assert left_out & set(json.loads(done.stdout)) == set()
