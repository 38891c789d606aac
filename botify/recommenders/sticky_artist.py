from __future__ import annotations

from botify.recommenders.base import Recommender, View


class StickyArtist(Recommender):
    """A random track by the artist of the track just played; Random when that track is unknown."""

    name = "StickyArtist"

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        tracks = view.artist_tracks(prev_track)
        return self.rng.choice(tracks) if tracks else self.random_track(view)
