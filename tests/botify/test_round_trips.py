"""What one request costs in Redis, counted by Redis itself (MONITOR on a real server): /next is one
round trip whichever recommender serves it, Ranked's list walk included; only Ranked past the end of a
user's list needs a second one (remembering its fallback pick)."""
import contextlib
import threading

import pytest
import redis

from botify.reload import load_or_keep
from botify.service import Service
from botify.store import Store
from tests.botify.conftest import TOP, make_config, v1_list


@contextlib.contextmanager
def monitored(redis_url: str):
    """Yield a list that fills with the commands Redis receives from clients (not those a script runs)."""
    commands, ready = [], threading.Event()
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def listen():
        with client.monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                if entry["command"] == "ECHO end-of-monitor":
                    return
                # AUTH: a new connection's first command (the password of the private Redis), no request's
                if entry.get("client_type") != "lua" and not entry["command"].upper().startswith("AUTH"):
                    commands.append(entry["command"].split()[0].upper())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield commands
    finally:
        client.echo("end-of-monitor")
        thread.join(timeout=10)


@pytest.mark.parametrize("recommender", ["Ranked", "StickyArtist", "TopPop", "Indexed", "Random"])
def test_next_is_one_redis_round_trip(world, redis_url, tmp_path, recommender):
    config = make_config(world, redis_url, tmp_path / "logs", recommender)
    load_or_keep(config, Store.from_config(config))
    service = Service(config, upkeep=False)  # no upkeep thread: every command below is a request's
    try:
        service.next(0, 1, 0.5, 0.0)  # the first call loads the script into Redis
        with monitored(redis_url) as commands:
            picks = [service.next(3, t, 0.5, 0.0)[0] for t in range(10)]
        assert commands == ["EVALSHA"] * 10
        if recommender == "Ranked":
            assert picks == v1_list(3)[:10]
    finally:
        service.close()


def test_ranked_past_the_list_remembers_its_fallback_in_a_second_round_trip(world, redis_url, tmp_path):
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked")
    load_or_keep(config, Store.from_config(config))
    service = Service(config, upkeep=False)
    try:
        assert [service.next(3, 1, 0.5, 0.0)[0] for _ in range(50)] == v1_list(3)
        with monitored(redis_url) as commands:
            fallback = [service.next(3, 1, 0.5, 0.0)[0] for _ in range(5)]
        assert set(fallback) <= set(TOP) and len(set(fallback)) == 5
        # EVALSHA, then one pipeline (SADD + EXPIRE: one round trip, two commands) per request
        assert commands == ["EVALSHA", "SADD", "EXPIRE"] * 5
    finally:
        service.close()
