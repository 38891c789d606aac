"""Fetch what botify serves from storage and check it before anything is switched.

Recommendations follow the storage contract (docs/design.md):
``<root>/recommendations/<version>/`` with ``json/part-*.json``,
``top_tracks.json``, ``_MANIFEST.json`` and ``_SUCCESS``; ``LATEST`` names the
current version. botify may serve several recommendation sets at once (e.g.
the MultiDAE's and the ALS's lists, ``botify.settings.served_sets``),
each a version in that directory named by its own pointer (``LATEST``,
``LATEST-als``); a bundle holds every set, and a load with one bad set is
rejected as a whole. A version is accepted only when ``_SUCCESS`` exists, the JSON
part files hash to the manifest's ``json_sha256``, the row count matches,
``top_tracks.json`` hashes to ``top_tracks_sha256``, and every row is a user
with 50 distinct tracks that are all in the catalog. A reload also checks
coverage (``check_coverage``): a consistent but empty or much smaller version
is refused unless forced. A version's part files together may hold at most
``artifacts.max_bytes``: they are read up to that many bytes and no further,
so an oversized version is refused before it is in memory.
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Dict, List, Optional

import fsspec.core

from common.manifest import MANIFEST, read_manifest, sha256
from common.paths import resolve
from common.storage import SUCCESS, Storage, join, read_pointer

from botify.catalog import ArtifactError, Catalog, load_catalog
from botify.settings import DEFAULT_SET, served_sets

log = logging.getLogger(__name__)

LIST_LENGTH = 50


@dataclass
class Recommendations:
    version: str
    uri: str
    manifest: dict
    lists: Dict[int, List[int]]
    top_tracks: List[int]


@dataclass
class Bundle:
    """Everything one Redis namespace holds: the catalog, every recommendation set found, the popular list.

    ``sets`` maps every configured set name to its version, or to ``None``
    when the set has no version yet (no pointer): its users get Ranked's
    popular fallback.
    """

    catalog: Catalog
    sets: Dict[str, Optional[Recommendations]]
    top_tracks: Optional[List[int]]
    top_tracks_source: Optional[str]
    # Why the sets have no lists when a rejected load fell back to the catalog alone (readiness reports it).
    missing: Optional[str] = None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_version_name(version: str) -> bool:
    return bool(version) and "/" not in version and not version.startswith((".", "_"))


def parse_top_tracks(data: bytes, where: str, catalog: Catalog) -> List[int]:
    try:
        top = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(top, list) or not all(_is_int(t) for t in top):
        raise ArtifactError(f"{where}: must be a JSON list of track ids")
    unknown = [t for t in top if t not in catalog.tracks]
    if unknown:
        raise ArtifactError(f"{where}: {len(unknown)} track ids not in the catalog (first: {unknown[0]})")
    return top


def parse_lists(data: bytes, files: List[str], catalog: Catalog) -> Dict[int, List[int]]:
    lists: Dict[int, List[int]] = {}
    # Line numbers are reported per file so an error names the exact place.
    for name, chunk in _split_by_file(data, files):
        for lineno, raw in enumerate(chunk.splitlines(), start=1):
            if not raw.strip():
                continue
            where = f"{name}:{lineno}"
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ArtifactError(f"{where}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict) or not _is_int(row.get("user")) or row["user"] < 0:
                raise ArtifactError(f"{where}: expected {{\"user\": int, \"tracks\": [...]}}")
            tracks = row.get("tracks")
            if not isinstance(tracks, list) or not all(_is_int(t) for t in tracks):
                raise ArtifactError(f"{where}: 'tracks' must be a list of track ids")
            if len(tracks) != LIST_LENGTH or len(set(tracks)) != LIST_LENGTH:
                raise ArtifactError(
                    f"{where}: user {row['user']} has {len(tracks)} tracks ({len(set(tracks))} distinct), "
                    f"expected {LIST_LENGTH} distinct"
                )
            unknown = [t for t in tracks if t not in catalog.tracks]
            if unknown:
                raise ArtifactError(f"{where}: track {unknown[0]} is not in the catalog {catalog.uri}")
            if row["user"] in lists:
                raise ArtifactError(f"{where}: user {row['user']} appears twice")
            lists[row["user"]] = tracks
    return lists


def _split_by_file(data: bytes, files: List[tuple]):
    offset = 0
    for name, size in files:
        yield name, data[offset : offset + size]
        offset += size


def latest_version(storage: Storage, recs_root: str, pointer_name: str = "LATEST") -> Optional[str]:
    pointer = join(recs_root, pointer_name)
    if not storage.exists(pointer):
        return None
    try:
        return read_pointer(storage, pointer)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc


def _describe_value(value) -> str:
    kinds = {str: "the string", bool: "the boolean", float: "the number", list: "a list", dict: "an object"}
    return "null" if value is None else f"{kinds.get(type(value), type(value).__name__)} {json.dumps(value)[:80]}"


def check_manifest_fields(manifest: dict, where: str) -> None:
    """Every field botify relies on, with its type, so a wrong type is named as such (not as a count mismatch)."""
    rules = {
        "row_count": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        "json_files": (lambda v: isinstance(v, list) and v and all(isinstance(f, str) for f in v),
                       "a non-empty list of paths"),
        "json_sha256": (lambda v: isinstance(v, str), "a string (hex SHA-256)"),
        "top_tracks_sha256": (lambda v: isinstance(v, str), "a string (hex SHA-256)"),
    }
    for key, (ok, expected) in rules.items():
        if key not in manifest:
            raise ArtifactError(f"{where}: missing field {key!r}")
        if not ok(manifest[key]):
            raise ArtifactError(f"{where}: {key!r} must be {expected}, got {_describe_value(manifest[key])}")


def check_coverage(recs: Recommendations, previous_users: Optional[int], min_rows: int, min_coverage: float) -> None:
    """Refuse a version that would take most users' lists away (an empty or truncated model output).

    A manifest only proves the files are what the job wrote, not that the job
    wrote enough: ``min_rows`` users at least, and ``min_coverage`` of the users
    of the version served now.
    """
    rows = len(recs.lists)
    if rows < min_rows:
        raise ArtifactError(f"{recs.uri}: {rows} users, fewer than artifacts.min_rows={min_rows} "
                            "(reload with force to accept it)")
    if previous_users and rows < min_coverage * previous_users:
        raise ArtifactError(
            f"{recs.uri}: {rows} users, under artifacts.min_user_coverage={min_coverage:g} of the "
            f"{previous_users} users served now (reload with force to accept it)"
        )


def _read_capped(uri: str, budget: int) -> bytes:
    """``uri``'s bytes, but never more than ``budget + 1`` of them (more: the caller refuses the version)."""
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as fh:
        return fh.read(budget + 1)


