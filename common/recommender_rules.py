"""The choice rules of the catalog-level recommenders, one home for botify and the simulator.

botify reads the catalog and the popular list from Redis, the simulator's
in-process policies from memory; both hand these rules a ``TrackSource`` and a
``pick(n)`` that returns a uniform index in ``[0, n)`` (botify:
``random.Random.randrange``, the simulator: ``FastUniform.below``). Given the
same data and the same picks, botify's TopPop / StickyArtist and the
simulator's ``toppop`` / ``sticky`` recommend the same tracks.
"""
from __future__ import annotations

from typing import AbstractSet, Callable, List, Optional, Protocol

Pick = Callable[[int], int]


class TrackSource(Protocol):
    def random_track(self) -> Optional[int]:
        """A uniformly random catalog track; ``None`` for an empty catalog."""

    def top_tracks(self) -> Optional[List[int]]:
        """Popular tracks, most popular first; ``None`` when none were loaded."""

    def artist_tracks(self, track: int) -> Optional[List[int]]:
        """Every track by ``track``'s artist; ``None`` for an unknown track."""


def random_track(source: TrackSource) -> int:
    track = source.random_track()
    if track is None:
        raise LookupError("the catalog has no tracks")
    return track


def popular(source: TrackSource, pick: Pick, top_k: int, exclude: AbstractSet[int] = frozenset()) -> Optional[int]:
    """A uniform pick among the ``top_k`` most popular tracks not in ``exclude``; ``None`` if there are none."""
    top = source.top_tracks()
    if not top:
        return None
    pool = [t for t in top[:top_k] if t not in exclude]
    return pool[pick(len(pool))] if pool else None


def top_pop(source: TrackSource, pick: Pick, top_k: int) -> int:
    """TopPop: a popular track; a random one when no popular list was loaded."""
    track = popular(source, pick, top_k)
    return random_track(source) if track is None else track


def sticky_artist(source: TrackSource, pick: Pick, prev_track: int) -> int:
    """StickyArtist: a random track by the artist of the track just played; a random one for an unknown track."""
    tracks = source.artist_tracks(prev_track)
    return tracks[pick(len(tracks))] if tracks else random_track(source)
