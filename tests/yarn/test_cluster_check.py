"""A user's first day on YARN: cluster_check, then the same job with the driver on this host.

The environment and Spark's jars ship once to the cluster's cache directory; every
application after that only names them.
"""
import json

import pytest

pytestmark = pytest.mark.slow


def probes(text):
    return [json.loads(line.split("executor:", 1)[1]) for line in text.splitlines() if line.startswith("executor:")]


def test_cluster_check_runs_in_the_shipped_environment_in_cluster_mode(yarn):
    root = yarn.new_root("check")
    done = yarn.submit("cluster_check", "--tasks", "2", root=root)
    # The ResourceManager, not the job, says how it ended.
    yarn.assert_succeeded(done)
    seen = probes(yarn.driver_stdout(done.app_id))
    assert seen, done.explain(yarn)
    # The executors ran the packed environment unpacked by YARN, and the code from the --py-files zip.
    assert all(p["executable"].endswith("environment/bin/python") for p in seen)
    assert all("botify-code.zip" in p["code"] for p in seen)
    # The 3 GB environment and Spark's jars were not uploaded with the application: only named.
    assert "env-" not in "".join(line for line in done.stderr.splitlines() if "Uploading resource" in line)
    assert "spark-core" not in done.stderr and "__spark_libs__" not in done.stderr


def test_cluster_check_in_client_mode_prints_on_this_host(yarn):
    done = yarn.submit("cluster_check", "--tasks", "2", root=yarn.new_root("check"), deploy_mode="client")
    yarn.assert_succeeded(done)
    seen = probes(done.stdout)
    assert seen and all(p["executable"].endswith("environment/bin/python") for p in seen)
