"""In-process recommendation policies for calibration and bulk logs.

botify is not imported (a simulator stands apart from the service it tests);
TopPop and StickyArtist share botify's choice rules through ``common.recommender_rules``
over an in-memory ``TrackSource`` instead of botify's Redis one.

Every agent — these and the remote one — has the same three calls per session:
``start(env, rng)`` after ``env.reset``, ``recommend(observation, reward) -> track``
before each step, and ``finish(observation, reward)`` when the session ends.

* ``random``: a uniformly random catalog track.
* ``toppop``: botify's TopPop rule: a uniformly random track among the ``n``
  first of a popular list, Random when the list is empty. The list is the one
  given (e.g. the ``top_tracks.json`` botify serves, so both pick from the same
  tracks), else the world's ranking by how many users hold a track among their
  interests (the simulator's stand-in for a pipeline's top list).
* ``sticky``: botify's StickyArtist rule: a random track by the artist of the
  last played track.
* ``oracle``: the unplayed track nearest to the session embedding — it reads
  the user's hidden state, so it is an upper reference, not a recommender.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from common import recommender_rules as rules
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


class MemoryTracks:
    """The simulator's ``common.recommender_rules.TrackSource``: the world's catalog and a popular list."""

    def __init__(self, tracks: TrackCatalog, top: Optional[List[int]], rng):
        self.tracks, self.top, self.rng = tracks, top, rng

    def random_track(self) -> Optional[int]:
        size = self.tracks.size()
        return self.rng.below(size) if size else None

    def top_tracks(self) -> Optional[List[int]]:
        return self.top

    def artist_tracks(self, track: int) -> Optional[List[int]]:
        if not 0 <= track < self.tracks.size():
            return None
        return self.tracks.tracks_by_artist[self.tracks.artist_list[track]]


class RandomAgent(Agent):
    name = "random"

    def recommend(self, observation, reward):
        return self.rng.below(self.env.tracks.size())


def popular_tracks(users: UserCatalog, n: int = 100) -> List[int]:
    counts = Counter(t for u in users.users for t in u.interests)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


class TopPopAgent(Agent):
    name = "toppop"

    def __init__(self, top_tracks: Optional[List[int]], top_k: int = 100):
        self.top = list(top_tracks or ()) or None
        self.top_k = top_k

    def start(self, env, rng):
        super().start(env, rng)
        self.source = MemoryTracks(env.tracks, self.top, rng)

    def recommend(self, observation, reward):
        return rules.top_pop(self.source, self.rng.below, self.top_k)


class StickyArtistAgent(Agent):
    name = "sticky"

    def start(self, env, rng):
        super().start(env, rng)
        self.source = MemoryTracks(env.tracks, None, rng)

    def recommend(self, observation, reward):
        return rules.sticky_artist(self.source, self.rng.below, observation["track"])


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


def make_agent(name: str, users: Optional[UserCatalog] = None, top_n: int = 100,
               top_tracks: Optional[List[int]] = None) -> Agent:
    """``top_tracks``: toppop's popular list (default: the world's, from ``users``)."""
    if name == "random":
        return RandomAgent()
    if name == "toppop":
        if top_tracks is None:
            if users is None:
                raise ValueError("toppop needs a popular list or the user catalog to rank one")
            top_tracks = popular_tracks(users, top_n)
        return TopPopAgent(top_tracks, top_n)
    if name == "sticky":
        return StickyArtistAgent()
    if name == "oracle":
        return OracleAgent()
    raise ValueError(f"unknown in-process policy {name!r} (choose from {', '.join(IN_PROCESS)})")
