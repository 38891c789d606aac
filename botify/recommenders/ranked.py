from __future__ import annotations

from botify.recommenders.base import Recommender, View


class Ranked(Recommender):
    """The seed's recommender.

    Walks the user's top-50 list best first, skipping tracks already recommended
    in this session (a Redis set per user, with a TTL, cleared at ``/last``).
    When the list is exhausted, or the user has none, a random not-yet-recommended
    track from the ``top_k`` popular; when those are exhausted too, a random track.
    """

    name = "Ranked"

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        tracks, seen = view.user_list_and_history(user, self.recs_set)
        choice = next((t for t in tracks or () if t not in seen), None)
        if choice is None:
            choice = self.popular(view, exclude=seen)
        if choice is None:
            choice = self.random_track(view)
        view.store.remember(user, choice, self.history_ttl_s)
        return choice
