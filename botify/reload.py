"""Load artifacts from storage into a fresh Redis namespace and switch to it (serve, admin endpoint, CLI)."""
from __future__ import annotations

import logging
from typing import Optional

from common.storage import FsspecStorage

from botify.artifacts import load_bundle
from botify.store import Store

log = logging.getLogger(__name__)


def reload_artifacts(config: dict, store: Store, version: Optional[str] = None, wait_s: float = 0) -> dict:
    """Fetch, check, publish. Raises ``ArtifactError`` (nothing switched) or ``ReloadBusy``."""
    bundle = load_bundle(config, FsspecStorage(), version)
    return store.publish(bundle, lock_s=int(config["redis"]["reload_lock_s"]), blocking_timeout=wait_s)
