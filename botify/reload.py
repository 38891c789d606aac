"""Load artifacts from storage into a fresh Redis namespace and switch to it (serve, admin endpoint, CLI, recovery).

Every load runs under the Redis reload lock, from fetching the files to the
switch, so two workers (or a worker and ``botify reload``) never both load:
the second either gives up (``ReloadBusy``) or, for a recovery load, finds the
first one's namespace active and loads nothing.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

from common import serving_control
from common.paths import resolve
from common.storage import HDFS_FAIL_FAST, FsspecStorage

from botify.artifacts import check_coverage, load_bundle
from botify.catalog import ArtifactError, StorageUnavailable
from botify.settings import DEFAULT_SET
from botify.store import Store

log = logging.getLogger(__name__)


def _lock_s(config: dict) -> int:
    return int(config["redis"]["reload_lock_s"])


def storage() -> FsspecStorage:
    """What botify reads artifacts through: a request or the upkeep thread must not wait minutes on HDFS."""
    return FsspecStorage(HDFS_FAIL_FAST)


def _load_checked(config: dict, store: Store, versions: Optional[Dict[str, str]], force: bool) -> dict:
    try:
        bundle = load_bundle(config, storage(), versions)
    except OSError as exc:  # FileNotFoundError is handled inside: this is the storage itself failing
        raise StorageUnavailable(f"storage unreachable: {exc}") from exc
    artifacts = config["artifacts"]
    recs_root = resolve(config, artifacts["recommendations"])
    for name, recs in bundle.sets.items():
        if recs is not None:
            try:  # force never serves a rolled-back version: that is what REJECTED is for
                serving_control.check_not_rejected(storage(), recs_root, recs.version)
            except serving_control.VersionRejected as exc:
                raise ArtifactError(str(exc)) from exc
        if recs is not None and not force:
            try:
                check_coverage(recs, store.served_users(name),
                               int(artifacts["min_rows"]), float(artifacts["min_user_coverage"]))
            except ArtifactError as exc:
                raise ArtifactError(str(exc) if name == DEFAULT_SET else f"recommendation set {name}: {exc}") from exc
    return store.publish(bundle)


def reload_artifacts(config: dict, store: Store, versions: Optional[Dict[str, str]] = None, wait_s: float = 0,
                     force: bool = False) -> dict:
    """Fetch, check, publish every recommendation set; ``versions`` pins sets by name (others: as configured).

    Raises ``ArtifactError`` (nothing switched, whichever set failed) or
    ``ReloadBusy``. ``force`` skips the coverage check (an intentionally
    smaller version), never the integrity checks.
    """
    with store.reload_lock(_lock_s(config), wait_s):
        return _load_checked(config, store, versions, force)


def load_or_keep(config: dict, store: Store, versions: Optional[Dict[str, str]] = None, only_if_empty: bool = False,
                 wait_s: Optional[float] = None) -> Optional[dict]:
    """Startup / recovery load of ``versions`` (set name -> version; a set not named: the configured one).

    On a bad version keep what Redis serves, or serve the catalog alone if
    nothing is served. ``only_if_empty``: load nothing when a namespace is
    already active (another worker restored it while this one waited).
    ``wait_s`` for the lock defaults to ``redis.reload_lock_s``.
    """
    with store.reload_lock(_lock_s(config), _lock_s(config) if wait_s is None else wait_s):
        if only_if_empty and store.active() is not None:
            log.info("artifacts already restored by another loader (namespace %s)", store.active())
            return None
        try:
            return _load_checked(config, store, versions, force=False)
        except ArtifactError as exc:
            log.error("artifact load rejected: %s", exc)
            if store.active() is not None:
                log.error("keeping the namespace already served (%s)", store.active())
                return None
            bundle = load_bundle(config, storage(), with_recommendations=False)
            bundle.missing = f"artifact load rejected: {exc}"
            log.error("serving the catalog without recommendations until a good version is loaded")
            return store.publish(bundle)
