"""In-process recommendation policies for calibration and bulk logs (botify has its own; we don't import it).

Every agent — these and the remote one — has the same three calls per session:
``start(env, rng)`` after ``env.reset``, ``recommend(observation, reward) -> track``
before each step, and ``finish(observation, reward)`` when the session ends.

* ``random``: a uniformly random catalog track.
* ``toppop``: a uniformly random track among the ``n`` most popular, popularity
  being how many users hold a track among their interests (what logs of first
  tracks show); the course's TopPop baseline.
* ``sticky``: a random track by the artist of the last played track (the
  course's StickyArtist).
* ``oracle``: the unplayed track nearest to the session embedding — it reads
  the user's hidden state, so it is an upper reference, not a recommender.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from sim.catalog import TrackCatalog, UserCatalog


class Agent:
    name = "agent"

    def start(self, env, rng) -> None:
        """``rng``: a sim.fast_random.FastUniform."""
        self.env = env
        self.rng = rng

    def recommend(self, observation: Dict[str, int], reward: float) -> int:
        raise NotImplementedError

    def finish(self, observation: Dict[str, int], reward: float) -> None:
        pass

    def close(self) -> None:
        pass


class RandomAgent(Agent):
    name = "random"

    def recommend(self, observation, reward):
        return self.rng.below(self.env.tracks.size())


def popular_tracks(users: UserCatalog, n: int = 100) -> List[int]:
    counts = Counter(t for u in users.users for t in u.interests)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


class TopPopAgent(Agent):
    name = "toppop"

    def __init__(self, top_tracks: List[int]):
        if not top_tracks:
            raise ValueError("TopPop needs a non-empty list of popular tracks")
        self.top = list(top_tracks)

    def recommend(self, observation, reward):
        return self.top[self.rng.below(len(self.top))]


class StickyArtistAgent(Agent):
    name = "sticky"

    def recommend(self, observation, reward):
        tracks = self.env.tracks
        same = tracks.tracks_by_artist[tracks.artist_list[observation["track"]]]
        return same[self.rng.below(len(same))]


class OracleAgent(Agent):
    name = "oracle"

    def start(self, env, rng):
        super().start(env, rng)
        self._ranked: Optional[np.ndarray] = None
        self._pos = 0

    def recommend(self, observation, reward):
        session = self.env.session
        tracks: TrackCatalog = self.env.tracks
        while True:
            if self._ranked is None or self._pos >= self._ranked.size:
                k = len(session.played) + 64
                self._ranked = tracks.nearest(session.interest, k) if k <= 256 else \
                    tracks.nearest_to_vector(session.embedding, k)
                self._pos = 0
            track = int(self._ranked[self._pos])
            self._pos += 1
            if track not in session.played:
                return track


IN_PROCESS = ("random", "toppop", "sticky", "oracle")


def make_agent(name: str, users: Optional[UserCatalog] = None, top_n: int = 100) -> Agent:
    if name == "random":
        return RandomAgent()
    if name == "toppop":
        if users is None:
            raise ValueError("toppop needs the user catalog to rank popular tracks")
        return TopPopAgent(popular_tracks(users, top_n))
    if name == "sticky":
        return StickyArtistAgent()
    if name == "oracle":
        return OracleAgent()
    raise ValueError(f"unknown in-process policy {name!r} (choose from {', '.join(IN_PROCESS)})")
