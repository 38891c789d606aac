"""Track and user catalogs as the simulator reads them (the course simulator's file formats).

Tracks: JSON lines ``{"track", "artist", "title"}`` with ids 0..N-1 plus a
float32 N×D ``.npy`` of embeddings. Users: JSON lines ``{"user", "interests",
...}``; taste fields a user lacks take the ``default_*`` values of
``user_catalog_config``, as in the course.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

USER_DEFAULTS = {
    "interest_neighbours": 10,
    "consume_bias": 5.0,
    "consume_sharpness": 1.0,
    "session_budget": 5,
    "artist_discount_gamma": 0.8,
}


class CatalogError(ValueError):
    """A world file is malformed; the message names the file and line."""


class TrackCatalog:
    """Embeddings, artists and exact inner-product nearest neighbours (numpy; no faiss)."""

    def __init__(self, embeddings: np.ndarray, artists: Sequence[str], titles: Optional[Sequence[str]] = None,
                 cache_size: int = 200_000):
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(artists):
            raise CatalogError(
                f"embeddings shape {embeddings.shape} does not match {len(artists)} tracks in the catalog"
            )
        self.embeddings = embeddings
        self.artist_names, self.artist_of = np.unique(np.asarray(artists, dtype=object), return_inverse=True)
        self.artist_of = self.artist_of.astype(np.int64)
        self.titles = list(titles) if titles is not None else [f"Track {i}" for i in range(len(artists))]
        # Python lists make the per-step lookups in the hot loop cheap.
        self.artist_list: List[int] = self.artist_of.tolist()
        order = np.argsort(self.artist_of, kind="stable")
        bounds = np.searchsorted(self.artist_of[order], np.arange(len(self.artist_names) + 1))
        self.tracks_by_artist: List[List[int]] = [order[bounds[a] : bounds[a + 1]].tolist()
                                                 for a in range(len(self.artist_names))]
        self._nearest: Dict[int, np.ndarray] = {}
        self._cache_size = cache_size

    @classmethod
    def load(cls, meta_path: str, embeddings_path: str) -> "TrackCatalog":
        embeddings = np.load(embeddings_path, allow_pickle=False)
        rows = _read_jsonl(meta_path)
        tracks = {}
        for lineno, row in rows:
            try:
                tracks[int(row["track"])] = (str(row["artist"]), str(row.get("title", "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogError(f"{meta_path}:{lineno}: a track needs integer 'track' and 'artist' ({exc})") from exc
        if sorted(tracks) != list(range(len(tracks))):
            raise CatalogError(f"{meta_path}: track ids must be exactly 0..{len(tracks) - 1}")
        artists = [tracks[t][0] for t in range(len(tracks))]
        titles = [tracks[t][1] for t in range(len(tracks))]
        return cls(embeddings, artists, titles)

    def size(self) -> int:
        return self.embeddings.shape[0]

    def artist_name(self, track: int) -> str:
        return str(self.artist_names[self.artist_of[track]])

    def info(self, track: int) -> Dict[str, Any]:
        return {"track": int(track), "artist": self.artist_name(track), "title": self.titles[track]}

    def nearest_to_vector(self, query: np.ndarray, k: int) -> np.ndarray:
        """Ids of the ``k`` tracks with the largest inner product with ``query``, best first (ties by id)."""
        return _top_k(self.embeddings @ np.asarray(query, dtype=np.float32), k)

    def nearest(self, track: int, k: int) -> np.ndarray:
        """``nearest_to_vector`` for a track's own embedding, cached (sessions start from few interests)."""
        cached = self._nearest.get(track)
        if cached is None or cached.size < min(k, self.size()):
            cached = self.nearest_to_vector(self.embeddings[track], max(k, 64))
            if len(self._nearest) >= self._cache_size:
                self._nearest.clear()
            self._nearest[track] = cached
        return cached[:k]

    def precompute_nearest(self, tracks: Sequence[int], k: int, batch: int = 128) -> None:
        """Fill the neighbour cache for many tracks with batched matrix products (bulk generation)."""
        have = self._nearest
        todo = np.asarray(sorted({int(t) for t in tracks if int(t) not in have or have[int(t)].size < k}), dtype=np.int64)
        k = min(k, self.size())
        for start in range(0, todo.size, batch):
            ids = todo[start : start + batch]
            scores = self.embeddings[ids] @ self.embeddings.T
            # Same threshold pre-filter as _top_k, vectorised over the batch.
            n = scores.shape[1]
            sample = scores[:, :: max(1, n // 2000)]
            q = max(0, sample.shape[1] - 1 - int(4 * k * sample.shape[1] / n) - 8)
            threshold = np.partition(sample, q, axis=1)[:, q]
            rows, cols = np.nonzero(scores >= threshold[:, None])
            splits = np.searchsorted(rows, np.arange(1, ids.size))
            for row, (track, cand) in enumerate(zip(ids.tolist(), np.split(cols, splits))):
                if cand.size < k:
                    self._nearest[track] = _top_k(scores[row], k)
                    continue
                vals = scores[row, cand]
                if cand.size > k:
                    keep = np.argpartition(-vals, k - 1)[:k]
                    cand, vals = cand[keep], vals[keep]
                self._nearest[track] = cand[np.lexsort((cand, -vals))]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first, ties by index; exact.

    A full argpartition over 50,000 scores dominates session start, so first
    keep only scores above a threshold estimated from a subsample, and fall
    back to the full partition when fewer than ``k`` survive.
    """
    n = scores.size
    k = min(k, n)
    candidates = None
    if n > 20 * k:
        sample = scores[:: max(1, n // 2000)]
        q = max(0, sample.size - 1 - int(4 * k * sample.size / n) - 8)
        threshold = np.partition(sample, q)[q]
        candidates = np.flatnonzero(scores >= threshold)
        if candidates.size < k:
            candidates = None
    if candidates is None:
        candidates = np.arange(n)
    if candidates.size > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


@dataclass
class UserProfile:
    user: int
    interests: List[int]
    interest_neighbours: int
    consume_bias: float
    consume_sharpness: float
    session_budget: int
    artist_discount_gamma: float


class UserCatalog:
    def __init__(self, users: Sequence[UserProfile]):
        if not users:
            raise CatalogError("the user catalog is empty")
        self.users = list(users)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], defaults: Optional[Mapping[str, Any]] = None,
                     source: str = "users", n_tracks: Optional[int] = None) -> "UserCatalog":
        merged = dict(USER_DEFAULTS)
        merged.update({k: v for k, v in (defaults or {}).items() if k in USER_DEFAULTS})
        users = []
        for lineno, rec in enumerate(records, 1):
            users.append(_profile(rec, merged, f"{source}:{lineno}", n_tracks))
        return cls(users)

    @classmethod
    def load(cls, path: str, defaults: Optional[Mapping[str, Any]] = None, n_tracks: Optional[int] = None) -> "UserCatalog":
        users = []
        merged = dict(USER_DEFAULTS)
        merged.update({k: v for k, v in (defaults or {}).items() if k in USER_DEFAULTS})
        for lineno, rec in _read_jsonl(path):
            users.append(_profile(rec, merged, f"{path}:{lineno}", n_tracks))
        return cls(users)

    def size(self) -> int:
        return len(self.users)


def _profile(rec: Mapping[str, Any], defaults: Mapping[str, Any], where: str, n_tracks: Optional[int]) -> UserProfile:
    try:
        interests = [int(t) for t in rec["interests"]]
        profile = UserProfile(
            user=int(rec["user"]),
            interests=interests,
            interest_neighbours=int(rec.get("interest_neighbours", defaults["interest_neighbours"])),
            consume_bias=float(rec.get("consume_bias", defaults["consume_bias"])),
            consume_sharpness=float(rec.get("consume_sharpness", defaults["consume_sharpness"])),
            session_budget=int(rec.get("session_budget", defaults["session_budget"])),
            artist_discount_gamma=float(rec.get("artist_discount_gamma", defaults["artist_discount_gamma"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: a user needs 'user' and a list of 'interests' ({exc!r})") from exc
    if not interests:
        raise CatalogError(f"{where}: user {profile.user} has no interests")
    if n_tracks is not None and any(not 0 <= t < n_tracks for t in interests):
        raise CatalogError(f"{where}: user {profile.user} has an interest outside the catalog 0..{n_tracks - 1}")
    if profile.interest_neighbours < 1 or profile.session_budget < 1:
        raise CatalogError(f"{where}: interest_neighbours and session_budget must be >= 1")
    return profile


def _read_jsonl(path: str):
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
