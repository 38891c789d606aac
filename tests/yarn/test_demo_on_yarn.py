"""The README's cluster demo, exactly as written: `botify-demo --cluster yarn` with no HADOOP_CONF_DIR, so the
demo starts Hadoop's mini cluster itself, runs every job as a YARN application with every artifact on HDFS,
shows the report and stops the cluster. Judged by what the user sees: the exit code, the report printed, and
the ResourceManager's verdict on each application as spark-submit's YARN client printed it."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

DEMO_JOBS = {"stage_events-train", "extract_interactions", "train_multidae", "infer_recommendations", "stage_events-ab",
             "analyze_ab"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("yarn-demo") / "run"
    env = {k: v for k, v in os.environ.items() if k != "HADOOP_CONF_DIR"}
    result = subprocess.run([str(Path(sys.executable).parent / "botify-demo"), "--scale", "small", "--cluster", "yarn",
                             "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=2400, env=env, stdin=subprocess.DEVNULL)
    return workdir, result


def test_the_demo_exits_0_and_prints_the_report_it_read_from_hdfs_before_the_cluster_stopped(demo):
    workdir, result = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (workdir / "report" / "report.md").read_text()
    assert "| T1 | mean_session_time |" in report and "SRM" in report
    assert report in result.stdout
    timings = json.loads((workdir / "timings.json").read_text())
    # botify's own BASELINE phase made the training traffic (the local demo test takes the fast path).
    assert {"start HDFS + YARN", "start botify (BASELINE)", "extract_interactions", "train_multidae",
            "infer_recommendations", "analyze_ab"} <= set(timings)


def test_every_step_ran_as_a_yarn_application_the_resourcemanager_called_succeeded(demo):
    workdir, result = demo
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = {}
    for log in (workdir / "logs").glob("*.log"):
        # spark-submit's YARN client prints the ResourceManager's application report until the application ends.
        statuses = re.findall(r"final status: (\w+)", log.read_text(errors="replace"))
        if statuses:
            verdicts[log.stem] = statuses[-1]
    assert DEMO_JOBS <= set(verdicts), sorted(verdicts)
    assert set(verdicts.values()) == {"SUCCEEDED"}, verdicts
