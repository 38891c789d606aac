"""The bad-input matrix: every malformed request is a 4xx with a JSON error, and only good requests are logged."""
import json

import pytest
import requests

from tests.botify.conftest import TOP, USERS, live_server, make_config, v1_list
from tests.botify.warehouse import catalog_rows, write_catalog, write_recommendations

BAD = [
    ("POST", "/next/abc", {"track": 1, "time": 0.5}, 400),
    ("POST", "/next/-1", {"track": 1, "time": 0.5}, 400),
    ("POST", "/next/1.5", {"track": 1, "time": 0.5}, 400),
    ("POST", "/next/99999999999999999999", {"track": 1, "time": 0.5}, 400),
    ("POST", "/next/1", b"not json", 400),
    ("POST", "/next/1", b"", 400),
    ("POST", "/next/1", [1, 0.5], 400),
    ("POST", "/next/1", {"time": 0.5}, 400),
    ("POST", "/next/1", {"track": 1}, 400),
    ("POST", "/next/1", {"track": 1, "time": 0.5, "extra": 1}, 400),
    ("POST", "/next/1", {"track": 1, "time": 1.5}, 400),
    ("POST", "/next/1", {"track": 1, "time": -0.1}, 400),
    ("POST", "/next/1", {"track": 1, "time": "0.5"}, 400),
    ("POST", "/next/1", {"track": 1, "time": True}, 400),
    ("POST", "/next/1", {"track": 1, "time": None}, 400),
    ("POST", "/next/1", b'{"track": 1, "time": NaN}', 400),
    ("POST", "/next/1", {"track": "1", "time": 0.5}, 400),
    ("POST", "/next/1", {"track": 1.0, "time": 0.5}, 400),
    ("POST", "/next/1", {"track": -3, "time": 0.5}, 400),
    ("POST", "/next/1", {"track": False, "time": 0.5}, 400),
    ("POST", "/next/1", {"track": 2**64, "time": 0.5}, 400),
    ("POST", "/next/1", b"\xff\xfe garbage", 400),
    ("POST", "/next/1", {"track": 1, "time": 0.5, "pad": "x" * 5000}, 413),
    ("GET", "/next/1", None, 405),
    ("POST", "/last/x", {"track": 1, "time": 0.5}, 400),
    ("POST", "/last/1", {"track": 1, "time": 2}, 400),
    ("POST", "/last/1", b"{", 400),
    ("GET", "/track/abc", None, 400),
    ("GET", "/track/99999", None, 404),
    ("GET", "/no/such/route", None, 404),
    ("POST", "/admin/reload", None, 401),
]


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    (root / "warehouse").mkdir()
    warehouse = "file://" + str(root / "warehouse")
    write_catalog(warehouse, catalog_rows(300, 30))
    write_recommendations(warehouse, "v1", {u: v1_list(u) for u in range(USERS)}, TOP)
    config = make_config(warehouse, redis_server.url, root / "logs", "Random", redis__prefix="botify-validation")
    with live_server(config) as base:
        yield base, root / "logs"


def _send(base, method, path, body):
    if body is None:
        return requests.request(method, base + path, timeout=10)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.request(method, base + path, data=data, headers={"Content-Type": "application/json"},
                            timeout=10)


@pytest.mark.parametrize("method,path,body,status", BAD)
def test_bad_input_gets_4xx_json(server, method, path, body, status):
    base, _ = server
    resp = _send(base, method, path, body)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert isinstance(resp.json()["error"], str) and resp.json()["error"]


def test_good_input_is_answered_and_only_good_requests_are_logged(server):
    base, log_dir = server
    good = [("/next/1", {"track": 1, "time": 0}), ("/next/2", {"track": 299, "time": 1}),
            ("/next/3", {"track": 5, "time": 0.25}), ("/last/3", {"track": 7, "time": 1.0})]
    for path, body in good:
        resp = _send(base, "POST", path, body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["user"] == int(path.rsplit("/", 1)[1])
        if path.startswith("/next"):
            assert isinstance(resp.json()["track"], int) and 0 <= resp.json()["track"] < 300
    resp = requests.get(base + "/track/7", timeout=10)
    assert resp.json() == {"track": 7, "artist": "artist-7", "title": "song 7"}
    assert requests.get(base + "/", timeout=10).json()["status"] == "alive"
    lines = [json.loads(line) for f in sorted(log_dir.iterdir()) if ".jsonl" in f.name
             for line in f.read_text().splitlines()]
    assert [(ln["message"], ln["user"], ln["track"], ln["time"]) for ln in lines] == [
        ("next", 1, 1, 0.0), ("next", 2, 299, 1.0), ("next", 3, 5, 0.25), ("last", 3, 7, 1.0)]
    assert lines[-1]["recommendation"] is None
