"""``_MANIFEST.json``: what an output is, how many rows, a checksum, when it was made.

Consumers (botify's reload, the next job) check an output against its manifest
before trusting it, so a truncated or hand-edited artifact is rejected.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Dict

from common.storage import Storage, join

MANIFEST = "_MANIFEST.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def write_manifest(storage: Storage, dir_uri: str, fields: Dict[str, Any]) -> Dict[str, Any]:
    manifest = {"created_at": now_iso(), **fields}
    storage.write_bytes(join(dir_uri, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(storage: Storage, dir_uri: str) -> Dict[str, Any]:
    uri = join(dir_uri, MANIFEST)
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{uri}: manifest must be a JSON object")
    return manifest
