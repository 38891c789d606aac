"""Artifact reload: checks against the manifest, atomic switch, old namespace deleted, corrupt versions rejected."""
import json
import threading

import pytest
import redis
import requests

from botify.cli import main as botify_main
from botify.reload import load_or_keep
from botify.service import Service
from botify.store import Store
from common.storage import FsspecStorage, join
from tests.botify.conftest import TOKEN, TOP, USERS, make_config, next_track, v1_list, v2_list
from testkit.artifacts import write_recommendations

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def reload(base, body=None, headers=AUTH):
    return requests.post(f"{base}/admin/reload", json=body, headers=headers, timeout=60)


def test_admin_needs_a_token_and_is_disabled_without_one(serve):
    base, _ = serve("Ranked")
    assert reload(base, headers={}).status_code == 401
    assert reload(base, headers={"Authorization": "Bearer wrong"}).status_code == 401
    base2, _ = serve("Ranked", admin__token=None)
    resp = reload(base2)
    assert resp.status_code == 403 and "disabled" in resp.json()["error"]
    resp = requests.post(f"{base2}/admin/rotate-logs", headers=AUTH, timeout=10)
    assert resp.status_code == 403


def test_reload_switches_to_latest_and_deletes_the_old_namespace(serve, world, redis_url):
    base, config = serve("Ranked")
    store = Store.from_config(config)
    old = store.active()
    assert next_track(base, 3) == v1_list(3)[0]
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
    resp = reload(base)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["recommendations"] == "v2" and body["previous"] == old and body["users"] == str(USERS)
    assert store.namespaces() == [body["namespace"]] == [store.active()]
    assert next_track(base, 4) == v2_list(4)[0]
    health = requests.get(base + "/", timeout=10).json()
    assert health["recommendations"] == "v2" and health["namespace"] == body["namespace"]
    # a named version goes back
    resp = reload(base, {"version": "v1"})
    assert resp.status_code == 200 and resp.json()["recommendations"] == "v1"
    assert next_track(base, 5) == v1_list(5)[0]
    keys = redis.Redis.from_url(redis_url, decode_responses=True).keys("botify:ns:*")
    assert {k.split(":")[2] for k in keys} == {resp.json()["namespace"]}


def _tamper_part(base):
    path = join(base, "json", "part-00000.json")
    data = FsspecStorage().read_bytes(path)
    FsspecStorage().write_bytes(path, data.replace(b"[0, 1", b"[0, 2", 1).replace(b"[2, 3", b"[2, 4", 1) + b"\n")


def _edit_manifest(base, **fields):
    storage = FsspecStorage()
    manifest = json.loads(storage.read_bytes(join(base, "_MANIFEST.json")))
    manifest.update(fields)
    storage.write_bytes(join(base, "_MANIFEST.json"), json.dumps(manifest).encode())


