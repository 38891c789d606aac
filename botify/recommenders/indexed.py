from __future__ import annotations

from common import recommender_rules as rules

from botify.recommenders.base import Recommender, View
from botify.store import LIST, RANDOM, TOP


class Indexed(Recommender):
    """A random track from the user's precomputed list; TopPop (then Random) for users without one."""

    name = "Indexed"
    reads = LIST + TOP + RANDOM

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        tracks = view.user_list()
        if tracks:
            return tracks[self.pick(len(tracks))]
        return rules.top_pop(view, self.pick, self.top_k)
