"""botify test fixtures: a tiny warehouse in the storage contract, config, and a live HTTP server.

The server is the real app on werkzeug's threaded WSGI server over loopback
(real HTTP, real Redis); tests that need gunicorn itself start `botify serve`.
"""
from __future__ import annotations

import contextlib
import logging
import threading

import pytest
import requests
from werkzeug.serving import make_server

from botify.app import create_app
from botify.service import load_or_keep
from botify.settings import load_settings, validate
from botify.store import Store
from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

TRACKS, ARTISTS, USERS = 300, 30, 20
from testkit.served import TOKEN  # noqa: E402  (one token for in-process and served botify)


def v1_list(user: int) -> list:
    return list(range(user, user + 50))


def v2_list(user: int) -> list:
    return list(range(100 + user, 150 + user))


TOP = list(range(200, 300))


@pytest.fixture
def world(warehouse):
    """Catalog of 300 tracks (artist = track % 30) and recommendations v1 (LATEST) for users 0..19."""
    write_catalog(warehouse, catalog_rows(TRACKS, ARTISTS))
    write_recommendations(warehouse, "v1", {u: v1_list(u) for u in range(USERS)}, TOP)
    return warehouse


def make_config(root: str, redis_url: str, log_dir, recommender=None, **sets) -> dict:
    config = load_settings(env={})
    config["storage"]["root"] = root
    config["redis"]["url"] = redis_url
    config["redis"]["retry_after_s"] = 0.2
    config["admin"]["token"] = TOKEN
    config["event_log"]["dir"] = str(log_dir)
    config["event_log"]["poll_s"] = 0.05
    if recommender:
        config["experiments"]["X"] = {"split": 2, "treatments": {"C": recommender, "T1": recommender}}
        config["active_experiments"] = ["X"]
    for dotted, value in sets.items():
        node = config
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    validate(config)
    return config


@contextlib.contextmanager
def live_server(config: dict, load: bool = True):
    """Yield the base URL of the app served over loopback; close it (completing its log) afterwards."""
    if load:
        load_or_keep(config, Store.from_config(config))
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["botify"].close()


@pytest.fixture
def serve(world, redis_url, tmp_path):
    """``serve(recommender=None, **sets)`` -> (base URL, config), stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(recommender=None, load=True, **sets):
            config = make_config(world, redis_url, tmp_path / "logs", recommender, **sets)
            return stack.enter_context(live_server(config, load)), config

        yield start


def post_next(base: str, user, track=0, time=0.5, session=None):
    return (session or requests).post(f"{base}/next/{user}", json={"track": track, "time": time}, timeout=10)


def next_track(base: str, user, track=0, time=0.5, session=None) -> int:
    resp = post_next(base, user, track, time, session)
    assert resp.status_code == 200, resp.text
    assert resp.json()["user"] == user
    return resp.json()["track"]


@pytest.fixture(autouse=True)
def _quiet_werkzeug():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
