"""Hold and rollback on storage (the HTTP reload that follows a rollback is the CLI's).

``rollback(to=V)`` sets the hold first (so a night starting meanwhile moves nothing), then points ``LATEST``
at V (a botify restarted later serves V), then lists the version rolled away from in ``REJECTED``. A crash
between steps leaves a hold and at worst the old pointer: nothing that serves a rejected version.
"""
from __future__ import annotations

from typing import Optional

from common import serving_control
from common.paths import resolve
from common.storage import Storage, join, write_pointer

from botify.catalog import ArtifactError


def recs_root(config: dict) -> str:
    return resolve(config, config["artifacts"]["recommendations"])


def hold(config: dict, storage: Storage, version: Optional[str], reason: str) -> dict:
    root = recs_root(config)
    return serving_control.hold(storage, root, version or serving_control.pointed(storage, root), reason)


def release(config: dict, storage: Storage) -> Optional[dict]:
    return serving_control.release(storage, recs_root(config))


def rollback(config: dict, storage: Storage, to: str, reason: str = "") -> dict:
    """Serve ``to`` from now on: hold, pointer, REJECTED; returns what was done."""
    root = recs_root(config)
    if not to or "/" in to or to.startswith(".") or to.startswith("LATEST"):
        raise ArtifactError(f"invalid version name {to!r}")
    if not storage.exists(join(root, to, "_SUCCESS")):
        raise ArtifactError(f"{join(root, to)} is not a complete recommendations version (no _SUCCESS)")
    try:
        serving_control.check_not_rejected(storage, root, to)
    except serving_control.VersionRejected as exc:
        raise ArtifactError(str(exc)) from exc
    previous = serving_control.pointed(storage, root)
    why = reason or (f"rolled back from {previous}" if previous else "rollback")
    serving_control.hold(storage, root, to, why)
    write_pointer(storage, join(root, "LATEST"), to)
    if previous and previous != to:
        serving_control.reject(storage, root, previous, f"rolled back to {to}" + (f": {reason}" if reason else ""))
    return {"version": to, "rolled_back_from": previous, "held": True}
