"""A Gymnasium-style environment over the user model (no gym dependency: the API is all we need).

``reset(seed=None, options=None) -> (observation, info)`` samples a user
uniformly (or ``options={"user": u}``) and starts a session;
``step(action) -> (observation, reward, terminated, truncated, info)`` plays the
recommended track. Observations are ``{"user": int, "track": int}`` — the last
track played — exactly what botify receives; the reward is its listening time.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple


from sim.catalog import TrackCatalog, UserCatalog
from sim.fast_random import FastUniform
from sim.user_model import Session, consume, start_session


class InvalidAction(ValueError):
    """The recommendation is not a track id of this world."""


class MusicEnv:
    def __init__(self, tracks: TrackCatalog, users: UserCatalog, seed: Optional[int] = None, max_steps: int = 1000):
        self.tracks = tracks
        self.users = users
        self.max_steps = max_steps
        self.rng = FastUniform(seed)
        self.session: Optional[Session] = None
        self._user_index = {u.user: i for i, u in enumerate(users.users)}

    def reset(self, seed: Optional[Any] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, int], Dict]:
        if seed is not None:
            self.rng = FastUniform(seed)
        options = options or {}
        if "user" in options:
            try:
                user = self.users.users[self._user_index[int(options["user"])]]
            except KeyError:
                raise ValueError(f"user {options['user']} is not in the user catalog") from None
        else:
            user = self.users.users[self.rng.below(self.users.size())]
        self.session = start_session(user, self.tracks, self.rng)
        return self.observe(), {"budget": self.session.budget, "interest": self.session.interest}

    def step(self, action: Any) -> Tuple[Dict[str, int], float, bool, bool, Dict]:
        session = self.session
        if session is None or session.finished or session.truncated:
            raise RuntimeError("call reset() before step(): the session has ended")
        try:
            track = int(action)
        except (TypeError, ValueError):
            raise InvalidAction(f"recommendation {action!r} is not an integer track id") from None
        if track != action or not 0 <= track < self.tracks.size():
            raise InvalidAction(f"recommendation {action!r} is not a track of this world (0..{self.tracks.size() - 1})")
        reward = consume(session, track, self.tracks, self.rng, self.max_steps)
        return self.observe(), reward, session.finished, session.truncated, {"budget": session.budget}

    def observe(self) -> Dict[str, int]:
        return {"user": self.session.user.user, "track": self.session.last_track}
