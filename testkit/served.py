"""`botify serve` as a real process (gunicorn workers, a private redis-server) for end-to-end tests."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from common.process_group import stop_group
from common.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-admin-token"  # the admin token every test's botify is configured with


def serve_env(storage_root: str, experiments: str = "AB,BASELINE") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("BOTIFY_")}
    env.update(BOTIFY_ADMIN_TOKEN=TOKEN, BOTIFY_STORAGE_ROOT=storage_root, BOTIFY_EXPERIMENTS=experiments,
               PYTHONPATH=str(REPO))
    return env


def wait_until_up(base: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"botify serve exited with {proc.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("botify serve did not come up")


@contextlib.contextmanager
def botify_serve(storage_root: str, workdir: Path, *args: str, env: Optional[dict] = None):
    """Yield ``(base URL, process)`` of ``botify serve`` run in ``workdir`` (``env`` over the usual one);
    SIGTERM it afterwards."""
    port = free_port()
    with open(workdir / "serve.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--port", str(port), *args],
                                cwd=workdir, env={**serve_env(storage_root), **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        yield base, proc
    finally:
        stop_group(proc, timeout=60)


# What a slow or stalled client leaves on a connection: nothing, part of a request line, headers without their end.
STALLS = [b"", b"POST /ne", b"POST /next/1 HTTP/1.1\r\n", b"POST /next/1 HTTP/1.1\r\nHost: botify\r\nContent-Le"]


@contextlib.contextmanager
def idle_connections(host: str, port: int, count: int):
    """``count`` sockets, each sending one of STALLS and then nothing more, held open until exit."""
    sockets = []
    try:
        for i in range(count):
            sock = socket.create_connection((host, port), timeout=10)
            sockets.append(sock)
            if STALLS[i % len(STALLS)]:
                sock.sendall(STALLS[i % len(STALLS)])
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
