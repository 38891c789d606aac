"""What a recommender sees: one request's read-only view of the active namespace."""
from __future__ import annotations

import json
import logging
import random
from typing import Dict, List, Optional, Set

from common import recommenders as rules

from botify.settings import DEFAULT_SET
from botify.store import Store

log = logging.getLogger(__name__)


class View:
    """Reads against namespace ``ns``; each read raises ``NamespaceGone`` if a reload removed it.

    It is the Redis ``common.recommenders.TrackSource`` the shared choice rules read.
    """

    def __init__(self, store: Store, ns: str, top_cache: Dict[str, Optional[List[int]]]):
        self.store = store
        self.ns = ns
        self._top_cache = top_cache

    def random_track(self) -> Optional[int]:
        (track,) = self.store.read(self.ns, lambda p: p.srandmember(self.store.key(self.ns, "ids")))
        return None if track is None else int(track)

    def top_tracks(self) -> Optional[List[int]]:
        # A namespace never changes once written, so its top list is cached per namespace id.
        if self.ns not in self._top_cache:
            (raw,) = self.store.read(self.ns, lambda p: p.get(self.store.key(self.ns, "top")))
            if len(self._top_cache) > 8:
                self._top_cache.clear()
            self._top_cache[self.ns] = json.loads(raw) if raw else None
            if not raw:
                log.warning("namespace %s has no top tracks: popular picks fall back to Random", self.ns)
        return self._top_cache[self.ns]

    def artist_tracks(self, track: int) -> Optional[List[int]]:
        (artist,) = self.store.read(self.ns, lambda p: p.hget(self.store.key(self.ns, "artist_of"), track))
        if artist is None:
            return None
        (raw,) = self.store.read(self.ns, lambda p: p.hget(self.store.key(self.ns, "by_artist"), artist))
        return json.loads(raw) if raw else None

    def user_list(self, user: int, recs_set: str) -> Optional[List[int]]:
        (raw,) = self.store.read(self.ns, lambda p: p.hget(self.store.recs_key(self.ns, recs_set), user))
        return json.loads(raw) if raw else None

    def user_list_and_history(self, user: int, recs_set: str) -> tuple:
        raw, history = self.store.read(
            self.ns,
            lambda p: (p.hget(self.store.recs_key(self.ns, recs_set), user), p.smembers(self.store.history_key(user))),
        )
        return (json.loads(raw) if raw else None), {int(t) for t in history}


class Recommender:
    """One arm's rule. ``recs_set``: the recommendation set whose user lists it reads (list recommenders only)."""

    name = "?"

    def __init__(self, settings: dict, rng: Optional[random.Random] = None, recs_set: str = DEFAULT_SET):
        self.recs_set = recs_set
        self.top_k = int(settings["top_k"])
        self.history_ttl_s = int(settings["history_ttl_s"])
        self.rng = rng or random.Random()

    def recommend(self, view: View, user: int, prev_track: int, prev_time: float) -> int:
        raise NotImplementedError

    def pick(self, n: int) -> int:
        return self.rng.randrange(n)

    def random_track(self, view: View) -> int:
        return rules.random_track(view)

    def popular(self, view: View, exclude: Set[int] = frozenset()) -> Optional[int]:
        return rules.popular(view, self.pick, self.top_k, exclude)
