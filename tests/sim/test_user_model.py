"""The listening rules of the user model, on tiny hand-made worlds (tests/sim/conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from sim.env import InvalidAction
from sim.episodes import play_episodes
from sim.policies import make_agent
from sim.user_model import consume, listening_time
from tests.sim.conftest import make_env, make_user


class ScriptedUniform:
    """Uniform draws chosen by the test, to pin the budget rule's comparison."""

    def __init__(self, draws):
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)

    def below(self, n):
        return 0


def expected(tracks, track, session_track, bias=0.0, sharpness=1.0):
    dot = float(tracks.embeddings[track] @ tracks.embeddings[session_track])
    return expit((dot - bias) * sharpness)


def test_listening_time_formula_artist_discount_and_no_repeat(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=0.2, sharpness=3.0, gamma=0.5, budget=100))
    obs, info = env.reset(seed=1)
    assert obs == {"user": 0, "track": 0} and info["interest"] == 0  # k=1: the interest itself

    # Track 2 is by B, not yet played: no discount.
    _, reward, *_ = env.step(2)
    assert reward == round(expected(tiny_tracks, 2, 0, 0.2, 3.0), 2)
    # Track 1 is by A, who was played once (the first track): one gamma.
    _, reward, *_ = env.step(1)
    assert reward == round(expected(tiny_tracks, 1, 0, 0.2, 3.0) * 0.5, 2)
    # Track 2 again: already played in this session.
    _, reward, *_ = env.step(2)
    assert reward == 0.0
    # B was played twice now (the repeat counts too): gamma squared for a fresh B track would apply;
    # artist C is fresh: a north-pointing track is far from the east session vector.
    _, reward, *_ = env.step(4)
    assert reward == round(expected(tiny_tracks, 4, 0, 0.2, 3.0), 2)
    assert env.session.artist_counts == {tiny_tracks.artist_list[0]: 2, tiny_tracks.artist_list[2]: 2,
                                         tiny_tracks.artist_list[4]: 1}


def test_listening_time_is_rounded_to_hundredths(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=0.123, sharpness=7.7, budget=100))
    env.reset(seed=0)
    for track in (1, 2, 3, 4, 5):
        _, reward, *_ = env.step(track)
        assert reward == round(reward, 2) and 0.0 <= reward <= 1.0


def test_budget_drops_only_when_the_draw_exceeds_the_time(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=0.0, sharpness=1.0, budget=2))
    env.reset(seed=0)
    session = env.session
    time = listening_time(session, 2, tiny_tracks)
    assert 0.5 < time < 1.0
    consume(session, 2, tiny_tracks, ScriptedUniform([time - 0.01]))
    assert session.budget == 2 and not session.finished
    consume(session, 1, tiny_tracks, ScriptedUniform([0.999]))
    assert session.budget == 1 and not session.finished
    consume(session, 2, tiny_tracks, ScriptedUniform([0.001]))  # a repeat: time 0, any positive draw exceeds it
    assert session.budget == 0 and session.finished


def test_session_ends_after_budget_steps_when_nothing_is_liked(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=100.0, budget=4))
    env.reset(seed=3)
    steps, terminated = 0, False
    while not terminated:
        _, reward, terminated, truncated, _ = env.step(3 + steps % 3)
        assert reward == 0.0 and not truncated
        steps += 1
    assert steps == 4
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_a_user_who_likes_everything_is_truncated_by_the_step_guard(tiny_tracks):
    env = make_env(tiny_tracks, make_user(bias=-100.0, gamma=1.0, budget=1), max_steps=5)
    env.reset(seed=0)
    for track in (1, 2, 3, 4, 5):
        # Rounded times of 1.00 never lose budget (a draw in [0, 1) cannot exceed 1.0).
        _, reward, terminated, truncated, _ = env.step(track)
        assert reward == 1.0
    assert not terminated and truncated and env.session.steps == 5


def test_first_track_is_drawn_from_the_interests_nearest_tracks(tiny_tracks):
    env = make_env(tiny_tracks, make_user(interests=[0], neighbours=3), make_user(user=1, interests=[3], neighbours=2))
    firsts = {0: set(), 1: set()}
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        firsts[obs["user"]].add(obs["track"])
        assert env.session.embedding is tiny_tracks.embeddings[info["interest"]] or np.array_equal(
            env.session.embedding, tiny_tracks.embeddings[info["interest"]])
    assert firsts[0] == {0, 1, 2}  # the three tracks nearest to the east interest, all reachable
    assert firsts[1] == {3, 4}


def test_session_picks_among_all_interests(tiny_tracks):
    env = make_env(tiny_tracks, make_user(interests=[0, 3], neighbours=1))
    seen = {env.reset(seed=s)[0]["track"] for s in range(100)}
    assert seen == {0, 3}


def test_invalid_actions_are_rejected(tiny_tracks):
    env = make_env(tiny_tracks, make_user())
    env.reset(seed=0)
    for bad in (6, -1, "x", None, 1.5):
        with pytest.raises(InvalidAction):
            env.step(bad)


def test_reset_can_choose_the_user_and_rejects_unknown_ones(tiny_tracks):
    env = make_env(tiny_tracks, make_user(user=7), make_user(user=9, interests=[3]))
    assert env.reset(seed=0, options={"user": 9})[0]["user"] == 9
    with pytest.raises(ValueError, match="user 8"):
        env.reset(options={"user": 8})


@pytest.mark.parametrize("policy", ["random", "sticky", "oracle"])
def test_same_seed_same_sessions(small_world, policy):
    tracks, users = small_world
    env = make_env_from(tracks, users)
    first = play_episodes(env, make_agent(policy, users), seed=5, episodes=range(60))
    again = play_episodes(make_env_from(tracks, users), make_agent(policy, users), seed=5, episodes=range(60))
    other = play_episodes(env, make_agent(policy, users), seed=6, episodes=range(60))
    assert first == again
    assert [(s.user, s.time, s.steps) for s in first] != [(s.user, s.time, s.steps) for s in other]
    # Episode i depends only on (seed, i): a subrange replays identically.
    assert play_episodes(env, make_agent(policy, users), seed=5, episodes=range(30, 40)) == first[30:40]


def make_env_from(tracks, users):
    from sim.env import MusicEnv

    return MusicEnv(tracks, users)
