"""The tracks catalog (JSON lines ``{"track", "artist", "title"}``), parsed and checked.

Each worker keeps one in memory: it answers ``/next`` with a random track and
``/track`` when Redis is unreachable.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from common.manifest import sha256
from common.storage import Storage


class ArtifactError(ValueError):
    """An artifact is missing, malformed or fails its manifest check; nothing was switched."""


class StorageUnavailable(ArtifactError):
    """The storage root could not be reached (a NameNode down, say); nothing was switched."""


@dataclass
class Catalog:
    uri: str
    sha256: str
    tracks: Dict[int, dict]
    by_artist: Dict[str, List[int]]
    ids: List[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track: int) -> bool:
        return track in self.tracks

    def random_track(self, rng: Optional[random.Random] = None) -> int:
        return (rng or random).choice(self.ids)

    def get(self, track: int) -> Optional[dict]:
        return self.tracks.get(track)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_catalog(data: bytes, uri: str) -> Catalog:
    tracks: Dict[int, dict] = {}
    by_artist: Dict[str, List[int]] = {}
    for lineno, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{uri}:{lineno}"
        try:
            row = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise ArtifactError(f"{where}: expected a JSON object")
        track, artist, title = row.get("track"), row.get("artist"), row.get("title")
        if not _is_int(track) or track < 0:
            raise ArtifactError(f"{where}: field 'track' must be a non-negative integer, got {track!r}")
        if not isinstance(artist, str):
            raise ArtifactError(f"{where}: field 'artist' must be a string, got {artist!r}")
        if not isinstance(title, str):
            raise ArtifactError(f"{where}: field 'title' must be a string, got {title!r}")
        if track in tracks:
            raise ArtifactError(f"{where}: track {track} appears twice")
        tracks[track] = {"track": track, "artist": artist, "title": title}
        by_artist.setdefault(artist, []).append(track)
    if not tracks:
        raise ArtifactError(f"{uri}: the catalog has no tracks")
    return Catalog(uri=uri, sha256=sha256(data), tracks=tracks, by_artist=by_artist, ids=sorted(tracks))


def load_catalog(storage: Storage, uri: str) -> Catalog:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise ArtifactError(f"tracks catalog not found at {uri}") from exc
    except OSError as exc:  # the storage itself failing (a NameNode down), not a bad artifact
        raise StorageUnavailable(f"storage unreachable: cannot read the tracks catalog at {uri}: {exc}") from exc
    return parse_catalog(data, uri)
