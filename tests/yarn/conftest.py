"""The fixtures that own the Hadoop clusters of the tests in this folder (tests/yarn/harness.py).

``yarn``: one NodeManager, DataNode and NameNode, started once per session, stopped after the last test.
``shaped``: a production-shaped cluster, started for the one module that asks for it.

When a test failed, a cluster's logs and the containers' ``nm-logs/`` are copied under pytest's temporary
directory before it stops (``--basetemp`` to choose it), since stopping deletes them.
"""
import sys

import pytest

from common.spark import load_profile
from launcher.cluster_cache import publish_once, spark_jars_archive
from launcher.submit import BUILD, SPARK_HOME
from tests.yarn.harness import YarnCluster


def _stop_keeping_logs_of_failures(cluster, request, tmp_path_factory, failed_before, name):
    keep = None
    if request.session.testsfailed > failed_before:
        keep = tmp_path_factory.mktemp(f"{name}-logs")
        print(f"\nthe {name}'s logs were kept in {keep}")
    cluster.stop(keep_logs_in=keep)


@pytest.fixture(scope="session")
def yarn(request, tmp_path_factory):
    """Hadoop's own HDFS + YARN on this host."""
    cluster = YarnCluster.start()
    failed_before = request.session.testsfailed
    yield cluster
    _stop_keeping_logs_of_failures(cluster, request, tmp_path_factory, failed_before, "yarn-cluster")


@pytest.fixture(scope="module")
def shaped(request, tmp_path_factory):
    """Two NodeManagers, three DataNodes (replication 2) and two NameNodes behind one name service, with the
    environment installed on every node (this checkout's Python, ``spark-submit.sh --python``): the ``yarn``
    cluster's tests are the ones that ship it. HADOOP_CONF_DIR names this cluster while the module runs, as
    a user's shell would: hdfs-native, in this process and in botify, finds the name service there."""
    cluster = YarnCluster.start(nm_memory_mb=4096, nm_vcores=2, nodemanagers=2, datanodes=3, ha=True)
    cluster.installed_python = sys.executable
    failed_before = request.session.testsfailed
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HADOOP_CONF_DIR", cluster.cluster.conf_dir)
        # Spark's jars go to the cluster's cache while every DataNode is up, as a deployment's first submit
        # does: hdfs-native's writer does not leave out a DataNode that refuses the pipeline's first connection
        # (docs/failure-behaviour.md), and the faults below are about jobs, not that first upload.
        publish_once(spark_jars_archive(SPARK_HOME, BUILD), str(load_profile("minicluster")["cache_dir"]))
        yield cluster
    _stop_keeping_logs_of_failures(cluster, request, tmp_path_factory, failed_before, "shaped-cluster")
