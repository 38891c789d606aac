"""Starting the mini cluster when it cannot start: the error a user sees is the cluster's own."""
import socket

import pytest

from pipeline.minicluster import MiniCluster, MiniClusterError

pytestmark = pytest.mark.slow


def test_a_port_already_taken_fails_the_start_with_the_clusters_own_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Fixed ports, every one ephemeral on loopback except the ResourceManager's web app, on the taken port.
        conf = {"yarn.minicluster.fixed.ports": "true", "yarn.resourcemanager.webapp.address": f"127.0.0.1:{port}",
                "yarn.resourcemanager.address": "127.0.0.1:0",
                "yarn.resourcemanager.scheduler.address": "127.0.0.1:0",
                "yarn.resourcemanager.resource-tracker.address": "127.0.0.1:0",
                "yarn.resourcemanager.admin.address": "127.0.0.1:0"}
        cluster = MiniCluster(tmp_path / "cluster", nm_memory_mb=1024, nm_vcores=1, extra_conf=conf)
        with pytest.raises(MiniClusterError) as failed:
            cluster.start(timeout=300)
        cluster.stop()
    first_line = str(failed.value).splitlines()[0]
    assert "exited with" in first_line
    assert "BindException: Address already in use" in first_line
