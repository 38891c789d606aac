"""The whole loop on YARN at small scale: `botify-demo --cluster yarn`, every job an application, every artifact on HDFS."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.storage import FsspecStorage, join

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

fs = FsspecStorage()
DEMO_JOBS = {"botify-stage_events", "botify-extract_interactions", "botify-train_multidae",
             "botify-infer_recommendations", "botify-analyze_ab"}


@pytest.fixture(scope="module")
def demo(yarn, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("yarn-demo") / "run"
    root = yarn.new_root("demo")
    started_ms = time.time() * 1000
    # HADOOP_CONF_DIR names the session's mini cluster, so the demo uses it instead of starting its own.
    result = subprocess.run([str(Path(sys.executable).parent / "botify-demo"), "--scale", "small", "--cluster", "yarn",
                             "--spark-profile", "minicluster", "--root", root, "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=2400, env=yarn.env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    apps = [a for a in yarn.cluster.applications() if a["startedTime"] >= started_ms]
    return workdir, root, result.stdout, apps


def test_every_step_ran_as_a_yarn_application_that_succeeded(demo):
    _, _, _, apps = demo
    assert DEMO_JOBS <= {a["name"] for a in apps}
    assert all((a["state"], a["finalStatus"]) == ("FINISHED", "SUCCEEDED") for a in apps), \
        [(a["name"], a["state"], a["finalStatus"]) for a in apps]


def test_the_report_came_from_hdfs_with_the_same_table_as_the_local_demo(demo):
    workdir, root, stdout, _ = demo
    report = fs.read_text(join(root, "ab", "AB", "demo", "report.md"))
    assert "| T1 | mean_session_time |" in report and "SRM" in report
    assert (workdir / "report" / "report.md").read_text() == report
    assert report in stdout
    timings = json.loads((workdir / "timings.json").read_text())
    assert {"extract_interactions", "train_multidae", "infer_recommendations", "analyze_ab"} <= set(timings)


def test_botify_served_the_lists_it_fetched_from_hdfs(demo):
    _, root, _, _ = demo
    version = fs.read_text(join(root, "recommendations", "LATEST")).strip()
    lists = {}
    for part in fs.list(join(root, "recommendations", version, "json")):
        for line in fs.read_text(part).splitlines():
            row = json.loads(line)
            lists[row["user"]] = row["tracks"]
    events = [json.loads(line) for part in fs.list(join(root, "logs", "ab")) if part.endswith(".jsonl")
              for line in fs.read_text(part).splitlines() if line.strip()]
    treated = [e for e in events if e["message"] == "next" and e["experiments"]["AB"] == "T1" and e["user"] in lists]
    assert len(treated) > 100
    assert sum(e["recommendation"] in lists[e["user"]] for e in treated) / len(treated) > 0.95
