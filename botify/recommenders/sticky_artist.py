from __future__ import annotations

from common import recommender_rules as rules

from botify.recommenders.base import Recommender, View
from botify.store import ARTIST, RANDOM


class StickyArtist(Recommender):
    """A random track by the artist of the track just played; Random when that track is unknown (common.recommender_rules)."""

    name = "StickyArtist"
    reads = ARTIST + RANDOM

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        return rules.sticky_artist(view, self.pick, prev_track)
