"""The one fixture that owns the Hadoop cluster the tests in this folder share (tests/yarn/harness.py).

Started once per session; stopped after the last test. When a test failed, the cluster's logs and the
containers' ``nm-logs/`` are copied under pytest's temporary directory first (``--basetemp`` to choose it),
since stopping deletes them.
"""
import pytest

from tests.yarn.harness import YarnCluster


@pytest.fixture(scope="session")
def yarn(request, tmp_path_factory):
    """Hadoop's own HDFS + YARN on this host."""
    cluster = YarnCluster.start()
    failed_before = request.session.testsfailed
    yield cluster
    keep = None
    if request.session.testsfailed > failed_before:
        keep = tmp_path_factory.mktemp("yarn-cluster-logs")
        print(f"\nthe mini cluster's logs were kept in {keep}")
    cluster.stop(keep_logs_in=keep)
