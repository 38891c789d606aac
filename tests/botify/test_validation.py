"""The bad-input matrix: every malformed request is a 4xx with a JSON error, and only good requests are logged.

Routes are exercised through ``app.test_client()`` on an app with a real Redis behind it.
"""
import json

import pytest

from botify.app import create_app
from botify.service import load_or_keep
from botify.store import Store
from tests.botify.conftest import TOKEN, TOP, USERS, make_config, v1_list
from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

NESTED = b"[" * 2000 + b"]" * 2000

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
    # nesting, numbers and ids past what the parser or the tables can hold
    ("POST", "/next/7", NESTED, 400),
    ("POST", "/last/7", NESTED, 400),
    ("POST", "/next/7", b'{"track": ' + b"[" * 2000 + b"]" * 2000 + b', "time": 0.5}', 400),
    ("POST", "/next/7", b'{"track": 1, "time": 1' + b"0" * 400 + b"}", 400),
    ("POST", "/next/7", b'{"track": 1, "time": -1' + b"0" * 400 + b"}", 400),
    ("POST", "/next/7", b'{"track": 1' + b"0" * 5000 + b', "time": 0.5}', 413),
    ("POST", "/next/7", b'{"track": 1' + b"0" * 3000 + b', "time": 0.5}', 400),
    ("POST", "/next/7", b'{"track": 1, "time": 1e999}', 400),
    ("POST", "/next/7", b'{"track": 1, "time": Infinity}', 400),
    ("POST", "/next/7", {"track": 2**63, "time": 0.5}, 400),
    ("POST", "/next/" + "9" * 5000, {"track": 1, "time": 0.5}, 400),
    ("POST", "/next/9223372036854775808", {"track": 1, "time": 0.5}, 400),
    ("GET", "/track/" + "1" * 5000, None, 400),
    ("POST", "/next/7", '{"track": 1, "time": 0.5}'.encode("utf-16"), 400),
    # well-formed, but the track is not in the catalog: refused, and never logged
    ("POST", "/next/7", {"track": 300, "time": 0.5}, 422),
    ("POST", "/last/7", {"track": 300, "time": 0.5}, 422),
    ("POST", "/next/7", {"track": 2**63 - 1, "time": 0.5}, 422),
]


@pytest.fixture(scope="module")
def app(redis_server, tmp_path_factory):
    """The app over a real Redis (its own key prefix), with a 300-track catalog; its log dir in app.log_dir."""
    root = tmp_path_factory.mktemp("validation")
    (root / "warehouse").mkdir()
    warehouse = "file://" + str(root / "warehouse")
    write_catalog(warehouse, catalog_rows(300, 30))
    write_recommendations(warehouse, "v1", {u: v1_list(u) for u in range(USERS)}, TOP)
    config = make_config(warehouse, redis_server.url, root / "logs", "Random", redis__prefix="botify-validation")
    load_or_keep(config, Store.from_config(config))
    app = create_app(config)
    app.log_dir = root / "logs"
    yield app
    app.extensions["botify"].close()


def send(client, method, path, body=None, headers=None):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    return client.open(path, method=method, data=data, headers={"Content-Type": "application/json", **(headers or {})})


def logged(app) -> list:
    return [json.loads(line) for f in sorted(app.log_dir.iterdir()) if ".jsonl" in f.name
            for line in f.read_text().splitlines()]


