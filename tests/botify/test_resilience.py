"""Redis outage: /next keeps answering from the in-process catalog, and botify recovers by itself.

A real redis-server is stopped and a new one started on the same port (empty,
as after a crash without persistence); botify must reload its artifacts into it.
"""
import json
import logging
import os
import re
import signal
import threading
import time

import pytest
import redis
import requests

from botify.store import Store
from common.experiments import assign
from common.redis_server import RedisServer
from tests.botify.conftest import (TOKEN, TOP, TRACKS, USERS, live_server, make_config, next_track, post_next,
                                   v1_list, v2_list)
from testkit.artifacts import write_recommendations


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

            server = RedisServer(port=port, password=server.password)
            server.start()  # empty: botify must load its artifacts again
            wait_for(lambda: next_track(base, 8) == v1_list(8)[0], what="Ranked served from Redis again")
            assert next_track(base, 8) == v1_list(8)[1]
            assert any("Redis is back" in r.getMessage() for r in caplog.records)
            assert any("no active artifacts" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()

    lines = [ln for f in (tmp_path / "logs").glob("*.jsonl") for ln in f.read_text().splitlines()]
    assert len(lines) >= 1 + 30 + 1 + 2  # every request was logged, degraded or not


def test_redis_restart_under_load_keeps_the_pinned_version(world, tmp_path):
    """v2 is LATEST but the operator pinned v1: a Redis crash must not switch botify to v2 behind their back."""
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)  # now LATEST
    server = RedisServer()
    server.start()
    port = server.port
    try:
        config = make_config(world, server.url, tmp_path / "logs", "Ranked")
        with live_server(config) as base:
            resp = requests.post(f"{base}/admin/reload", json={"version": "v1"}, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status_code == 200 and resp.json()["recommendations"] == "v1"
            statuses, stop = [], threading.Event()

            def load(worker):
                with requests.Session() as s:
                    while not stop.is_set():
                        statuses.append(post_next(base, worker % USERS, session=s).status_code)

            threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            wait_for(lambda: len(statuses) > 50, what="load running")
            server.process.kill()  # a crash: no shutdown, nothing persisted
            server.process.wait()
            wait_for(lambda: "unavailable" in requests.get(base + "/", timeout=10).json()["redis"],
                     what="outage noticed")
            server = RedisServer(port=port, password=server.password)
            server.start()
            wait_for(lambda: requests.get(base + "/", timeout=10).json().get("recommendations") is not None,
                     what="artifacts reloaded")
            served_after = len(statuses)
            wait_for(lambda: len(statuses) > served_after + 50, what="load served after the restart")
            stop.set()
            for t in threads:
                t.join()
            health = requests.get(base + "/", timeout=10).json()
            assert health["recommendations"] == "v1", health  # not LATEST (v2)
            assert next_track(base, 15) in set(v1_list(15)) - set(v2_list(15))
        requests_made = len(statuses)
        assert set(statuses) == {200}
    finally:
        server.stop()
    lines = [json.loads(ln) for f in (tmp_path / "logs").glob("*.jsonl") for ln in f.read_text().splitlines()]
    assert sum(e["message"] == "next" for e in lines) == requests_made + 1  # + the check above


def test_killed_private_redis_is_restarted_and_recommendations_come_back(world, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    server = RedisServer(maxmemory="64mb")
    server.start()
    server.supervise(backoff_s=0.1)
    try:
        config = make_config(world, server.url, tmp_path / "logs", "Ranked")
        with live_server(config) as base:
            assert next_track(base, 3) == v1_list(3)[0]
            killed = server.process.pid
            os.kill(killed, signal.SIGKILL)
            # same botify, same URL: the Ranked walk comes back from Redis (a restarted, reloaded server)
            wait_for(lambda: next_track(base, 9) == v1_list(9)[0], what="recommendations back")
            # botify may reconnect between the new server's start and the supervisor counting it
            wait_for(lambda: server.restarts == 1, what="the restart counted")
            assert server.process.pid != killed
            assert any(f"redis-server (pid {killed}) exited" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
    assert server.process.poll() is not None  # stop() ends the supervision and the server


def test_memory_bound_evicts_session_history_never_the_served_namespace(world, tmp_path):
    server = RedisServer(maxmemory="3mb")
    url = server.start()
    try:
        config = make_config(world, url, tmp_path / "logs", "Ranked")
        with live_server(config) as base:
            client = redis.Redis.from_url(url, decode_responses=True)
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
            store = Store.from_config(config)
            ns = store.active()
            namespace_keys = sorted(client.keys(f"botify:ns:{ns}:*"))
            # Far more per-user history (TTL keys, as Ranked writes them) than the bound holds.
            # Other users than the one asked below: whether LRU evicts a given key is chance, and a
            # surviving history would (rightly) skip the tracks already heard.
            for start in range(1000, 41_000, 4000):
                pipe = client.pipeline(transaction=False)
                for user in range(start, start + 4000):
                    pipe.sadd(store.history_key(user), *range(20))
                    pipe.expire(store.history_key(user), 3600)
                pipe.execute()
            assert int(client.info("stats")["evicted_keys"]) > 0, client.info("memory")["used_memory_human"]
            assert sorted(client.keys(f"botify:ns:{ns}:*")) == namespace_keys
            assert client.get("botify:active") == ns
            assert next_track(base, 11) == v1_list(11)[0]
    finally:
        server.stop()


@pytest.mark.slow
def test_botify_serve_restarts_its_killed_private_redis(world, tmp_path):
    """The real process tree: gunicorn's arbiter reaps the killed redis-server, the supervisor restarts it."""
    from testkit.served import botify_serve

    ranked_user = next(u for u in range(USERS) if assign(u, "AB", 2) == "T1")
    with botify_serve(world, tmp_path, "--workers", "2", "--set", "event_log.poll_s=0.1") as (base, proc):
        assert next_track(base, ranked_user) == v1_list(ranked_user)[0]
        # Both workers up (each opens its event log on its first request) before Redis is killed.
        for attempt in range(500):
            if len(list((tmp_path / "logs" / "botify").glob("*.jsonl.open"))) == 2:
                break
            requests.post(f"{base}/next/{attempt % 40}", json={"track": 7, "time": 0.5},
                          headers={"Connection": "close"}, timeout=10)
        log_text = (tmp_path / "serve.log").read_text()
        killed = int(re.search(r"started redis-server on \S+ and \S+ \(pid (\d+)\)", log_text)[1])
        os.kill(killed, signal.SIGKILL)
        # Ranked users without a list get the popular tracks from Redis, never repeating (random ones if degraded).
        fresh = iter(u for u in range(USERS, 10_000) if assign(u, "AB", 2) == "T1")

        def served_from_redis():
            user = next(fresh)
            got = [next_track(base, user) for _ in range(10)]
            return set(got) <= set(TOP) and len(set(got)) == 10

        wait_for(lambda: all(served_from_redis() for _ in range(5)), what="recommendations from Redis again")
        assert requests.get(base + "/", timeout=10).json()["recommendations"] == "v1"
        assert proc.poll() is None  # the same botify
    log_text = (tmp_path / "serve.log").read_text()
    assert f"private redis-server (pid {killed}) exited" in log_text
    assert "loading recommendations v1, the version served before" in log_text
