from __future__ import annotations

from common import recommender_rules as rules

from botify.recommenders.base import Recommender, View
from botify.store import RANDOM, TOP


class TopPop(Recommender):
    """A random track from the top ``top_k`` popular ones; Random when no top list was loaded (common.recommender_rules)."""

    name = "TopPop"
    reads = TOP + RANDOM

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        return rules.top_pop(view, self.pick, self.top_k)
