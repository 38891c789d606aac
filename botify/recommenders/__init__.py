"""Recommenders, one module each; experiments pick them by name (``conf/botify.yml``)."""
from __future__ import annotations

from botify.recommenders.base import NoNamespace, Recommender, TopCache, View
from botify.recommenders.indexed import Indexed
from botify.recommenders.random_track import Random
from botify.recommenders.ranked import Ranked
from botify.recommenders.sticky_artist import StickyArtist
from botify.recommenders.top_pop import TopPop
from botify.settings import DEFAULT_SET

REGISTRY = {cls.name: cls for cls in (Random, TopPop, StickyArtist, Indexed, Ranked)}


def build(name: str, settings: dict, recs_set: str = DEFAULT_SET) -> Recommender:
    return REGISTRY[name](settings, recs_set=recs_set)


__all__ = ["REGISTRY", "NoNamespace", "Recommender", "TopCache", "View", "build"]
