"""What an operator decides about serving, kept on storage beside the versions so that jobs, botify and the
nightly all see it: a **hold** (``recommendations/HOLD``) and the **rejected** versions
(``recommendations/REJECTED``).

While a hold is set no job moves a ``LATEST*`` pointer (the version is still written, for inspection) and the
nightly reloads nothing; ``botify rollback`` sets one. A rejected version is one rolled away from: no job
points at it and no reload serves it again. Both files are small JSON documents replaced atomically.
"""
from __future__ import annotations

import json
from typing import Dict, Optional

from common.manifest import now_iso
from common.storage import Storage, join, read_pointer, write_pointer

HOLD = "HOLD"
REJECTED = "REJECTED"


class VersionRejected(ValueError):
    """A version listed in recommendations/REJECTED was asked to be served or pointed at."""


def held(storage: Storage, recs_root: str) -> Optional[dict]:
    """The hold ({"version", "reason", "since"}), or None."""
    uri = join(recs_root, HOLD)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def hold(storage: Storage, recs_root: str, version: Optional[str], reason: str) -> dict:
    marker = {"version": version, "reason": reason, "since": now_iso()}
    storage.write_atomically(join(recs_root, HOLD), (json.dumps(marker, sort_keys=True) + "\n").encode())
    return marker


def release(storage: Storage, recs_root: str) -> Optional[dict]:
    """Lift the hold; returns the hold lifted (None: there was none)."""
    marker = held(storage, recs_root)
    if marker is not None:
        storage.delete(join(recs_root, HOLD))
    return marker


def rejected(storage: Storage, recs_root: str) -> Dict[str, dict]:
    """Rejected versions: version -> {"at", "reason"}."""
    uri = join(recs_root, REJECTED)
    return json.loads(storage.read_text(uri))["versions"] if storage.exists(uri) else {}


def reject(storage: Storage, recs_root: str, version: str, reason: str) -> None:
    versions = {**rejected(storage, recs_root), version: {"at": now_iso(), "reason": reason}}
    storage.write_atomically(join(recs_root, REJECTED),
                             (json.dumps({"versions": versions}, indent=2, sort_keys=True) + "\n").encode())


def check_not_rejected(storage: Storage, recs_root: str, version: str) -> None:
    found = rejected(storage, recs_root).get(version)
    if found is not None:
        raise VersionRejected(f"version {version} was rejected on {found['at']} ({found['reason']}); "
                              f"it is listed in {join(recs_root, REJECTED)} and is never served again")


def move_pointer(storage: Storage, recs_root: str, pointer: str, version: str) -> bool:
    """Point ``pointer`` at ``version`` unless a hold is set (returns False then); a rejected version refused."""
    check_not_rejected(storage, recs_root, version)
    if held(storage, recs_root) is not None:
        return False
    write_pointer(storage, join(recs_root, pointer), version)
    return True


def pointed(storage: Storage, recs_root: str, pointer: str = "LATEST") -> Optional[str]:
    uri = join(recs_root, pointer)
    return read_pointer(storage, uri) if storage.exists(uri) else None
