"""One worker's serving state: Redis access with degradation, experiments, the event log, upkeep.

When Redis fails, requests are answered from the in-process catalog (a random
track) for ``redis.retry_after_s`` before Redis is tried again, so a dead Redis
costs one failed call per interval rather than one per request. The upkeep
thread rotates event logs, reloads artifacts into a Redis that came back empty
(``artifacts.auto_load``), and follows catalog changes for the fallback.

A Redis restart must not change what is served: every worker remembers the
version of every recommendation set in the namespace it last saw served
(``serving``, refreshed each upkeep tick and on its own reloads) and the
recovery load restores those versions, not the configured ones. A restart of
botify itself starts again from the configuration.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from typing import Callable, Dict, Optional, Tuple

import redis

from common.event_line import event
from common.paths import resolve

from botify import metrics
from botify.catalog import ArtifactError, Catalog, StorageUnavailable, load_catalog
from botify.event_log_writer import EventLog
from botify.experiments import Experiments
from botify.recommenders import NoNamespace, TopCache, View
from botify.reload import load_or_keep, reload_artifacts, storage
from botify.settings import DEFAULT_SET, served_sets
from botify.store import NamespaceGone, ReloadBusy, Store, served_versions, set_field

log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """Redis is down or holds no active namespace: serve from the in-process catalog."""


NOT_SERVING = (Unavailable, NoNamespace, NamespaceGone)


class Service:
    redis_errors = (redis.RedisError, OSError)

    def __init__(self, config: dict, upkeep: bool = True):
        self.config = config
        self.metrics = metrics.recorder(bool(config["metrics"]["enabled"]))
        self.store = Store.from_config(config)
        self.experiments = Experiments(config)
        self.history_ttl_s = int(config["recommenders"]["history_ttl_s"])
        self.retry_after_s = float(config["redis"]["retry_after_s"])
        self.catalog: Catalog = load_catalog(storage(), resolve(config, config["artifacts"]["catalog"]))
        ev = config["event_log"]
        self.event_log = EventLog(resolve_local(ev["dir"]), ev["max_bytes"], ev["max_age_s"], self.metrics)
        self.poll_s = float(ev["poll_s"])
        self.rotate_timeout_s = max(10.0, 4 * self.poll_s)
        self.top_cache = TopCache()
        self.rng = random.Random()
        self._down_until = 0.0
        self._degraded = False
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._next_auto_load = 0.0
        self.sets = list(served_sets(config))
        # Version of each recommendation set last seen served ("" = no lists); None until a namespace was seen.
        self.serving: Optional[Dict[str, str]] = None
        try:
            active = self.store.active()
            self.serving = served_versions(self.store.meta(active), self.sets) if active else None
        except self.redis_errors:
            pass  # Redis down at start: the upkeep thread learns it later
        self._auto_load_backoff = 1.0
        self._thread = None
        if upkeep:
            self._thread = threading.Thread(target=self._upkeep, name="botify-upkeep", daemon=True)
            self._thread.start()

    # Redis with degradation
    def _redis(self, fn: Callable):
        if time.monotonic() < self._down_until:
            raise Unavailable("Redis marked down")
        try:
            result = fn()
        except self.redis_errors as exc:
            self.metrics.redis_error()
            with self._state_lock:
                self._down_until = time.monotonic() + self.retry_after_s
                if not self._degraded:
                    self._degraded = True
                    log.warning("Redis unreachable (%s): serving random tracks from the in-process catalog", exc)
            raise Unavailable(str(exc)) from exc
        if self._degraded:
            with self._state_lock:
                if self._degraded:
                    self._degraded = False
                    log.warning("Redis is back: serving from Redis again")
        return result

    def _in_namespace(self, fn: Callable[[str], object]):
        def attempt():
            # A reload may delete the namespace between reading P:active and the data: re-read and retry.
            for _ in range(3):
                ns = self.store.active()
                if ns is None:
                    raise Unavailable("no active namespace in Redis")
                try:
                    return fn(ns)
                except NamespaceGone:
                    continue
            raise Unavailable("namespace replaced repeatedly during one request")

        return self._redis(attempt)

    # requests
    def next(self, user: int, prev_track: int, played: float, start: float) -> Tuple[int, str]:
        """``(recommended track, the user's arm in the routing experiment)``."""
        treatments, recommender = self.experiments.route(user)
        arm = treatments[self.experiments.active[0]]

        def recommend():
            view = View(self.store, recommender.reads, user, prev_track, recommender.recs_set, self.history_ttl_s,
                        self.top_cache)
            return recommender.recommend(view, user, prev_track, played), view.source

        try:
            track, source = self._redis(recommend)
        except NOT_SERVING:  # NamespaceGone: the active namespace has no meta (being deleted by hand)
            track, source = self.catalog.random_track(self.rng), "degraded"
            self.metrics.degraded("/next/<user>")
        self.metrics.answer(arm, recommender.name, source)
        self._log("next", user, prev_track, played, start, track, treatments)
        return track, arm

    def last(self, user: int, prev_track: int, played: float, start: float) -> str:
        """Ends the user's session; returns their arm in the routing experiment."""
        treatments = self.experiments.treatments(user)
        try:
            self._redis(lambda: self.store.forget_session(user))
        except Unavailable:
            self.metrics.degraded("/last/<user>")  # the history set expires by its TTL
        self._log("last", user, prev_track, played, start, None, treatments)
        return treatments[self.experiments.active[0]]

    def track(self, track: int) -> Optional[dict]:
        try:
            raw = self._in_namespace(
                lambda ns: self.store.read(ns, lambda p: p.hget(self.store.key(ns, "track"), track))[0])
            return json.loads(raw) if raw else None
        except Unavailable:
            self.metrics.degraded("/track/<id>")
            return self.catalog.get(track)

    def health(self) -> dict:
        try:
            ns = self._redis(self.store.active)
            meta = self._redis(lambda: self.store.meta(ns)) if ns else {}
            health = {"redis": "ok", "namespace": ns, "recommendations": meta.get("recommendations") or None,
                      "model_version": meta.get("model_version") or None}
            named = [s for s in self.sets if s != DEFAULT_SET]
            if named:
                health["sets"] = {s: meta.get(set_field("recommendations", s)) or None for s in named}
            return health
        except Unavailable as exc:
            return {"redis": f"unavailable ({exc})", "namespace": None}

    def readiness(self) -> Tuple[bool, dict]:
        """``(ready, detail)``: Redis answers, an active namespace holds the catalog, every served set is loaded.

        A set with no lists ("") is loaded when its pointer did not exist at load
        time (no model yet); a load that was rejected and fell back to the catalog
        alone (``missing`` in the namespace's meta) is not ready.
        """
        try:
            ns = self._redis(self.store.active)
            meta = self._redis(lambda: self.store.meta(ns)) if ns else {}
        except Unavailable as exc:
            return False, {"error": f"not ready: Redis unavailable ({exc})"}
        if not ns or not meta:
            return False, {"error": "not ready: Redis holds no active artifacts (loading, or none could be loaded)"}
        if meta.get("missing"):
            return False, {"error": f"not ready: serving the catalog alone, {meta['missing']}", "namespace": ns}
        versions = served_versions(meta, self.sets)
        for name in self.sets:
            if name not in versions:
                return False, {"error": f"not ready: recommendation set {name} is not loaded", "namespace": ns}
        if not len(self.catalog):
            return False, {"error": "not ready: this worker's catalog is empty", "namespace": ns}
        return True, {"status": "ready", "namespace": ns, "sets": versions}

    def reload(self, versions: Optional[Dict[str, str]] = None, force: bool = False) -> dict:
        try:
            result = reload_artifacts(self.config, self.store, versions, force=force)
        except StorageUnavailable:
            self.metrics.reload("admin", "storage_unavailable")
            raise
        except ArtifactError:
            self.metrics.reload("admin", "rejected")
            raise
        except ReloadBusy:
            self.metrics.reload("admin", "busy")
            raise
        except self.redis_errors:
            self.metrics.reload("admin", "redis_error")
            raise
        self.metrics.reload("admin", "loaded")
        self.serving = served_versions(result, self.sets)
        return result

    def _log(self, message, user, track, played, start, recommendation, treatments) -> None:
        self.event_log.write(event(message, int(time.time() * 1000), user, track, played,
                                   time.perf_counter() - start, recommendation, treatments))

    # upkeep
    def _upkeep(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.event_log.tick()
                self._check_artifacts()
            except Exception:  # the thread must survive anything one tick does
                log.exception("upkeep tick failed")

    def _check_artifacts(self) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            ns = self._redis(self.store.active)
        except Unavailable:
            return
        if ns is None:
            if self.config["artifacts"]["auto_load"] and time.monotonic() >= self._next_auto_load:
                self._auto_load()
            return
        meta = self._redis(lambda: self.store.meta(ns))
        if "recommendations" in meta:
            self.serving = served_versions(meta, self.sets)
        if meta.get("catalog_sha256") and meta["catalog_sha256"] != self.catalog.sha256:
            self.catalog = load_catalog(storage(), meta["catalog_uri"])
            log.info("fallback catalog follows namespace %s (%d tracks)", ns, len(self.catalog))

    def _auto_load(self) -> None:
        # A set that served no lists ("") is loaded as configured: its first version may have appeared since.
        pinned = {s: v for s, v in (self.serving or {}).items() if v}
        served = ", ".join(v if s == DEFAULT_SET else f"set {s} {v}" for s, v in pinned.items())
        log.warning("Redis has no active artifacts (restarted or flushed?): loading %s",
                    f"recommendations {served}, the version{'s' if len(pinned) > 1 else ''} served before"
                    if pinned else "the configured artifacts")
        try:
            result = load_or_keep(self.config, self.store, pinned, only_if_empty=True, wait_s=0)
            self.metrics.reload("recovery", load_outcome(result))
            if result is not None:
                self.serving = served_versions(result, self.sets)
            self._auto_load_backoff = 1.0
        except ReloadBusy:
            self.metrics.reload("recovery", "busy")  # another worker is loading
        except Exception as exc:
            self.metrics.reload("recovery", "redis_error" if isinstance(exc, self.redis_errors) else "rejected")
            log.error("automatic artifact load failed: %s", exc)
            self._auto_load_backoff = min(60.0, self._auto_load_backoff * 2)
        self._next_auto_load = time.monotonic() + self._auto_load_backoff

    def close(self) -> None:
        """Stop upkeep and complete this process's event log file (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.event_log.close()
        self.store.r.close()


def load_outcome(result: Optional[dict]) -> str:
    """What a ``load_or_keep`` came to: ``not_needed`` (another loader restored it / a rejected version left the
    previous one serving: ``only_if_empty`` tells which), ``rejected`` (the catalog alone), or ``loaded``."""
    if result is None:
        return "not_needed"
    return "rejected" if result.get("missing") else "loaded"


def resolve_local(path: str) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))

