"""Health and readiness as load balancers probe them: /healthz answers while the process does; /readyz is 200 only
while Redis answers and holds the catalog and every served recommendation set, 503 with the reason otherwise."""
import time

import requests

from common.redis_server import RedisServer
from tests.botify.conftest import TOKEN, live_server, make_config, next_track, v1_list
from testkit.artifacts import catalog_rows, write_catalog


def wait_for_status(url: str, status: int, timeout_s: float = 60.0) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        resp = requests.get(url, timeout=10)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def test_readyz_turns_503_while_redis_is_stopped_and_200_when_it_is_back(world, tmp_path):
    server = RedisServer()
    server.start()
    port = server.port
    try:
        config = make_config(world, server.url, tmp_path / "logs", "Ranked")
        with live_server(config) as base:
            ready = requests.get(base + "/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json()["sets"] == {"default": "v1"}
            assert requests.get(base + "/healthz", timeout=10).json() == {"status": "alive"}

            server.stop()
            down = wait_for_status(base + "/readyz", 503)
            assert down.status_code == 503 and down.json()["error"].startswith("not ready: Redis unavailable"), down.text
            assert requests.get(base + "/healthz", timeout=10).status_code == 200  # the process still answers
            assert next_track(base, 3) is not None  # and serves degraded meanwhile

            server = RedisServer(port=port, password=server.password)
            server.start()  # empty: the worker reloads what it served, then it is ready again
            back = wait_for_status(base + "/readyz", 200)
            assert back.status_code == 200, back.text
            assert back.json()["sets"] == {"default": "v1"}
            assert next_track(base, 8) == v1_list(8)[0]
    finally:
        server.stop()


def test_readyz_is_503_while_nothing_is_loaded_and_while_serving_the_catalog_alone(world, redis_url, tmp_path):
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked", artifacts__auto_load=False)
    with live_server(config, load=False) as base:
        resp = requests.get(base + "/readyz", timeout=10)
        assert resp.status_code == 503 and "holds no active artifacts" in resp.json()["error"], resp.text

    # The configured version is broken and Redis was empty: botify serves the catalog alone, and says it is not ready.
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked", artifacts__version="v_missing")
    with live_server(config) as base:
        resp = requests.get(base + "/readyz", timeout=10)
        assert resp.status_code == 503, resp.text
        assert "catalog alone, artifact load rejected" in resp.json()["error"] and "v_missing" in resp.json()["error"]
        # an operator loads a good version: ready
        good = requests.post(f"{base}/admin/reload", json={"version": "v1"}, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200, good.text
        assert requests.get(base + "/readyz", timeout=10).status_code == 200


def test_readyz_is_200_for_a_set_without_lists_yet(warehouse, redis_url, tmp_path):
    """BASELINE before any model: no LATEST, so nothing is missing that the configuration asks for."""
    write_catalog(warehouse, catalog_rows(300, 30))
    config = make_config(warehouse, redis_url, tmp_path / "logs")
    with live_server(config) as base:
        resp = requests.get(base + "/readyz", timeout=10)
        assert resp.status_code == 200 and resp.json()["sets"] == {"default": ""}, resp.text