def load_recommendations(storage: Storage, recs_root: str, version: str, catalog: Catalog,
                         max_bytes: int) -> Recommendations:
    if not valid_version_name(version):
        raise ArtifactError(f"invalid recommendations version name {version!r}")
    uri = join(recs_root, version)
    if not storage.exists(uri):
        raise ArtifactError(f"recommendations version {version!r} not found at {uri}")
    if not storage.exists(join(uri, SUCCESS)):
        raise ArtifactError(f"{uri}: no {SUCCESS} marker (incomplete output)")
    try:
        manifest = read_manifest(storage, uri)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{uri}: no {MANIFEST}") from exc
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    check_manifest_fields(manifest, join(uri, MANIFEST))
    files = manifest["json_files"]

    parts, sized, budget = [], [], max_bytes
    for rel in files:
        if posixpath.isabs(rel) or ".." in rel.split("/"):
            raise ArtifactError(f"{join(uri, MANIFEST)}: json file {rel!r} is outside the version directory")
        part_uri = join(uri, rel)
        try:
            chunk = _read_capped(part_uri, budget)
        except FileNotFoundError as exc:
            raise ArtifactError(f"{part_uri}: listed in the manifest but missing") from exc
        if len(chunk) > budget:
            raise ArtifactError(f"{uri}: json part files hold more than artifacts.max_bytes={max_bytes} bytes "
                                f"(over the limit at {rel}); refused without reading further")
        budget -= len(chunk)
        parts.append(chunk)
        sized.append((part_uri, len(chunk)))
    data = b"".join(parts)
    actual = sha256(data)
    if actual != manifest["json_sha256"]:
        raise ArtifactError(
            f"{uri}: json part files do not match the manifest checksum "
            f"(json_sha256 {manifest['json_sha256']}, actual {actual})"
        )
    lists = parse_lists(data, sized, catalog)
    if len(lists) != manifest["row_count"]:
        raise ArtifactError(f"{uri}: {len(lists)} rows but the manifest says row_count={manifest['row_count']}")

    top_uri = join(uri, "top_tracks.json")
    try:
        top_bytes = _read_capped(top_uri, budget)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{top_uri}: missing") from exc
    if len(top_bytes) > budget:
        raise ArtifactError(f"{uri}: json part files and top_tracks.json hold more than "
                            f"artifacts.max_bytes={max_bytes} bytes; refused without reading further")
    if sha256(top_bytes) != manifest["top_tracks_sha256"]:
        raise ArtifactError(f"{top_uri}: does not match the manifest's top_tracks_sha256")
    top = parse_top_tracks(top_bytes, top_uri, catalog)
    return Recommendations(version=version, uri=uri, manifest=manifest, lists=lists, top_tracks=top)