def assert_json_error(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.headers["Content-Type"].startswith("application/json")
    assert isinstance(resp.get_json()["error"], str) and resp.get_json()["error"]


@pytest.mark.parametrize("method,path,body,status", BAD, ids=lambda v: v[:40] if isinstance(v, (str, bytes)) else None)
def test_bad_input_gets_4xx_json_and_is_not_logged(app, method, path, body, status):
    before = len(logged(app))
    assert_json_error(send(app.test_client(), method, path, body), status)
    assert len(logged(app)) == before


@pytest.mark.parametrize("body", [NESTED, b'{"version": ' + b"[" * 2000 + b"]" * 2000 + b"}", b"[" * 5 + b"]" * 5,
                                  b'{"version": 1' + b"0" * 400 + b"}", b'{"version": "../etc"}', b"\xff",
                                  b'{"force": "yes"}', b'{"version": "v1", "force": 1}', b'{"forced": true}'])
def test_bad_admin_reload_body_is_a_400_with_a_valid_token(app, body):
    resp = send(app.test_client(), "POST", "/admin/reload", body, {"Authorization": f"Bearer {TOKEN}"})
    assert_json_error(resp, 400)


def test_admin_reload_body_names_a_version_and_may_force_it(app):
    client, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    root = app.extensions["botify"].config["storage"]["root"]
    write_recommendations(root, "v_small", {u: v1_list(u) for u in range(3)}, TOP, latest=False)
    refused = send(client, "POST", "/admin/reload", {"version": "v_small"}, auth)
    assert refused.status_code == 422 and "previous version still serving" in refused.get_json()["error"]
    forced = send(client, "POST", "/admin/reload", {"version": "v_small", "force": True}, auth)
    assert forced.status_code == 200, forced.get_data(as_text=True)
    assert client.get("/").get_json()["recommendations"] == "v_small"
    back = send(client, "POST", "/admin/reload", b"", auth)  # empty body: the configured version (LATEST = v1)
    assert back.status_code == 200 and client.get("/").get_json()["recommendations"] == "v1"


def test_unknown_tracks_from_a_client_are_refused_and_never_logged(app):
    client = app.test_client()
    before = len(logged(app))
    statuses = []
    for i in range(100):
        track = 300 + i if i % 20 == 0 else i  # 5% unknown tracks
        statuses.append(send(client, "POST", f"/next/{i % 10}", {"track": track, "time": 0.5}).status_code)
    assert statuses.count(422) == 5 and statuses.count(200) == 95
    lines = logged(app)[before:]
    assert len(lines) == 95 and all(0 <= ln["track"] < 300 for ln in lines)


def test_good_input_is_answered_and_logged(app):
    client = app.test_client()
    before = len(logged(app))
    good = [("/next/1", {"track": 1, "time": 0}), ("/next/2", {"track": 299, "time": 1}),
            ("/next/3", {"track": 5, "time": 0.25}), ("/last/3", {"track": 7, "time": 1.0}),
            ("/next/9223372036854775807", {"track": 0, "time": 0.5})]
    for path, body in good:
        resp = send(client, "POST", path, body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.get_json()["user"] == int(path.rsplit("/", 1)[1])
        if path.startswith("/next"):
            assert isinstance(resp.get_json()["track"], int) and 0 <= resp.get_json()["track"] < 300
    assert client.get("/track/7").get_json() == {"track": 7, "artist": "artist-7", "title": "song 7"}
    assert client.get("/").get_json()["status"] == "alive"
    lines = logged(app)[before:]
    assert [(ln["message"], ln["user"], ln["track"], ln["time"]) for ln in lines] == [
        ("next", 1, 1, 0.0), ("next", 2, 299, 1.0), ("next", 3, 5, 0.25), ("last", 3, 7, 1.0),
        ("next", 2**63 - 1, 0, 0.5)]
    assert lines[3]["recommendation"] is None


def test_the_fast_path_answers_byte_for_byte_as_the_flask_routes(app):
    """botify.fast_path answers well-formed /next and /last in front of Flask; its answers must be the routes'."""
    from werkzeug.test import Client

    fast, flask_only = app.test_client(), Client(app.wsgi_app.app.flask)  # Instrumented(FastPath(flask))
    for path, body in [("/last/3", {"track": 7, "time": 1.0}), ("/next/3", {"track": 7, "time": 0.5}),
                       ("/next/9223372036854775807", {"track": 0, "time": 0})]:
        answers = [send(client, "POST", path, body) for client in (fast, flask_only)]
        assert [(r.status_code, r.headers["Content-Type"]) for r in answers] == [(200, "application/json")] * 2
        assert [r.headers["Content-Length"] for r in answers] == [str(len(r.get_data())) for r in answers]
        # the same bytes but for the recommended track (Random: it differs between the two calls)
        templates = [r.get_data().replace(b'"track":%d' % r.get_json()["track"], b'"track":T')
                     if "track" in r.get_json() else r.get_data() for r in answers]
        assert templates[0] == templates[1] and templates[0].endswith(b"}\n")


def test_a_body_without_content_length_is_left_to_flask(app):
    client = app.test_client()
    before = len(logged(app))
    resp = client.post("/next/1", data=b'{"track": 1, "time": 0.5}', environ_overrides={"CONTENT_LENGTH": ""},
                       headers={"Content-Type": "application/json"})
    assert_json_error(resp, 400)  # as before the fast path: Flask reads no body without a length
    assert len(logged(app)) == before
