import json
import os

import mmh3
import pytest

from common.config import ConfigError
from common.experiments import assign
from botify.settings import load_settings
from tests.botify.conftest import next_track


def course_formula(user: int, name: str, split: int) -> str:
    bucket = mmh3.hash(str(user), mmh3.hash(name) & 0xFFFFFFFF, signed=False) % split
    return "C" if bucket == 0 else f"T{bucket}"


def test_known_answers_from_design():
    assert [assign(u, "AB", 2) for u in range(6)] == ["T1", "T1", "C", "T1", "C", "C"]
    assert [assign(u, "ALL", 7) for u in range(6)] == ["T6", "T5", "T5", "T4", "T3", "T2"]


@pytest.mark.parametrize("name,split", [("AB", 2), ("ALL", 7), ("BASELINE", 3), ("X", 5)])
def test_assignment_equals_the_course_formula(name, split):
    assert [assign(u, name, split) for u in range(500)] == [course_formula(u, name, split) for u in range(500)]


def test_ab_routes_users_to_the_configured_recommenders_and_logs_treatments(serve, tmp_path):
    base, config = serve(active_experiments=["AB", "BASELINE"])
    # AB: C = StickyArtist, T1 = Ranked. Users 0, 1, 3 are T1: Ranked gives the head of their list.
    # Users 2, 4, 5 are C: StickyArtist picks a track by the artist of the track just played (artist = t % 30).
    for user in range(6):
        got = next_track(base, user, track=7)
        if assign(user, "AB", 2) == "T1":
            assert got == user  # v1 list of user u starts at u
        else:
            assert got % 30 == 7
    os.sync()
    app_log_dir = tmp_path / "logs"
    lines = [json.loads(line) for f in sorted(app_log_dir.iterdir()) if ".jsonl" in f.name
             for line in f.read_text().splitlines()]
    assert [ln["user"] for ln in lines] == list(range(6))
    for ln in lines:
        assert ln["experiments"] == {"AB": assign(ln["user"], "AB", 2), "BASELINE": assign(ln["user"], "BASELINE", 3)}


def test_env_switches_experiments_and_redis_without_code_changes():
    config = load_settings(env={"BOTIFY_EXPERIMENTS": "AB", "REDIS_URL": "redis://127.0.0.1:1/0",
                                "BOTIFY_PORT": "6001", "BOTIFY_ADMIN_TOKEN": "0123"})
    assert config["active_experiments"] == ["AB"]
    assert config["redis"]["url"] == "redis://127.0.0.1:1/0"
    assert config["server"]["port"] == 6001
    assert config["admin"]["token"] == "0123"  # stays a string, not YAML's int 123
    assert load_settings(["active_experiments=[INDEXED]"], env={"BOTIFY_EXPERIMENTS": "AB"})[
        "active_experiments"] == ["INDEXED"]


@pytest.mark.parametrize("overrides,message", [
    (["active_experiments=[NOPE]"], "not defined"),
    (["experiments.AB.treatments={C: StickyArtist, T1: Magic}"], "unknown recommender 'Magic'"),
    (["experiments.AB.split=3"], "must map exactly"),
    (["active_experiments=[]"], "non-empty"),
    (["server.port=abc"], "server.port"),
    (["server.worker_class=eventlet"], "server.worker_class must be one of gevent, gthread, sync"),
])
def test_bad_experiment_config_is_rejected_at_startup(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides, env={})