def interactions_top_tracks(storage: Storage, root: str, catalog: Catalog) -> Optional[tuple]:
    """Top tracks of the latest interactions run, for TopPop before any model exists."""
    version = latest_version(storage, root)
    if version is None:
        return None
    run = join(root, version)
    top_uri = join(run, "top_tracks.json")
    if not storage.exists(join(run, SUCCESS)) or not storage.exists(top_uri):
        return None
    return parse_top_tracks(storage.read_bytes(top_uri), top_uri, catalog), top_uri


def _load_set(storage: Storage, recs_root: str, name: str, spec: dict, wanted: Optional[str],
              catalog: Catalog, max_bytes: int) -> Optional[Recommendations]:
    """Set ``name`` at ``wanted`` (``None``: its configured version; ``latest`` follows its pointer)."""
    wanted = wanted or spec["version"]
    if wanted == "latest":
        wanted = latest_version(storage, recs_root, spec["pointer"])
        if wanted is None:
            log.info("no %s yet: recommendation set %s has no lists", join(recs_root, spec["pointer"]), name)
            return None
    try:
        return load_recommendations(storage, recs_root, wanted, catalog, max_bytes)
    except ArtifactError as exc:
        raise ArtifactError(f"recommendation set {name}: {exc}" if name != DEFAULT_SET else str(exc)) from exc


def load_bundle(
    config: dict, storage: Storage, versions: Optional[Dict[str, str]] = None, with_recommendations: bool = True
) -> Bundle:
    """Read and check the catalog and every recommendation set; ``versions`` pins sets by name
    (a set not named there: what config says).

    With ``latest`` and no pointer yet a set has no lists (the catalog is
    enough for Random and StickyArtist); a named version that is missing or
    fails a check is an ``ArtifactError`` for the whole bundle.
    """
    artifacts, versions, served = config["artifacts"], versions or {}, served_sets(config)
    unknown = sorted(set(versions) - set(served))
    if unknown:
        raise ArtifactError(f"no recommendation set {unknown[0]!r} is served (serving: {', '.join(served)})")
    catalog = load_catalog(storage, resolve(config, artifacts["catalog"]))
    recs_root = resolve(config, artifacts["recommendations"])
    sets: Dict[str, Optional[Recommendations]] = {}
    for name, spec in served.items():
        sets[name] = (_load_set(storage, recs_root, name, spec, versions.get(name), catalog,
                                int(artifacts["max_bytes"])) if with_recommendations else None)
    # The popular list comes with the lists (the default set's first): it is their interactions run's.
    loaded = [recs for recs in sets.values() if recs is not None]
    if loaded:
        return Bundle(catalog, sets, loaded[0].top_tracks, join(loaded[0].uri, "top_tracks.json"))
    found = interactions_top_tracks(storage, resolve(config, artifacts["interactions"]), catalog)
    if found is None:
        log.warning("no top tracks available (no recommendations, no interactions run): TopPop will serve Random")
        return Bundle(catalog, sets, None, None)
    return Bundle(catalog, sets, found[0], found[1])
