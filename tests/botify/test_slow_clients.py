"""Slow or idle clients must not starve the rest: with 40 connections held open that never finish a
request (a partial request line, headers without their end, or nothing at all), ordinary requests to
`botify serve` with the shipped server settings are still answered, correctly, and the stalled
connections are closed by the server."""
import requests

from testkit.served import botify_serve, idle_connections


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


def test_forty_idle_connections_do_not_starve_normal_requests_and_are_dropped(world, tmp_path):
    # server.keepalive bounds how long a connection may go without a complete request (5 s shipped; 1 s here
    # so the drop below is seen quickly); everything else is conf/botify.yml as shipped
    with botify_serve(world, tmp_path, "--workers", "2", "--set", "server.keepalive=1") as (base, _):
        with idle_connections("127.0.0.1", int(base.rsplit(":", 1)[1]), 40) as idle:
            answer_normal_requests(base, range(40))
            for sock in idle:  # the server hangs up on every stalled connection rather than waiting forever
                sock.settimeout(30)
                assert sock.recv(1024) == b""
        answer_normal_requests(base, range(40, 45))
