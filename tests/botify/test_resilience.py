"""Redis outage: /next keeps answering from the in-process catalog, and botify recovers by itself.

A real redis-server is stopped and a new one started on the same port (empty,
as after a crash without persistence); botify must reload its artifacts into it.
"""
import logging
import time

import requests

from common.redis_server import RedisServer
from tests.botify.conftest import TRACKS, live_server, make_config, next_track, v1_list


def wait_for(predicate, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def test_outage_is_served_degraded_and_recovers_without_restart(world, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    server = RedisServer()
    server.start()
    port = server.port
    try:
        config = make_config(world, server.url, tmp_path / "logs", "Ranked")
        with live_server(config) as base:
            assert next_track(base, 3) == v1_list(3)[0]

            server.stop()
            during = [next_track(base, 3) for _ in range(30)]
            assert all(0 <= t < TRACKS for t in during)
            assert len(set(during)) > 1  # random catalog tracks, not the Ranked list walk
            assert requests.get(f"{base}/track/7", timeout=10).json()["artist"] == "artist-7"
            assert requests.post(f"{base}/last/3", json={"track": 1, "time": 0.2}, timeout=10).status_code == 200
            assert "unavailable" in requests.get(base + "/", timeout=10).json()["redis"]
            assert any("Redis unreachable" in r.getMessage() for r in caplog.records)

            server = RedisServer(port=port)
            server.start()  # empty: botify must load its artifacts again
            wait_for(lambda: next_track(base, 8) == v1_list(8)[0], what="Ranked served from Redis again")
            assert next_track(base, 8) == v1_list(8)[1]
            assert any("Redis is back" in r.getMessage() for r in caplog.records)
            assert any("no active artifacts" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()

    lines = [ln for f in (tmp_path / "logs").glob("*.jsonl") for ln in f.read_text().splitlines()]
    assert len(lines) >= 1 + 30 + 1 + 2  # every request was logged, degraded or not
