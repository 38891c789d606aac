"""The console agent (manual play): prompts, validation of what the player types, quitting."""
from __future__ import annotations

import io

import pytest

from sim.console_agent import ConsoleAgent, QuitPlay
from sim.episodes import play_episode
from tests.sim.conftest import make_env, make_user


def scripted(*answers):
    answers = list(answers)
    return lambda prompt: answers.pop(0)


def test_console_play_validates_input_and_plays_the_chosen_tracks(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=100.0, budget=2))
    out = io.StringIO()
    agent = ConsoleAgent(scripted("a", "hello", "17", "4", "5"), out)
    stats = play_episode(env, agent, seed=1, episode=0)
    text = out.getvalue()
    assert stats.steps == 2 and env.session.tracks == [0, 4, 5]
    assert "just played 0: 't0' by 'A'" in text
    assert "1: 't1' by 'A'" in text  # "a" listed the artist's tracks
    assert "not a track id: 'hello'" in text and "no track 17 in this world" in text
    assert "session over" in text


def test_console_quit(tiny_tracks):
    env = make_env(tiny_tracks, make_user())
    with pytest.raises(QuitPlay):
        play_episode(env, ConsoleAgent(scripted("q"), io.StringIO()), seed=0, episode=0)
