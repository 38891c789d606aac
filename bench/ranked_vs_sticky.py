"""Ranked-over-MultiDAE vs StickyArtist in-process: how training data and training settings move the A/B effect.

    .venv/bin/python bench/ranked_vs_sticky.py [--sessions 40000] [--threshold 0.3] [--seed-label]
                                               [--epochs 10] [--batch 200] [--lr 0.01] [--ab-sessions 5000]

The demo's loop without HTTP, Spark or Redis, so one variant takes minutes
instead of the demo's twenty: the default world (conf/env.yml); training
traffic as botify's BASELINE experiment produces it before any model exists
(users split by the experiment hash into Random, TopPop — which falls back to
Random without top tracks, as botify's does — and StickyArtist); positives as
extract_interactions + train_multidae define them (``max(time) > threshold``,
plus the tracks a user began a session with unless ``--seed-label``); the
Mult-DAE of common/model.py trained in one process (``--batch``: users per
optimiser step; the default 200 is what the demo took with 2 ranks when
``multidae.batch_size`` counted per rank, kept so the figures in
docs/results.md reproduce); each user's top-50 walked in order as
botify's Ranked does (top-100 popular once the list is exhausted). Both arms
play the same episode seeds (same users, same session starts), so their
difference is the policies'. One line on stdout: the figures and the
Ranked / StickyArtist ratio of mean session time with a 95% bootstrap CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.experiments import assign  # noqa: E402
from common.model import MultiDAE, MultiDAEConfig, adam, multinomial_loss, pad_batch  # noqa: E402
from sim.catalog import TrackCatalog, UserCatalog  # noqa: E402
from sim.env import MusicEnv  # noqa: E402
from sim.episodes import episode_rngs, play_episodes  # noqa: E402
from sim.policies import Agent, RandomAgent, StickyArtistAgent  # noqa: E402
from sim.settings import DEFAULT_CONFIG, load_env_config, world_params  # noqa: E402
from sim.world import generate_world  # noqa: E402


def default_world():
    params, seed = world_params(load_env_config(DEFAULT_CONFIG, []))
    world = generate_world(params, seed)
    tracks = TrackCatalog(world.embeddings, [world.artist_names[a] for a in world.artist_of.tolist()], world.titles)
    return tracks, UserCatalog.from_records(world.users, n_tracks=tracks.size())


def baseline_traffic(env: MusicEnv, sessions: int):
    """({user: {track: max time}}, {user: tracks they began a session with}) from BASELINE sessions."""
    policies = {"C": RandomAgent(), "T1": RandomAgent(), "T2": StickyArtistAgent()}
    best: Dict[int, Dict[int, float]] = {}
    starts: Dict[int, set] = {}
    for episode in range(sessions):
        env_rng, agent_rng = episode_rngs(1, episode)
        observation, _ = env.reset(seed=env_rng)
        user = observation["user"]
        starts.setdefault(user, set()).add(observation["track"])
        seen = best.setdefault(user, {})
        agent = policies[assign(user, "BASELINE", 3)]
        agent.start(env, agent_rng)
        reward, done = 0.0, False
        while not done:
            track = agent.recommend(observation, reward)
            observation, reward, terminated, truncated, _ = env.step(track)
            done = terminated or truncated
            seen[track] = max(reward, seen.get(track, 0.0))
    return best, starts


def positives(best, starts, threshold: float, session_starts: bool) -> Dict[int, List[int]]:
    out = {}
    for user in set(best) | set(starts):
        items = {t for t, v in best.get(user, {}).items() if v > threshold}
        if session_starts:
            items |= starts.get(user, set())
        if items:
            out[user] = sorted(items)
    return out


def train(pos: Dict[int, List[int]], n_items: int, epochs: int, batch: int, lr: float) -> MultiDAE:
    torch.manual_seed(98765)
    model = MultiDAE(MultiDAEConfig(n_items=n_items))
    optimiser = adam(model.parameters(), lr)
    users = list(pos)
    rng = np.random.default_rng(98765)
    model.train()
    for _ in range(epochs):
        rng.shuffle(users)
        for i in range(0, len(users), batch):
            items, lengths = pad_batch([pos[u] for u in users[i:i + batch]])
            loss = multinomial_loss(model(items, lengths), items, lengths)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def top_lists(model: MultiDAE, pos, users: List[int], k: int = 50) -> Dict[int, List[int]]:
    lists = {}
    with torch.no_grad():
        for i in range(0, len(users), 512):
            chunk = users[i:i + 512]
            items, lengths = pad_batch([pos.get(u, []) for u in chunk])
            top = torch.topk(model(items, lengths), k, dim=1).indices.numpy()
            lists.update({u: top[r].tolist() for r, u in enumerate(chunk)})
    return lists


class RankedAgent(Agent):
    name = "ranked"

    def __init__(self, lists: Dict[int, List[int]], popular: List[int]):
        self.lists, self.popular = lists, popular

    def start(self, env, rng):
        super().start(env, rng)
        self.recommended = set()

    def recommend(self, observation, reward):
        track = next((t for t in self.lists.get(observation["user"], ()) if t not in self.recommended), None)
        if track is None:
            pool = [t for t in self.popular if t not in self.recommended] or self.popular
            track = pool[self.rng.below(len(pool))]
        self.recommended.add(track)
        return track


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=40_000, help="BASELINE training sessions (the demo's default)")
    parser.add_argument("--threshold", type=float, default=0.3, help="label max(time) > this (the demo's default)")
    parser.add_argument("--seed-label", action="store_true", help="positives by the time label only (no session starts)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--ab-sessions", type=int, default=5_000, help="sessions per arm")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    tracks, users = default_world()
    env = MusicEnv(tracks, users)
    started = time.perf_counter()
    best, starts = baseline_traffic(env, args.sessions)
    pos = positives(best, starts, args.threshold, not args.seed_label)
    popular = [t for t, _ in Counter(t for items in pos.values() for t in items).most_common(100)]
    model = train(pos, tracks.size(), args.epochs, args.batch, args.lr)
    lists = top_lists(model, pos, [u.user for u in users.users])
    prepared = time.perf_counter() - started

    arms = {}
    for name, agent in (("sticky", StickyArtistAgent()), ("ranked", RankedAgent(lists, popular))):
        arms[name] = np.array([s.time for s in play_episodes(env, agent, 31337, range(args.ab_sessions))])
    ratio = arms["ranked"].mean() / arms["sticky"].mean()
    rng = np.random.default_rng(0)
    draws = rng.integers(0, args.ab_sessions, size=(1000, args.ab_sessions))
    boot = arms["ranked"][draws].mean(axis=1) / arms["sticky"][draws].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    print(f"ranked_vs_sticky sessions={args.sessions} threshold={args.threshold} session_starts={not args.seed_label} "
          f"epochs={args.epochs} batch={args.batch} lr={args.lr} users_with_positives={len(pos)} "
          f"positives={sum(map(len, pos.values()))} prepare_s={prepared:.0f} ab_sessions={args.ab_sessions} "
          f"sticky_time={arms['sticky'].mean():.3f} ranked_time={arms['ranked'].mean():.3f} "
          f"ratio_ranked_vs_sticky={ratio:.3f} effect={100 * (ratio - 1):+.1f}% ci95=[{100 * (low - 1):+.1f}%, {100 * (high - 1):+.1f}%]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
