"""`botify serve` with 2 gunicorn workers as Prometheus sees it: one scrape of /metrics adds up every worker's counts
exactly (prometheus_client's multiprocess mode), split by arm and answer source as the experiment assigns them; and
what gunicorn refuses before botify sees a request still answers in botify's JSON error shape."""
import collections
import json
import re
import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from common.experiments import assign
from tests.botify.conftest import USERS
from testkit.served import botify_serve

pytestmark = pytest.mark.slow  # a `botify serve` (gunicorn, redis-server) and a few hundred requests: ~10 s

# Labels that may appear: bounded by configuration, never an id from a request.
ALLOWED_LABELS = {"route", "status", "arm", "recommender", "source", "trigger", "outcome", "reason", "set", "version",
                  "le"}


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(found: list, name: str, **labels) -> float:
    return sum(s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def workers_that_logged(log_dir) -> set:
    return {re.search(r"-(\d+)-\d+\.jsonl", p.name)[1] for p in log_dir.glob("events-*")}


def test_one_scrape_counts_every_request_of_both_workers_by_arm(world, tmp_path):
    log_dir = tmp_path / "logs" / "botify"
    with botify_serve(world, tmp_path, "--workers", "2") as (base, _):
        sent = []
        # fresh connections, so both workers take some; users 0..19 have a list, 20..39 none
        while len(sent) < 200 or len(workers_that_logged(log_dir)) < 2:
            assert len(sent) < 1000, "one worker took 1,000 fresh connections in a row"
            user = len(sent) % (2 * USERS)
            resp = requests.post(f"{base}/next/{user}", json={"track": 7, "time": 0.5},
                                 headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200, resp.text
            sent.append(user)
        assert requests.post(f"{base}/next/abc", json={"track": 7, "time": 0.5}, timeout=10).status_code == 400

        scrape = requests.get(f"{base}/metrics", timeout=10)
        assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
        found = samples(scrape.text)

    n = len(sent)
    arms = collections.Counter(assign(u, "AB", 2) for u in sent)
    assert total(found, "botify_requests_total", route="/next/<user>", status="200") == n
    for arm, count in arms.items():
        assert total(found, "botify_requests_total", route="/next/<user>", status="200", arm=arm) == count
    assert total(found, "botify_requests_total", route="/next/<user>", status="400", arm="") == 1
    assert total(found, "botify_request_duration_seconds_count", route="/next/<user>") == n + 1
    # AB: C is StickyArtist (track 7's artist), T1 Ranked: the user's list, else the popular fallback
    with_list = sum(1 for u in sent if assign(u, "AB", 2) == "T1" and u < USERS)
    assert total(found, "botify_answers_total", arm="C", recommender="StickyArtist", source="artist") == arms["C"]
    assert total(found, "botify_answers_total", arm="T1", recommender="Ranked", source="list") == with_list
    assert total(found, "botify_answers_total", arm="T1", recommender="Ranked", source="popular") == arms["T1"] - with_list
    assert total(found, "botify_event_log_lines_total") == n
    assert total(found, "botify_reloads_total", trigger="start", outcome="loaded") == 1
    assert total(found, "botify_recommendation_set_info", set="default", version="v1") == 1
    assert total(found, "botify_redis_errors_total") == 0
    labels = {k for s in found for k in s.labels}
    assert labels <= ALLOWED_LABELS, labels
    # every worker's counts, and from both (the event log shows two writers)
    assert len(workers_that_logged(log_dir)) == 2


def raw_exchange(port: int, request: bytes) -> tuple:
    """``(status, headers, body)`` of one raw HTTP exchange (the server closes or answers with a length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = 0 if request.startswith(b"HEAD") else int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


SERVER_LAYER = [
    (b"POST /next/1 HTTP/1.1\r\nHost: b\r\nContent-Length: abc\r\n\r\n", 400, "Invalid HTTP Header: 'CONTENT-LENGTH'"),
    (b"POST /next/1 HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400,
     "Invalid HTTP Header: 'CONTENT-LENGTH'"),
    (b"POST /next/1 HTTP/1.1\r\nHost: b\r\nX-A: a\r\n  folded\r\nContent-Length: 2\r\n\r\n{}", 400,
     "Obsolete line folding is unacceptable: 'X-A'"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: b\r\n\r\n", 400, "Request Line is too large (5014 > 4094)"),
    (b"GET / HTTP/1.1\r\nHost: b\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "Error parsing headers"),
    (b"POST /next/1 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: foo\r\n\r\n", 501, "Unsupported transfer coding: 'foo'"),
    (b"GARBAGE\r\n\r\n", 400, "Invalid Request Line"),
]


def test_what_gunicorn_refuses_is_answered_as_json_and_head_and_options_as_flask_does(world, tmp_path):
    with botify_serve(world, tmp_path, "--workers", "1") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        for request, status, message in SERVER_LAYER:
            got, headers, body = raw_exchange(port, request)
            assert (got, headers["content-type"]) == (status, "application/json"), (request[:60], got, body)
            assert json.loads(body)["error"].startswith(message), body
        # HEAD: the GET answer's status and headers, no body; on a POST-only route 405, as JSON
        status, headers, body = raw_exchange(port, b"HEAD /track/7 HTTP/1.1\r\nHost: b\r\n\r\n")
        assert (status, headers["content-type"], body) == (200, "application/json", b"")
        status, headers, _ = raw_exchange(port, b"HEAD /next/1 HTTP/1.1\r\nHost: b\r\n\r\n")
        assert (status, headers["content-type"]) == (405, "application/json")
        # OPTIONS: Flask's automatic answer, the allowed methods and no body
        status, headers, body = raw_exchange(port, b"OPTIONS /next/1 HTTP/1.1\r\nHost: b\r\n\r\n")
        # Flask builds Allow from a set: its order changes with the hash seed
        assert (status, set(headers["allow"].split(", ")), body) == (200, {"OPTIONS", "POST"}, b"")
        # and botify still serves
        assert requests.post(f"{base}/next/1", json={"track": 7, "time": 0.5}, timeout=10).status_code == 200
    log = (tmp_path / "serve.log").read_text()
    assert "***@" in log and not re.search(r"://:(?!\*\*\*)[^@\s]+@", log)  # the private Redis' password never
