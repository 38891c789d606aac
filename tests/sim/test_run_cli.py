"""python -m sim.run: summary, determinism across --processes, remote runs, and clear errors."""
from __future__ import annotations

import json

import pytest

from sim import run
from sim.standin_server import StandInBotify
from sim.world import WorldParams, generate_world, write_world


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    write_world(generate_world(WorldParams(tracks=1000, artists=100, genres=8, users=100), seed=4), str(out))
    return str(out)


def test_random_run_prints_the_summary(world_dir, tmp_path, capsys):
    out = tmp_path / "stats.jsonl"
    assert run.main(["--episodes", "40", "--recommender", "random", "--world", world_dir, "--seed", "31337",
                     "--no-progress", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Experiment results summary" in printed and "| random | 40 |" in printed
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["episode"] for r in rows] == list(range(40))
    mean = sum(r["time"] for r in rows) / 40
    assert f"{mean:.3f} ±" in printed


def test_processes_do_not_change_the_sessions(world_dir, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    common = ["--episodes", "120", "--recommender", "sticky", "--world", world_dir, "--seed", "7", "--no-progress"]
    assert run.main(common + ["--output", str(one)]) == 0
    assert run.main(common + ["--processes", "2", "--output", str(two)]) == 0
    assert one.read_text() == two.read_text()


def test_remote_run_against_a_loopback_server(world_dir, capsys):
    with StandInBotify(1000) as server:
        assert run.main(["--episodes", "15", "--recommender", "remote", "--world", world_dir, "--url", server.url,
                         "--no-progress"]) == 0
    assert len([r for r in server.requests if r[0] == "last"]) == 15
    assert "| remote | 15 |" in capsys.readouterr().out


def test_remote_run_with_botify_down_fails_clearly(world_dir, caplog):
    from common.redis_server import free_port

    code = run.main(["--episodes", "3", "--recommender", "remote", "--world", world_dir, "--no-progress",
                     "--set", f"remote_recommender_config.port={free_port()}", "--set",
                     "remote_recommender_config.retries=1", "--set", "remote_recommender_config.backoff_s=0.01"])
    assert code == 3
    assert "unreachable" in caplog.text


def test_missing_world_and_bad_flags_are_clear_errors(tmp_path, caplog):
    assert run.main(["--episodes", "1", "--world", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "world files not found" in caplog.text and "sim generate" in caplog.text
    assert run.main(["--episodes", "1", "--set", "remote_recommender_config.prot=1"]) == 2
    assert "unknown configuration key" in caplog.text
    with pytest.raises(SystemExit):
        run.main(["--recommender", "nonsense"])


def test_botify_sim_dispatches_subcommands(world_dir, capsys):
    from sim.__main__ import main as sim_main

    assert sim_main(["run", "--episodes", "5", "--recommender", "toppop", "--world", world_dir, "--no-progress"]) == 0
    assert "| toppop | 5 |" in capsys.readouterr().out
    assert sim_main(["fly"]) == 2
    assert "generate" in capsys.readouterr().err


@pytest.mark.parametrize("value", [1.5, -0.1, "1", True])
def test_first_track_time_must_be_a_number_in_the_unit_interval(value):
    from common.config import ConfigError
    from sim.run import first_track_time

    with pytest.raises(ConfigError, match="first_track_time"):
        first_track_time({"run_config": {"first_track_time": value}})
