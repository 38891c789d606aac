"""What botify keeps in Redis, and how a new artifact version replaces the old one.

Layout (``P`` is ``redis.prefix``)::

    P:active                  id of the namespace being served
    P:ns:<id>:meta            hash: what was loaded (versions, checksums, when); written last, deleted first
    P:ns:<id>:track           hash track -> JSON {"track", "artist", "title"}
    P:ns:<id>:artist_of       hash track -> artist
    P:ns:<id>:by_artist       hash artist -> JSON list of tracks
    P:ns:<id>:ids             set of track ids
    P:ns:<id>:recs            hash user -> JSON list of 50 tracks, best first
    P:ns:<id>:top             JSON list of popular tracks (absent when there are none)
    P:history:<user>          set of tracks recommended in the current session (TTL; cleared at /last)

A load writes a fresh namespace, then switches ``P:active`` with one ``SET``
and deletes the previous namespace ``meta`` first. Readers run their reads in
a ``MULTI`` together with ``EXISTS meta``, so a read either sees a complete
namespace or learns it is gone and re-reads ``P:active``. Only JSON and native
Redis types are stored; nothing is ever unpickled.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from typing import Iterator, List, Optional

import redis

from botify.artifacts import Bundle

log = logging.getLogger(__name__)

BATCH = 5000


class NamespaceGone(RuntimeError):
    """The namespace a request started with was replaced while it read."""


class ReloadBusy(RuntimeError):
    """Another load holds the reload lock."""


class Store:
    def __init__(self, client: redis.Redis, prefix: str = "botify"):
        self.r = client
        self.prefix = prefix

    @classmethod
    def from_config(cls, config: dict) -> "Store":
        rc = config["redis"]
        client = redis.Redis.from_url(
            rc["url"],
            socket_timeout=float(rc["socket_timeout_s"]),
            socket_connect_timeout=float(rc["socket_timeout_s"]),
            decode_responses=True,
        )
        return cls(client, rc["prefix"])

    # keys
    @property
    def active_key(self) -> str:
        return f"{self.prefix}:active"

    def key(self, ns: str, name: str) -> str:
        return f"{self.prefix}:ns:{ns}:{name}"

    def history_key(self, user: int) -> str:
        return f"{self.prefix}:history:{user}"

    # reads
    def active(self) -> Optional[str]:
        return self.r.get(self.active_key)

    def read(self, ns: str, build) -> list:
        """Run ``build(pipe)``'s reads atomically with a check that ``ns`` still exists."""
        pipe = self.r.pipeline(transaction=True)
        pipe.exists(self.key(ns, "meta"))
        build(pipe)
        results = pipe.execute()
        if not results[0]:
            raise NamespaceGone(ns)
        return results[1:]

    def meta(self, ns: str) -> dict:
        return self.r.hgetall(self.key(ns, "meta"))

    # session history
    def remember(self, user: int, track: int, ttl_s: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(self.history_key(user), track)
        pipe.expire(self.history_key(user), ttl_s)
        pipe.execute()

    def forget_session(self, user: int) -> None:
        self.r.delete(self.history_key(user))

    # loads
    @contextlib.contextmanager
    def reload_lock(self, lock_s: int, wait_s: float = 0) -> Iterator[None]:
        """One artifact load at a time across workers and hosts (``SET NX`` with an expiry, redis-py's Lock).

        Held around the whole fetch-check-publish, so a second loader that
        waited for it sees what the first one published.
        """
        lock = self.r.lock(f"{self.prefix}:reload_lock", timeout=lock_s, blocking_timeout=wait_s)
        if not lock.acquire():
            raise ReloadBusy("another artifact load is in progress")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("the reload lock expired before the load finished (raise redis.reload_lock_s)")

    def publish(self, bundle: Bundle) -> dict:
        """Write ``bundle`` into a new namespace, make it active, delete the previous one (hold ``reload_lock``)."""
        ns = str(self.r.incr(f"{self.prefix}:ns_counter"))
        try:
            meta = self._write(ns, bundle)
        except BaseException:
            self.drop(ns)
            raise
        previous = self.r.getset(self.active_key, ns)
        self._collect_garbage(keep=ns)
        log.info("serving namespace %s (%s); previous %s deleted", ns, _describe(meta), previous)
        return {"namespace": ns, "previous": previous, **meta}

    def served_users(self) -> Optional[int]:
        """How many users have a list in the namespace served now (``None``: nothing served)."""
        ns = self.active()
        users = self.meta(ns).get("users") if ns else None
        return int(users) if users else None

    def _write(self, ns: str, bundle: Bundle) -> dict:
        catalog, recs = bundle.catalog, bundle.recommendations
        pipe = self.r.pipeline(transaction=False)
        pending = 0

        def flush_if_full():
            nonlocal pending
            pending += 1
            if pending >= BATCH:
                pipe.execute()
                pending = 0

        for track, info in catalog.tracks.items():
            pipe.hset(self.key(ns, "track"), track, json.dumps(info))
            pipe.hset(self.key(ns, "artist_of"), track, info["artist"])
            flush_if_full()
        for artist, tracks in catalog.by_artist.items():
            pipe.hset(self.key(ns, "by_artist"), artist, json.dumps(tracks))
            flush_if_full()
        ids = catalog.ids
        for i in range(0, len(ids), BATCH):
            pipe.sadd(self.key(ns, "ids"), *ids[i : i + BATCH])
            flush_if_full()
        if recs is not None:
            for user, tracks in recs.lists.items():
                pipe.hset(self.key(ns, "recs"), user, json.dumps(tracks))
                flush_if_full()
        if bundle.top_tracks:
            pipe.set(self.key(ns, "top"), json.dumps(bundle.top_tracks))
        pipe.execute()
        meta = {
            "loaded_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "catalog_uri": catalog.uri,
            "catalog_sha256": catalog.sha256,
            "tracks": str(len(catalog)),
            "recommendations": recs.version if recs else "",
            "model_version": str(recs.manifest.get("model_version", "")) if recs else "",
            "users": str(len(recs.lists)) if recs else "0",
            "top_tracks": str(len(bundle.top_tracks or [])),
            "top_tracks_source": bundle.top_tracks_source or "",
        }
        self.r.hset(self.key(ns, "meta"), mapping=meta)
        return meta

    def drop(self, ns: str) -> None:
        # meta first: from then on every reader of ns sees NamespaceGone instead of half a namespace.
        self.r.delete(self.key(ns, "meta"))
        names = ("track", "artist_of", "by_artist", "ids", "recs", "top")
        self.r.unlink(*[self.key(ns, n) for n in names])

    def _collect_garbage(self, keep: str) -> None:
        """Delete every namespace but ``keep`` (the previous one and any left by a crashed load)."""
        stale = set()
        for key in self.r.scan_iter(match=f"{self.prefix}:ns:*", count=1000):
            ns = key[len(f"{self.prefix}:ns:") :].split(":", 1)[0]
            if ns != keep:
                stale.add(ns)
        for ns in sorted(stale):
            self.drop(ns)

    def namespaces(self) -> List[str]:
        found = set()
        for key in self.r.scan_iter(match=f"{self.prefix}:ns:*", count=1000):
            found.add(key[len(f"{self.prefix}:ns:") :].split(":", 1)[0])
        return sorted(found)


def _describe(meta: dict) -> str:
    recs = meta["recommendations"] or "no recommendations"
    return f"{meta['tracks']} tracks, {recs}, {meta['users']} users, {meta['top_tracks']} top tracks"
