from __future__ import annotations

from botify.recommenders.base import Recommender, View
from botify.store import RANDOM, TAKE, TOP


class Ranked(Recommender):
    """The seed's recommender.

    Walks the user's top-50 list best first, skipping tracks already recommended
    in this session (a Redis set per user, with a TTL, cleared at ``/last``).
    When the list is exhausted, or the user has none, a random not-yet-recommended
    track from the ``top_k`` popular; when those are exhausted too, a random track.

    The list walk is ``TAKE`` in ``botify.store.REQUEST_SCRIPT``: the list, the
    history and remembering the pick cost the request's one round trip. Past
    the list, the fallback picks here and remembers in a second one.
    """

    name = "Ranked"
    reads = TAKE + TOP + RANDOM

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        if view.taken is not None:
            return view.taken
        choice = self.popular(view, exclude=view.history)
        if choice is None:
            choice = self.random_track(view)
        view.store.remember(user, choice, self.history_ttl_s)
        return choice
