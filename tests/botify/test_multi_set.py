"""Several recommendation sets in one experiment: MODELS (C StickyArtist, T1 Ranked over the default set,
T2 Ranked over the `als` set), over real HTTP and a real Redis.

The default set is recommendations/LATEST (v1: user u's list starts at u), the
`als` set recommendations/LATEST-als (als-v1: user u's list starts at 299 - u),
so the head of the answer tells which set served.
"""
import json
import os

import pytest
import redis
import requests

from botify.cli import main as botify_main
from botify.service import Service
from botify.settings import load_settings, served_sets, validate
from botify.store import Store
from common.config import ConfigError
from common.experiments import assign
from common.storage import FsspecStorage, join
from tests.botify.conftest import TOKEN, TOP, USERS, make_config, next_track, v1_list, v2_list
from testkit.artifacts import write_recommendations

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def als_list(user: int, shift: int = 0) -> list:
    return list(range(299 - user - shift, 249 - user - shift, -1))


def write_als(root, version, users=USERS, shift=0, **kwargs):
    lists = {u: als_list(u, shift) for u in range(users)}
    return write_recommendations(root, version, lists, TOP, pointer="LATEST-als", **kwargs)


@pytest.fixture
def models(serve, world):
    """botify routing MODELS with v1 (default set) and als-v1 (set als) loaded: (base URL, config)."""
    write_als(world, "als-v1")
    return serve(active_experiments=["MODELS"])


def users_by_arm() -> dict:
    arms = {}
    for user in range(USERS):
        arms.setdefault(assign(user, "MODELS", 3), []).append(user)
    assert sorted(arms) == ["C", "T1", "T2"]  # the test users cover every arm
    return arms


def reload(base, body=None):
    return requests.post(f"{base}/admin/reload", json=body, headers=AUTH, timeout=60)


def test_every_arm_is_answered_from_its_own_list(models, tmp_path):
    base, config = models
    arms = users_by_arm()
    for user in arms["T1"]:
        assert [next_track(base, user) for _ in range(3)] == v1_list(user)[:3]
    for user in arms["T2"]:
        assert [next_track(base, user) for _ in range(3)] == als_list(user)[:3]
    for user in arms["C"]:
        assert next_track(base, user, track=7) % 30 == 7  # StickyArtist: the artist of the track just played
    health = requests.get(base + "/", timeout=10).json()
    assert health["recommendations"] == "v1" and health["sets"] == {"als": "als-v1"}

    os.sync()
    lines = [json.loads(line) for f in sorted((tmp_path / "logs").iterdir()) if ".jsonl" in f.name
             for line in f.read_text().splitlines()]
    assert len(lines) == 3 * (len(arms["T1"]) + len(arms["T2"])) + len(arms["C"])
    for line in lines:
        assert line["experiments"] == {"MODELS": assign(line["user"], "MODELS", 3)}


def test_reload_switches_every_set_together(models, world):
    base, config = models
    store = Store.from_config(config)
    before = store.active()
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
    write_als(world, "als-v2", shift=10)
    resp = reload(base)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["recommendations"], body["recommendations:als"]) == ("v2", "als-v2")
    assert (body["users"], body["users:als"]) == (str(USERS), str(USERS))
    # one namespace holds both sets, and the previous one (with both old sets) is gone
    assert body["previous"] == before and store.namespaces() == [store.active()] == [body["namespace"]]
    arms = users_by_arm()
    assert next_track(base, arms["T1"][0]) == v2_list(arms["T1"][0])[0]
    assert next_track(base, arms["T2"][0]) == als_list(arms["T2"][0], shift=10)[0]


def _tamper(version_dir):
    path = join(version_dir, "json", "part-00000.json")
    FsspecStorage().write_bytes(path, FsspecStorage().read_bytes(path) + b'{"user": 99, "tracks": []}\n')


@pytest.mark.parametrize("break_als,expected", [
    (lambda d: _tamper(d), "json_sha256"),
    (lambda d: FsspecStorage().delete(join(d, "_SUCCESS")), "_SUCCESS"),
])
def test_a_corrupt_set_rejects_the_whole_reload(models, world, break_als, expected):
    base, config = models
    store = Store.from_config(config)
    before = store.active()
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)  # a good default set
    break_als(write_als(world, "als-v2", shift=10))
    resp = reload(base)
    assert resp.status_code == 422, resp.text
    assert "recommendation set als" in resp.json()["error"] and expected in resp.json()["error"]
    assert store.active() == before and store.namespaces() == [before]
    meta = store.meta(before)
    assert (meta["recommendations"], meta["recommendations:als"]) == ("v1", "als-v1")
    arms = users_by_arm()
    assert next_track(base, arms["T1"][0]) == v1_list(arms["T1"][0])[0]  # the good v2 was not switched to alone
    assert next_track(base, arms["T2"][0]) == als_list(arms["T2"][0])[0]


def test_coverage_is_checked_per_set(models, world):
    base, config = models
    write_als(world, "als-small", users=5)  # 5 of the 20 users the als set serves now
    resp = reload(base)
    assert resp.status_code == 422
    assert "recommendation set als" in resp.json()["error"] and "min_user_coverage" in resp.json()["error"]
    resp = reload(base, {"force": True})
    assert resp.status_code == 200 and resp.json()["users:als"] == "5"


