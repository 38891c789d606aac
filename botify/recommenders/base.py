"""What a recommender sees: one request's view of the active namespace, read in one Redis round trip."""
from __future__ import annotations

import json
import logging
import random
from typing import List, Optional, Set, Tuple

from common import recommender_rules as rules

from botify.settings import DEFAULT_SET
from botify.store import ARTIST, LIST, RANDOM, TOP, Store

log = logging.getLogger(__name__)


class View:
    """One request's reads of the active namespace, fetched in one Redis round trip (``Store.read_request``).

    It is the Redis ``common.recommender_rules.TrackSource`` the shared choice rules
    read. It holds only what its recommender's ``reads`` asked for: asking for
    anything else is a bug and raises. ``source`` names what the answer came
    from (the metrics' ``source`` label): the rules try the user's list, the
    artist or the popular list first and a random track last, so the last
    thing read is what answered.
    """

    def __init__(self, store: Store, reads: str, user: int, track: int, recs_set: str, ttl_s: int,
                 top_cache: "TopCache"):
        cached_ns, cached_top = top_cache.entry
        reply = store.read_request(reads, user, track, recs_set, ttl_s, cached_ns)
        if reply is None:
            raise NoNamespace("no active namespace in Redis")
        self.store, self.reads, self.track = store, reads, track
        self.ns, taken, self._random, top, self._artist, self._list, history = reply
        self.taken = None if taken is None else int(taken)
        self.source = "list" if self.taken is not None else "random"
        self.history: Set[int] = {int(t) for t in history or ()}
        self._top = cached_top
        if TOP in reads and self.ns != cached_ns and self.taken is None:  # after a TAKE nothing else is read
            self._top = json.loads(top) if top else None
            top_cache.entry = (self.ns, self._top)
            if not top:
                log.warning("namespace %s has no top tracks: popular picks fall back to Random", self.ns)

    def _check(self, flag: str) -> None:
        if flag not in self.reads:
            raise AssertionError(f"a recommender read {flag!r} without declaring it in its reads ({self.reads!r})")

    def random_track(self) -> Optional[int]:
        self._check(RANDOM)
        self.source = "random"
        return None if self._random is None else int(self._random)

    def top_tracks(self) -> Optional[List[int]]:
        self._check(TOP)
        self.source = "popular"
        return self._top

    def artist_tracks(self, track: int) -> Optional[List[int]]:
        self._check(ARTIST)
        if track != self.track:
            raise AssertionError(f"the view holds the artist of track {self.track}, not {track}")
        self.source = "artist"
        return json.loads(self._artist) if self._artist else None

    def user_list(self) -> Optional[List[int]]:
        self._check(LIST)
        self.source = "list"
        return json.loads(self._list) if self._list else None


class TopCache:
    """The top list of the namespace last seen: a namespace never changes once written, so it is read once.

    ``entry`` is replaced in one assignment, so concurrent requests see an old or a new pair, never a mix."""

    def __init__(self):
        self.entry: Tuple[str, Optional[List[int]]] = ("", None)


class NoNamespace(RuntimeError):
    """Redis holds no active namespace (empty, or restarted): serve from the in-process catalog."""


class Recommender:
    """One arm's rule. ``recs_set``: the recommendation set whose user lists it reads (list recommenders only)."""

    name = "?"
    reads = RANDOM  # what View fetches for it (botify.store flags)

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
