from __future__ import annotations

from botify.recommenders.base import Recommender, View


class TopPop(Recommender):
    """A random track from the top ``top_k`` popular ones; Random when no top list was loaded."""

    name = "TopPop"

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        track = self.popular(view)
        return self.random_track(view) if track is None else track
