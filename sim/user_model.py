"""The simulated listener: how a session starts, how long a track is listened to, when it ends.

The rules are the course simulator's:

* **Start.** A session picks one of the user's interests uniformly; the
  session embedding is that track's embedding (fixed for the session). The
  first track is drawn uniformly from the interest's ``interest_neighbours``
  nearest tracks by inner product (the interest itself included). It counts as
  played (time 1.0) for the no-repeat rule and the artist count.
* **Listening time** of a recommended track =
  ``expit((dot(track, session) - consume_bias) * consume_sharpness)``
  times ``artist_discount_gamma ** (plays of this artist so far in the session)``,
  rounded to 0.01. The artist discount models fatigue with one artist.
* **No repeats.** A track already played in the session gets time 0.
* **Budget.** After each listen a uniform draw in [0, 1) is compared with the
  time; if it exceeds the time the budget drops by one (a poor recommendation
  costs patience). The session ends when the budget reaches 0.
* **Guard (ours).** A session is truncated after ``max_steps`` listens, since a
  user who listens to everything fully would otherwise never leave.
"""
from __future__ import annotations

import math
from typing import Dict, List, Set

import numpy as np

from sim.catalog import TrackCatalog, UserProfile
from sim.fast_random import FastUniform


class Session:
    __slots__ = ("user", "interest", "embedding", "budget", "played", "artist_counts", "tracks", "times", "finished",
                 "truncated")

    def __init__(self, user: UserProfile, interest: int, embedding: np.ndarray, first_track: int, first_artist: int):
        self.user = user
        self.interest = interest
        self.embedding = embedding
        self.budget = user.session_budget
        self.played: Set[int] = {first_track}
        self.artist_counts: Dict[int, int] = {first_artist: 1}
        self.tracks: List[int] = [first_track]
        self.times: List[float] = [1.0]
        self.finished = False
        self.truncated = False

    @property
    def last_track(self) -> int:
        return self.tracks[-1]

    @property
    def steps(self) -> int:
        return len(self.tracks) - 1

    @property
    def total_time(self) -> float:
        """Time over recommended tracks (the first track is the user's own pick and not counted)."""
        return float(sum(self.times[1:]))


def start_session(user: UserProfile, catalog: TrackCatalog, rng: FastUniform) -> Session:
    interest = user.interests[rng.below(len(user.interests))]
    neighbours = catalog.nearest(interest, user.interest_neighbours)
    first = int(neighbours[rng.below(neighbours.size)])
    return Session(user, interest, catalog.embeddings[interest], first, catalog.artist_list[first])


def listening_time(session: Session, track: int, catalog: TrackCatalog) -> float:
    if track in session.played:
        return 0.0
    user = session.user
    score = float(catalog.embeddings[track] @ session.embedding)
    x = (score - user.consume_bias) * user.consume_sharpness
    # Numerically safe logistic (scipy's expit, without its per-call overhead on scalars).
    raw = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    plays = session.artist_counts.get(catalog.artist_list[track], 0)
    return round(raw * user.artist_discount_gamma ** plays, 2)


def consume(session: Session, track: int, catalog: TrackCatalog, rng: FastUniform, max_steps: int = 0) -> float:
    """Play ``track`` in ``session``; return its listening time and update budget / termination."""
    time = listening_time(session, track, catalog)
    artist = catalog.artist_list[track]
    session.played.add(track)
    session.artist_counts[artist] = session.artist_counts.get(artist, 0) + 1
    session.tracks.append(track)
    session.times.append(time)
    if rng.random() > time:
        session.budget -= 1
    if session.budget <= 0:
        session.finished = True
    elif max_steps and session.steps >= max_steps:
        session.truncated = True
    return time