CORRUPTIONS = {
    "tampered part file": (lambda b: _tamper_part(b), "json_sha256"),
    "row count": (lambda b: _edit_manifest(b, row_count=99), "row_count=99"),
    "missing _SUCCESS": (lambda b: FsspecStorage().delete(join(b, "_SUCCESS")), "_SUCCESS"),
    "tampered top tracks": (lambda b: FsspecStorage().write_bytes(join(b, "top_tracks.json"), b"[1, 2]"),
                            "top_tracks_sha256"),
    "missing part file": (lambda b: FsspecStorage().delete(join(b, "json", "part-00001.json")), "missing"),
    "no manifest": (lambda b: FsspecStorage().delete(join(b, "_MANIFEST.json")), "_MANIFEST.json"),
    # a wrong type is named as such, not reported as "20 rows but the manifest says row_count=20"
    "row count as a string": (lambda b: _edit_manifest(b, row_count=str(USERS)),
                              f"'row_count' must be a non-negative integer, got the string \"{USERS}\""),
    "checksum as a number": (lambda b: _edit_manifest(b, json_sha256=12), "'json_sha256' must be a string"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_version_is_rejected_and_the_previous_keeps_serving(serve, world, name):
    base, config = serve("Ranked")
    store = Store.from_config(config)
    before = store.active()
    version_dir = write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
    corrupt, expected = CORRUPTIONS[name]
    corrupt(version_dir)
    resp = reload(base)
    assert resp.status_code == 422, resp.text
    assert "previous version still serving" in resp.json()["error"] and expected in resp.json()["error"]
    assert store.active() == before and store.namespaces() == [before]
    assert next_track(base, 6) == v1_list(6)[0]


@pytest.mark.parametrize("lists,expected", [
    ({0: list(range(49))}, "expected 50 distinct"),
    ({0: [0] * 50}, "expected 50 distinct"),
    ({0: list(range(1000, 1050))}, "not in the catalog"),
])
def test_lists_that_break_the_contract_are_rejected(serve, world, lists, expected):
    base, config = serve("Ranked")
    write_recommendations(world, "bad", lists, TOP)
    resp = reload(base)
    assert resp.status_code == 422 and expected in resp.json()["error"]
    assert next_track(base, 6) == v1_list(6)[0]


def test_unknown_or_unsafe_version_names(serve):
    base, _ = serve("Ranked")
    assert reload(base, {"version": "nope"}).status_code == 422
    assert reload(base, {"version": "../world"}).status_code == 400
    assert reload(base, {"versio": "v1"}).status_code == 400


def test_requests_during_reloads_always_see_a_complete_version(serve, world):
    base, config = serve("Indexed")
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP, latest=False)
    allowed = {u: set(v1_list(u)) | set(v2_list(u)) for u in range(USERS)}
    errors, seen, stop = [], [], threading.Event()

    def hammer(user):
        with requests.Session() as s:
            while not stop.is_set():
                resp = s.post(f"{base}/next/{user}", json={"track": 0, "time": 0.5}, timeout=10)
                if resp.status_code != 200 or resp.json()["track"] not in allowed[user]:
                    errors.append((user, resp.status_code, resp.text))
                seen.append(resp.json().get("track"))

    threads = [threading.Thread(target=hammer, args=(u,)) for u in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            assert reload(base, {"version": "v2" if i % 2 == 0 else "v1"}).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert len(seen) > 20
    assert Store.from_config(config).namespaces() == [Store.from_config(config).active()]


def _cli_args(config):
    return ["--set", f"storage.root={config['storage']['root']}", "--set", f"redis.url={config['redis']['url']}"]


def test_cli_reload_direct_and_over_http(serve, world, capsys, monkeypatch, tmp_path):
    base, config = serve("Ranked")
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
    assert botify_main(["reload", *_cli_args(config)]) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"] == "v2"
    assert next_track(base, 2) == v2_list(2)[0]

    # The token never goes in argv (visible in `ps`): from a file, or from the environment as the demo does.
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "wrong").write_text("wrong\n")
    assert botify_main(["reload", "--version", "v1", "--url", base, "--token-file", str(tmp_path / "token")]) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"] == "v1"
    assert botify_main(["reload", "--version", "v1", "--url", base, "--token-file", str(tmp_path / "wrong")]) == 1
    assert "wrong admin token" in capsys.readouterr().err
    assert botify_main(["reload", "--url", base, "--token-file", str(tmp_path / "absent")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # there is no --token any more
        botify_main(["reload", "--url", base, "--token", TOKEN])
    capsys.readouterr()
    assert botify_main(["reload", "--version", "v1", "--url", base]) == 2  # no token anywhere
    assert "no admin token" in capsys.readouterr().err
    monkeypatch.setenv("BOTIFY_ADMIN_TOKEN", TOKEN)
    assert botify_main(["reload", "--version", "v1", "--url", base]) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"] == "v1"
    monkeypatch.delenv("BOTIFY_ADMIN_TOKEN")
    monkeypatch.setenv("BOTIFY_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    assert botify_main(["reload", "--version", "v1", "--url", base]) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"] == "v1"

    _edit_manifest(join(world, "recommendations", "v2"), row_count=3)
    assert botify_main(["reload", "--version", "v2", *_cli_args(config)]) == 1
    assert "row_count=3" in capsys.readouterr().err
    assert next_track(base, 7) == v1_list(7)[0]


def test_startup_with_a_corrupt_latest_serves_the_catalog_and_says_why(serve, world, caplog):
    _edit_manifest(join(world, "recommendations", "v1"), json_sha256="0" * 64)
    base, config = serve("Ranked")
    assert any("json_sha256" in r.getMessage() for r in caplog.records)
    meta = Store.from_config(config).meta(Store.from_config(config).active())
    assert (meta["recommendations"], meta["users"], meta["tracks"]) == ("", "0", "300")
    # no list and no top tracks (the rejected version's are not trusted): random catalog tracks
    got = {next_track(base, 3) for _ in range(20)}
    assert got <= set(range(300)) and not got <= set(v1_list(3))


def test_an_empty_version_is_refused_and_the_previous_keeps_serving(serve, world):
    base, config = serve("Ranked")
    store = Store.from_config(config)
    before = store.active()
    write_recommendations(world, "empty", {}, TOP)  # consistent manifest: row_count 0, checksums match
    resp = reload(base)
    assert resp.status_code == 422, resp.text
    assert "0 users" in resp.json()["error"] and "artifacts.min_rows=1" in resp.json()["error"]
    assert store.active() == before and store.meta(before)["recommendations"] == "v1"
    assert next_track(base, 6) == v1_list(6)[0]


def test_a_version_covering_few_of_the_served_users_needs_force(serve, world, capsys):
    base, config = serve("Ranked")
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(5)}, TOP)  # 5 of the 20 users served
    resp = reload(base)
    assert resp.status_code == 422
    assert "5 users, under artifacts.min_user_coverage=0.5 of the 20 users served now" in resp.json()["error"]
    assert next_track(base, 6) == v1_list(6)[0]

    # an operator who means it: the CLI straight into Redis with --force
    assert botify_main(["reload", *_cli_args(config), "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == "5"
    assert next_track(base, 4) == v2_list(4)[0]
    assert next_track(base, 7) != v1_list(7)[0]  # user 7 has no list any more: popular tracks


def test_one_loader_at_a_time_when_redis_comes_back_empty(world, redis_url, tmp_path, caplog):
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store.from_config(config)
    workers = [Service(config, upkeep=False) for _ in range(2)]
    try:
        # Both workers found Redis empty (restarted); the second reaches the loader after the first is done.
        for worker in workers:
            worker._auto_load()
        assert client.get("botify:ns_counter") == "1"  # one load, not one per worker
        assert store.namespaces() == [store.active()] and store.meta(store.active())["recommendations"] == "v1"
        assert any("already restored by another loader" in r.getMessage() for r in caplog.records)

        # Four loaders at once: one loads, the others wait for the lock and find it done.
        client.flushall()
        barrier = threading.Barrier(4)
        results, errors = [], []

        def recover():
            barrier.wait()
            try:
                results.append(load_or_keep(config, Store.from_config(config), only_if_empty=True, wait_s=60))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=recover) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and sum(r is not None for r in results) == 1
        assert client.get("botify:ns_counter") == "1" and store.namespaces() == [store.active()]
    finally:
        for worker in workers:
            worker.close()
