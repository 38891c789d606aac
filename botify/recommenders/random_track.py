from __future__ import annotations

from botify.recommenders.base import Recommender, View


class Random(Recommender):
    """A uniformly random catalog track."""

    name = "Random"

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        return self.random_track(view)
