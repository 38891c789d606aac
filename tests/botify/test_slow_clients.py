"""Slow or idle clients must not starve the rest: with 40 connections held open that never finish a
request (a partial request line, headers without their end, or nothing at all), ordinary requests to
`botify serve` with the shipped server settings are still answered, correctly."""
import contextlib
import socket

import pytest
import requests

from tests.botify.served import botify_serve

pytestmark = pytest.mark.slow  # starts gunicorn and a private redis-server (~5 s)

STALLS = [b"", b"POST /ne", b"POST /next/1 HTTP/1.1\r\n", b"POST /next/1 HTTP/1.1\r\nHost: botify\r\nContent-Le"]


@contextlib.contextmanager
def idle_connections(base: str, count: int):
    """``count`` sockets, each sending one of STALLS and then nothing more, held open until exit."""
    host, port = base.rsplit("//", 1)[1].split(":")
    sockets = []
    try:
        for i in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sockets.append(sock)
            if STALLS[i % len(STALLS)]:
                sock.sendall(STALLS[i % len(STALLS)])
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def answer_normal_requests(base: str, users: range) -> None:
    for user in users:
        # a fresh connection each time: every request must get through accept and a free worker
        resp = requests.post(f"{base}/next/{user}", json={"track": 7, "time": 0.5},
                             headers={"Connection": "close"}, timeout=15)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["user"] == user and 0 <= body["track"] < 300, body
    with requests.Session() as s:  # and keep-alive clients too
        assert s.get(f"{base}/track/7", timeout=15).json() == {"track": 7, "artist": "artist-7", "title": "song 7"}
        resp = s.post(f"{base}/last/{users[0]}", json={"track": 7, "time": 1.0}, timeout=15)
        assert (resp.status_code, resp.json()) == (200, {"user": users[0]})


def test_forty_idle_connections_do_not_starve_normal_requests(world, tmp_path):
    with botify_serve(world, tmp_path, "--workers", "2") as (base, _):
        with idle_connections(base, 40) as idle:
            answer_normal_requests(base, range(40))
            # the stalled sockets are still open (nobody got through by closing them)
            assert len(idle) == 40
        answer_normal_requests(base, range(40, 45))