def test_a_reload_pins_a_named_set_and_the_cli_sends_it(models, world, capsys, monkeypatch):
    base, config = models
    monkeypatch.setenv("BOTIFY_ADMIN_TOKEN", TOKEN)
    write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
    write_als(world, "als-v2", shift=10)  # LATEST-als moves on; the operator keeps als-v1
    resp = reload(base, {"sets": {"als": "als-v1"}})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["recommendations"], resp.json()["recommendations:als"]) == ("v2", "als-v1")
    assert botify_main(["reload", "--url", base, "--version", "v1", "--set-version", "als=als-v2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["recommendations"], out["recommendations:als"]) == ("v1", "als-v2")
    arms = users_by_arm()
    assert next_track(base, arms["T2"][0]) == als_list(arms["T2"][0], shift=10)[0]

    assert reload(base, {"sets": {"ease": "v1"}}).status_code == 422  # no such set served
    assert "no recommendation set 'ease'" in reload(base, {"sets": {"ease": "v1"}}).json()["error"]
    for body in ({"sets": ["als"]}, {"sets": {"als": "../v1"}}, {"sets": {"als": 3}}, {"sets": {"a/b": "v1"}}):
        assert reload(base, body).status_code == 400, body
    assert botify_main(["reload", "--url", base, "--set-version", "als"]) == 2


def test_redis_restart_restores_the_served_version_of_every_set(world, redis_url, tmp_path, caplog):
    write_als(world, "als-v1")
    config = make_config(world, redis_url, tmp_path / "logs", active_experiments=["MODELS"])
    worker = Service(config, upkeep=False)
    try:
        assert worker.reload()["recommendations:als"] == "als-v1"
        # New versions of both sets appear, nobody reloads, then Redis comes back empty.
        write_recommendations(world, "v2", {u: v2_list(u) for u in range(USERS)}, TOP)
        write_als(world, "als-v2", shift=10)
        redis.Redis.from_url(redis_url).flushall()
        worker._check_artifacts()
        store = Store.from_config(config)
        meta = store.meta(store.active())
        assert (meta["recommendations"], meta["recommendations:als"]) == ("v1", "als-v1")
        assert any("loading recommendations v1, set als als-v1, the versions served before" in r.getMessage()
                   for r in caplog.records)
        user = users_by_arm()["T2"][0]
        assert worker.next(user, 0, 0.5, 0.0) == (als_list(user)[0], "T2")
    finally:
        worker.close()


def _redis_calls(client) -> int:
    return sum(stats["calls"] for stats in client.info("commandstats").values())


def test_an_arm_over_a_named_set_costs_the_same_redis_calls_as_one_over_the_default(world, redis_url, tmp_path):
    write_als(world, "als-v1")
    client = redis.Redis.from_url(redis_url)
    calls = {}
    for experiment, arm in (("AB", "T1"), ("MODELS", "T1"), ("MODELS", "T2")):
        config = make_config(world, redis_url, tmp_path / "logs", active_experiments=[experiment])
        worker = Service(config, upkeep=False)
        try:
            worker.reload()
            user = next(u for u in range(USERS) if assign(u, experiment, config["experiments"][experiment]["split"]) == arm)
            client.config_resetstat()
            for _ in range(5):
                worker.next(user, 0, 0.5, 0.0)
            calls[(experiment, arm)] = _redis_calls(client) - 1  # less the INFO call itself
        finally:
            worker.close()
    assert len(set(calls.values())) == 1 and min(calls.values()) > 5, calls


def test_only_the_sets_the_routing_experiment_reads_are_loaded(serve, world):
    write_als(world, "als-v1")
    base, config = serve(active_experiments=["AB", "MODELS"])  # AB routes: no arm reads als
    store = Store.from_config(config)
    assert "recommendations:als" not in store.meta(store.active())
    assert "sets" not in requests.get(base + "/", timeout=10).json()


def test_a_config_without_sets_serves_the_default_set_as_before():
    config = load_settings(env={})
    del config["artifacts"]["sets"]
    del config["experiments"]["MODELS"]
    validate(config)
    assert list(served_sets(config)) == ["default"]


@pytest.mark.parametrize("overrides,message", [
    (["experiments.AB.treatments={C: StickyArtist, T1: {recommender: Ranked, set: ease}}"],
     "unknown recommendation set 'ease'"),
    (["experiments.AB.treatments={C: {recommender: StickyArtist, set: als}, T1: Ranked}"],
     "StickyArtist reads no user lists"),
    (["experiments.AB.treatments={C: StickyArtist, T1: {recommender: Ranked, sets: als}}"], "takes only"),
    (["experiments.AB.treatments={C: StickyArtist, T1: {recommender: Magic, set: als}}"], "unknown recommender"),
    (["artifacts.sets={default: {pointer: LATEST-x}}"], "set name"),
    (["artifacts.sets={als: {pointer: ../LATEST}}"], "must be a file name"),
    (["artifacts.sets={als: {ponter: LATEST-als}}"], "takes only 'pointer' and 'version'"),
])
def test_bad_set_config_is_rejected_at_startup(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides, env={})
