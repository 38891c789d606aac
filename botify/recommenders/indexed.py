from __future__ import annotations

from botify.recommenders.base import Recommender, View


class Indexed(Recommender):
    """A random track from the user's precomputed list; TopPop (then Random) for users without one."""

    name = "Indexed"

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        tracks = view.user_list(user)
        if tracks:
            return self.rng.choice(tracks)
        track = self.popular(view)
        return self.random_track(view) if track is None else track
