"""Shared fixtures: one real local Spark session per test run, real Redis servers,
and a real Spark standalone cluster for the cluster-path tests. The Hadoop tests' cluster is
tests/yarn/conftest.py's."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # Two workers share the 2 cores (pytest.ini: -n 2 --dist loadgroup). The Hadoop tests are one unit of work,
    # on one worker with their clusters, while the other worker runs everything else test by test. xdist hands
    # out the largest unit first, so the Hadoop chain, the longest, starts at once. First among this hook's
    # implementations: xdist's own reads the marker to name each item's unit.
    hadoop = pytest.mark.xdist_group("hadoop")
    for item in items:
        if Path(str(item.fspath)).parent.name == "yarn":
            item.add_marker(hadoop)


@pytest.fixture(scope="session")
def spark():
    from common.spark import get_session

    session = get_session("tests", "local", {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
                                             "spark.ui.showConsoleProgress": "false"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server for the whole run (REDIS_URL is deliberately not used: tests flush it)."""
    from common.redis_server import RedisServer

    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="module")
def standalone_cluster():
    # Per module, not per session: each executor unpacks the 3 GB environment for every application, and a
    # session-long cluster kept ~30 GB on disk while the Hadoop tests needed theirs. One core: one executor,
    # one unpacking (a second executor's would be the same mechanics again, for about a minute).
    from tests.standalone_cluster import StandaloneCluster

    cluster = StandaloneCluster(workers=1, cores=1, memory="2g").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def warehouse(tmp_path):
    """A storage root for one test, as a file:// URI."""
    root = tmp_path / "warehouse"
    root.mkdir()
    return "file://" + str(root)
