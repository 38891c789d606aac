"""Playing sessions: one episode, or a numbered range of them, each seeded from (seed, episode number).

Seeding per episode makes a run reproducible whatever the number of processes
and whichever process plays which episode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Tuple

import numpy as np

from sim.env import MusicEnv
from sim.fast_random import FastUniform
from sim.policies import Agent


@dataclass
class EpisodeStats:
    episode: int
    user: int
    time: float
    steps: int
    truncated: bool


def episode_rngs(seed: int, episode: int) -> Tuple[np.random.Generator, FastUniform]:
    """The env's and the agent's randomness for one episode: two buffers over one generator.

    Each buffer takes blocks from the generator when it runs dry, so the
    streams are fixed by (seed, episode) alone; one generator per episode
    instead of two halves the seeding cost, which short sessions notice.
    """
    generator = np.random.default_rng([seed, episode])
    return generator, FastUniform(generator)


def play_episode(env: MusicEnv, agent: Agent, seed: int, episode: int, first_track_time: float = 0.0) -> EpisodeStats:
    """One session. ``first_track_time`` is what the agent reports for the user's own first track
    (sent to botify as that ``next`` request's ``time``); it is not part of the session's time."""
    env_rng, agent_rng = episode_rngs(seed, episode)
    observation, _ = env.reset(seed=env_rng)
    agent.start(env, agent_rng)
    reward, total, steps = first_track_time, 0.0, 0
    terminated = truncated = False
    while not (terminated or truncated):
        action = agent.recommend(observation, reward)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        steps += 1
    agent.finish(observation, reward)
    return EpisodeStats(episode, observation["user"], round(total, 2), steps, truncated)


def play_episodes(env: MusicEnv, agent: Agent, seed: int, episodes: Iterable[int],
                  first_track_time: float = 0.0) -> List[EpisodeStats]:
    return [play_episode(env, agent, seed, e, first_track_time) for e in episodes]


def summarize(stats: List[EpisodeStats]) -> dict:
    times = np.array([s.time for s in stats], dtype=np.float64)
    steps = np.array([s.steps for s in stats], dtype=np.float64)
    n = len(stats)

    def sem(x):
        return float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

    return {
        "episodes": n,
        "time_mean": float(times.mean()) if n else float("nan"),
        "time_sem": sem(times),
        "length_mean": float(steps.mean()) if n else float("nan"),
        "length_sem": sem(steps),
        "truncated": int(sum(s.truncated for s in stats)),
    }
