"""Property-based fuzzing of botify's request validation (Hypothesis, derandomized: the same cases every run).

Thousands of generated requests - odd paths and ids, binary and deeply nested bodies, huge numbers,
JSON of every shape, near-valid play bodies, right and wrong admin tokens - go through
``app.test_client()`` to an app over a real Redis. What must hold: no response is a 5xx, every error is
JSON with a message, only answered plays are logged, and valid requests afterwards are answered correctly.
"""
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botify.app import create_app
from botify.service import load_or_keep
from botify.store import Store
from tests.botify.conftest import TOKEN, TOP, TRACKS, USERS, make_config, v1_list
from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

EXAMPLES = 2500  # >= 2,000 of them are bad requests (asserted below); ~10 s of CPU

ids = st.one_of(
    st.integers(0, 40).map(str),
    st.integers(0, 40).map(str),
    st.integers(0, 40).map(str),
    st.integers().map(str),
    st.integers(2**63 - 2, 2**63 + 2).map(str),
    st.integers(10**18, 10**400).map(str),
    st.text(max_size=30).filter(lambda s: "/" not in s and "?" not in s and "#" not in s),
    st.sampled_from(["", "0" * 50 + "7", "1e3", "0x10", " 7", "7 ", "+7", "-0", "٣", "７", "1.0", "%00", "NaN"]),
)
numbers = st.one_of(
    st.integers(), st.integers(0, TRACKS + 5), st.integers(10**18, 10**300), st.integers(-(10**300), -(10**18)),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
plays = st.fixed_dictionaries(
    {"track": numbers | numbers | json_values, "time": st.floats(0, 1) | numbers | json_values},
    optional={"extra": json_values, "version": json_values},
)


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _nested(pair) -> bytes:
    (opening, closing), depth, inner = pair
    return opening * depth + inner + closing * depth


def _mutated(pair) -> bytes:
    body, at, junk = pair
    at = at % (len(body) + 1)
    return body[:at] + junk + body[at:]


bodies = st.one_of(
    st.binary(max_size=5000),
    json_values.map(_dump),
    plays.map(_dump),
    plays.map(_dump),
    st.tuples(st.sampled_from([(b"[", b"]"), (b"{", b"}"), (b'{"track":', b"}"), (b'[{"a":', b"}]")]),
              st.integers(0, 2500), st.sampled_from([b"", b"1", b'"x"', b"[]"])).map(_nested),
    st.tuples(plays.map(_dump), st.integers(0, 100), st.binary(min_size=1, max_size=8)).map(_mutated),
    st.sampled_from([b'{"track": 1, "time": 1' + b"0" * 400 + b"}", b'{"track": 1, "time": NaN}',
                     b'{"track": 1, "time": -Infinity}', b'{"track": 1' + b"0" * 4400 + b', "time": 0.5}',
                     '{"track": 1, "time": 0.5}'.encode("utf-16"), b"\xef\xbb\xbf{}", b"null", b"{}"]),
)
printable = st.characters(min_codepoint=32, max_codepoint=126)  # what an HTTP header can carry
authorization = st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), st.text(printable, max_size=40),
                          st.just(f"Bearer {TOKEN}x"), st.just(f"bearer {TOKEN}"))


@st.composite
def any_request(draw):
    route = draw(st.sampled_from(["/next/{}", "/last/{}", "/track/{}", "/admin/reload", "/admin/rotate-logs",
                                  "/{}", "/next/{}/{}"]))
    path = route.format(draw(ids), draw(ids))
    method = draw(st.sampled_from(["POST"] * 4 + ["GET", "PUT", "DELETE", "PATCH"]))
    content_type = draw(st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
    headers = {"Content-Type": content_type}
    token = draw(authorization)
    if token is not None and not (path == "/admin/rotate-logs" and token == f"Bearer {TOKEN}"):
        headers["Authorization"] = token  # (a rotation per example would only slow the run down)
    return method, path, draw(bodies), headers


@st.composite
def near_valid_play(draw):
    """A play to a real route and user, its body one field off (or right)."""
    path = draw(st.sampled_from(["/next/{}", "/last/{}"])).format(draw(st.integers(0, 2**63 - 1)))
    body = draw(st.one_of(plays.map(_dump), st.tuples(plays.map(_dump), st.integers(0, 100),
                                                     st.binary(min_size=1, max_size=8)).map(_mutated)))
    return "POST", path, body, {"Content-Type": "application/json"}


requests = st.one_of(any_request(), near_valid_play())


@pytest.fixture(scope="module")
def app(redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "warehouse").mkdir()
    warehouse = "file://" + str(root / "warehouse")
    write_catalog(warehouse, catalog_rows(TRACKS, 30))
    write_recommendations(warehouse, "v1", {u: v1_list(u) for u in range(USERS)}, TOP)
    config = make_config(warehouse, redis_server.url, root / "logs", "Ranked", redis__prefix="botify-fuzz")
    load_or_keep(config, Store.from_config(config))
    app = create_app(config)
    app.log_dir = root / "logs"
    yield app
    app.extensions["botify"].close()


def logged_lines(app) -> int:
    return sum(len(f.read_text().splitlines()) for f in app.log_dir.iterdir() if ".jsonl" in f.name)


def test_generated_requests_never_get_a_5xx_and_valid_ones_still_work(app):
    client = app.test_client()
    statuses, plays_answered = Counter(), [0]

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(requests)
    def one_request(request):
        method, path, body, headers = request
        resp = client.open(path, method=method, data=body, headers=headers)
        statuses[resp.status_code] += 1
        assert resp.status_code < 500, (method, path, body[:200], resp.get_data(as_text=True)[:300])
        if resp.status_code >= 400:
            assert isinstance(resp.get_json()["error"], str) and resp.get_json()["error"]
        elif resp.status_code == 200 and method == "POST" and path.startswith(("/next/", "/last/")):
            plays_answered[0] += 1

    one_request()
    bad = sum(n for status, n in statuses.items() if 400 <= status < 500)
    print(f"fuzz: {sum(statuses.values())} requests, status counts {dict(sorted(statuses.items()))}")
    assert bad >= 2000, statuses
    assert logged_lines(app) == plays_answered[0]  # refused requests left no trace in the event log

    # afterwards, valid requests are answered correctly: Ranked walks each user's list from the top
    for user in range(USERS):
        assert client.post(f"/last/{user}", json={"track": 1, "time": 1.0}).get_json() == {"user": user}
        walked = [client.post(f"/next/{user}", json={"track": 7, "time": 0.5}).get_json() for _ in range(3)]
        assert walked == [{"user": user, "track": t} for t in v1_list(user)[:3]]
    assert client.get("/track/7").get_json() == {"track": 7, "artist": "artist-7", "title": "song 7"}
