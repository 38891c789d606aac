"""Running the app: gunicorn (several workers, the production path) or Flask's development server.

gunicorn runs gevent workers by default (``server.worker_class``): each connection is a greenlet, so
clients that are slow to send a request hold memory rather than one of a few worker threads, and
``server.keepalive`` is how long any connection may wait for its next complete request before it is closed
(docs/failure-behaviour.md).

A gevent worker accepts a connection only while it holds no more than its emptiest sibling
(``botify.balanced_worker``), so a burst of connections is shared evenly between the workers.

Requests gunicorn refuses before botify sees them (a bad ``Content-Length``, an
obs-fold header, an over-long request line, an unknown transfer coding) are
answered by gunicorn's ``util.write_error``; botify replaces that function in
the arbiter, before the workers fork, so those answers carry botify's JSON
error shape too (docs/failure-behaviour.md#requests-the-server-layer-refuses).
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import signal
from http import HTTPStatus

from gunicorn import util
from gunicorn.app.base import BaseApplication

from botify import balanced_worker, metrics
from botify.app import create_app

log = logging.getLogger(__name__)


def _worker_exit(server, worker) -> None:
    # Graceful worker exit (SIGTERM, max requests, HUP): complete this worker's event log file.
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("botify") if app is not None else None
    if service is not None:
        service.close()
    # Objects frozen at load (below) would be finalised only after gevent's modules are torn down, which
    # prints "Exception ignored ... TypeError" from logging at every worker exit.
    gc.unfreeze()


def _child_exit(server, worker) -> None:
    balanced_worker.release_slot(server, worker)
    metrics.worker_exited(worker.pid)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` with botify's body: ``{"error": ...}`` as JSON instead of an HTML page."""
    body = json.dumps({"error": mesg or reason}).encode() + b"\n"
    with contextlib.suppress(ValueError):  # gunicorn sends 501 with the phrase "Bad Request"
        reason = HTTPStatus(status_int).phrase
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


class GunicornServer(BaseApplication):
    """gunicorn driven from code, so workers get the already-merged config (file, env, --set)."""

    def __init__(self, config: dict):
        self.botify_config = config
        super().__init__()

    def load_config(self) -> None:
        s = self.botify_config["server"]
        options = {
            "bind": f"{s['host']}:{s['port']}",
            "workers": int(s["workers"]),
            "worker_class": s["worker_class"],
            "threads": int(s["threads"]),
            "timeout": int(s["timeout"]),
            "graceful_timeout": int(s["graceful_timeout"]),
            "keepalive": int(s["keepalive"]),
            "proc_name": "botify",
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
        }
        if s["worker_class"] == "gevent":
            options.update(worker_class=balanced_worker.BalancedGeventWorker, pre_fork=balanced_worker.claim_slot)
        for key, value in options.items():
            self.cfg.set(key, value)
        util.write_error = write_json_error

    def load(self):
        app = create_app(self.botify_config)
        # What the worker holds from here on (modules, the app, the catalog: ~50k objects) lives as long as the
        # worker; frozen, a full collection no longer walks it (~20 ms of CPU, every connection of the worker
        # waiting, every few seconds under load).
        gc.collect()
        gc.freeze()
        return app


def run_gunicorn(config: dict) -> None:
    GunicornServer(config).run()


def run_dev(config: dict) -> None:
    """Flask's single-threaded development server (debugging, and the benchmark's baseline)."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    app = create_app(config)
    s = config["server"]
    try:
        app.run(host=s["host"], port=int(s["port"]), threaded=False, use_reloader=False)
    finally:
        app.extensions["botify"].close()
