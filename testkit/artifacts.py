"""Tiny artifacts in the exact storage contract, for tests and bench/botify.py.

The MultiDAE job writes the real ones; these are written the same way (JSON
part files, a Parquet copy, top_tracks.json, _MANIFEST.json, _SUCCESS, LATEST)
so botify's checks run against the contract, not against a shortcut.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from common.manifest import sha256, write_manifest
from common.storage import FsspecStorage, join, write_pointer


def catalog_rows(tracks: int, artists: int) -> List[dict]:
    return [{"track": t, "artist": f"artist-{t % artists}", "title": f"song {t}"} for t in range(tracks)]


def write_catalog(root: str, rows: List[dict], rel: str = "world/tracks.jsonl") -> str:
    uri = join(root, rel)
    FsspecStorage().write_bytes(uri, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return uri


def write_recommendations(
    root: str,
    version: str,
    lists: Dict[int, List[int]],
    top: List[int],
    parts: int = 2,
    latest: bool = True,
    model_version: Optional[str] = None,
    pointer: str = "LATEST",
) -> str:
    """``<root>/recommendations/<version>/``; ``latest``: move ``pointer`` (a set's pointer file) to it."""
    storage = FsspecStorage()
    base = join(root, "recommendations", version)
    users = sorted(lists)
    files, chunks = [], []
    for i in range(parts):
        rows = users[i::parts]
        data = "".join(json.dumps({"user": u, "tracks": lists[u]}) + "\n" for u in rows).encode()
        rel = f"json/part-{i:05d}.json"
        storage.write_bytes(join(base, rel), data)
        files.append(rel)
        chunks.append(data)
    table = pa.table({"user": pa.array(users, pa.int64()),
                      "tracks": pa.array([lists[u] for u in users], pa.list_(pa.int64()))})
    parquet = pa.BufferOutputStream()
    pq.write_table(table, parquet)
    storage.write_bytes(join(base, "parquet", "part-00000.parquet"), parquet.getvalue().to_pybytes())
    top_bytes = json.dumps(top).encode()
    storage.write_bytes(join(base, "top_tracks.json"), top_bytes)
    write_manifest(storage, base, {
        "model_version": model_version or version,
        "row_count": len(users),
        "json_files": sorted(files),
        "json_sha256": sha256(b"".join(chunks)),
        "top_tracks_sha256": sha256(top_bytes),
        "interactions_run": "run-test",
    })
    storage.write_bytes(join(base, "_SUCCESS"), b"")
    if latest:
        write_pointer(storage, join(root, "recommendations", pointer), version)
    return base
