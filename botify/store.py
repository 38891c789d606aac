"""What botify keeps in Redis, and how a new artifact version replaces the old one.

Layout (``P`` is ``redis.prefix``)::

    P:active                  id of the namespace being served
    P:ns:<id>:meta            hash: what was loaded (versions, checksums, when); written last, deleted first
    P:ns:<id>:track           hash track -> JSON {"track", "artist", "title"}
    P:ns:<id>:artist_of       hash track -> artist
    P:ns:<id>:by_artist       hash artist -> JSON list of tracks
    P:ns:<id>:ids             set of track ids
    P:ns:<id>:recs            hash user -> JSON list of 50 tracks, best first (the default set)
    P:ns:<id>:recs:<set>      the same for each named recommendation set (artifacts.sets)
    P:ns:<id>:top             JSON list of popular tracks (absent when there are none)
    P:history:<user>          set of tracks recommended in the current session (TTL; cleared at /last)

A request reads what its recommender needs in one round trip: ``REQUEST_SCRIPT``
reads ``P:active`` and the namespace's keys in one atomic step, so a request
can never see a namespace a reload is deleting.

A load writes a fresh namespace holding every recommendation set, then
switches ``P:active`` with one ``SET`` (so all sets switch together) and
deletes the previous namespace ``meta`` first. Other readers run their reads
in a ``MULTI`` together with ``EXISTS meta``, so a read either sees a complete
namespace or learns it is gone and re-reads ``P:active``. Only JSON and native
Redis types are stored; nothing is ever unpickled.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from typing import Dict, Iterator, List, Optional, Set

import redis

from botify.artifacts import Bundle
from botify.settings import DEFAULT_SET

log = logging.getLogger(__name__)

BATCH = 5000

# What one request reads, as flags of REQUEST_SCRIPT (a recommender's ``reads``).
RANDOM, TOP, ARTIST, LIST, TAKE = "r", "t", "a", "l", "k"

# One request's reads, in the layout above. The namespace is known only inside the script, so its keys
# are built here rather than passed as KEYS: fine on one Redis server (botify does not use Redis Cluster).
# TAKE is Ranked's step: the first track of the user's list not yet recommended in this session, remembered
# in the same step; only when there is none are the history and the fallbacks' data read. Writes come
# before SRANDMEMBER, so Redis versions that replicate scripts verbatim accept the script too.
# Reply: false (no active namespace), {ns} (namespace without meta: being deleted), or
# {ns, taken, random, top, artist's tracks, list, history}; false where not read or absent.
REQUEST_SCRIPT = """
local prefix, user, track, recs, reads, ttl, cached_top = unpack(ARGV)
local ns = redis.call('GET', prefix .. ':active')
if not ns then return false end
local base = prefix .. ':ns:' .. ns .. ':'
if redis.call('EXISTS', base .. 'meta') == 0 then return {ns} end
local function wants(flag) return string.find(reads, flag, 1, true) ~= nil end
local history = prefix .. ':history:' .. user
local out = {ns, false, false, false, false, false, false}
if wants('k') then
  local list = redis.call('HGET', base .. recs, user)
  for t in string.gmatch(list or '', '%d+') do
    if redis.call('SISMEMBER', history, t) == 0 then
      redis.call('SADD', history, t)
      redis.call('EXPIRE', history, ttl)
      out[2] = t
      return out
    end
  end
  out[7] = redis.call('SMEMBERS', history)
end
if wants('r') then out[3] = redis.call('SRANDMEMBER', base .. 'ids') end
if wants('t') and ns ~= cached_top then out[4] = redis.call('GET', base .. 'top') end
if wants('a') then
  local artist = redis.call('HGET', base .. 'artist_of', track)
  if artist then out[5] = redis.call('HGET', base .. 'by_artist', artist) end
end
if wants('l') then out[6] = redis.call('HGET', base .. recs, user) end
return out
"""


class NamespaceGone(RuntimeError):
    """The namespace a request started with was replaced while it read."""


class ReloadBusy(RuntimeError):
    """Another load holds the reload lock."""


class Store:
    def __init__(self, client: redis.Redis, prefix: str = "botify"):
        self.r = client
        self.prefix = prefix
        # EVALSHA; loaded again by redis-py when a restarted Redis does not know it
        self._request_script = client.register_script(REQUEST_SCRIPT)

    @classmethod
    def from_config(cls, config: dict) -> "Store":
        """A client for ``redis.url``: ``redis://[:password@]host:port/db``, ``unix://[:password@]/path?db=N``, or
        ``rediss://`` (TLS; the server's certificate is verified, against ``redis.ssl_ca_certs`` when set)."""
        rc = config["redis"]
        tls = {"ssl_ca_certs": rc["ssl_ca_certs"]} if rc["url"].startswith("rediss://") and rc["ssl_ca_certs"] else {}
        client = redis.Redis.from_url(
            rc["url"],
            socket_timeout=float(rc["socket_timeout_s"]),
            socket_connect_timeout=float(rc["socket_timeout_s"]),
            decode_responses=True,
            **tls,
        )
        return cls(client, rc["prefix"])

    # keys
    @property
    def active_key(self) -> str:
        return f"{self.prefix}:active"

    def key(self, ns: str, name: str) -> str:
        return f"{self.prefix}:ns:{ns}:{name}"

    def recs_key(self, ns: str, recs_set: str) -> str:
        return self.key(ns, _recs_name(recs_set))

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

    def read_request(self, reads: str, user: int, track: int, recs_set: str, ttl_s: int,
                     cached_top: str = "") -> Optional[list]:
        """One request's ``reads`` (flags above) in one round trip; ``None`` when no namespace is active.

        ``cached_top``: the namespace whose top list the caller holds already (not read again).
        """
        reply = self._request_script(args=[self.prefix, user, track, _recs_name(recs_set), reads, ttl_s, cached_top])
        if not reply:
            return None
        if len(reply) == 1:
            raise NamespaceGone(reply[0])
        return reply

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

    def served_users(self, recs_set: str = DEFAULT_SET) -> Optional[int]:
        """How many users have a list of ``recs_set`` in the namespace served now (``None``: nothing served)."""
        ns = self.active()
        users = self.meta(ns).get(set_field("users", recs_set)) if ns else None
        return int(users) if users else None

    def _write(self, ns: str, bundle: Bundle) -> dict:
        catalog = bundle.catalog
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
        for recs_set, recs in bundle.sets.items():
            for user, tracks in (recs.lists.items() if recs else ()):
                pipe.hset(self.recs_key(ns, recs_set), user, json.dumps(tracks))
                flush_if_full()
        if bundle.top_tracks:
            pipe.set(self.key(ns, "top"), json.dumps(bundle.top_tracks))
        pipe.execute()
        meta = {
            "loaded_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "catalog_uri": catalog.uri,
            "catalog_sha256": catalog.sha256,
            "tracks": str(len(catalog)),
            "top_tracks": str(len(bundle.top_tracks or [])),
            "top_tracks_source": bundle.top_tracks_source or "",
        }
        if bundle.missing:
            meta["missing"] = bundle.missing
        for recs_set, recs in bundle.sets.items():
            meta[set_field("recommendations", recs_set)] = recs.version if recs else ""
            meta[set_field("model_version", recs_set)] = str(recs.manifest.get("model_version", "")) if recs else ""
            meta[set_field("users", recs_set)] = str(len(recs.lists)) if recs else "0"
            meta[set_field("published_at", recs_set)] = str(recs.manifest.get("created_at", "")) if recs else ""
        self.r.hset(self.key(ns, "meta"), mapping=meta)
        return meta

    def drop(self, ns: str, keys: Optional[Set[str]] = None) -> None:
        """Delete namespace ``ns``: its ``keys`` if known, else every key under it."""
        # meta first: from then on every reader of ns sees NamespaceGone instead of half a namespace.
        self.r.delete(self.key(ns, "meta"))
        if keys is None:
            keys = set(self.r.scan_iter(match=self.key(ns, "*"), count=1000))
        keys = keys - {self.key(ns, "meta")}
        if keys:
            self.r.unlink(*sorted(keys))

    def _collect_garbage(self, keep: str) -> None:
        """Delete every namespace but ``keep`` (the previous one and any left by a crashed load)."""
        stale: Dict[str, Set[str]] = {}
        for key in self.r.scan_iter(match=f"{self.prefix}:ns:*", count=1000):
            ns = key[len(f"{self.prefix}:ns:") :].split(":", 1)[0]
            if ns != keep:
                stale.setdefault(ns, set()).add(key)
        for ns in sorted(stale):
            self.drop(ns, stale[ns])

    def namespaces(self) -> List[str]:
        found = set()
        for key in self.r.scan_iter(match=f"{self.prefix}:ns:*", count=1000):
            found.add(key[len(f"{self.prefix}:ns:") :].split(":", 1)[0])
        return sorted(found)


def _recs_name(recs_set: str) -> str:
    return "recs" if recs_set == DEFAULT_SET else f"recs:{recs_set}"


def set_field(field: str, recs_set: str) -> str:
    """The meta field describing one recommendation set: ``users`` for the default set, ``users:als`` for ``als``."""
    return field if recs_set == DEFAULT_SET else f"{field}:{recs_set}"


def served_versions(meta: dict, sets) -> Dict[str, str]:
    """``{set: version}`` recorded in a namespace's meta for each of ``sets`` ("" = no lists; absent: not loaded)."""
    return {s: meta[set_field("recommendations", s)] for s in sets if set_field("recommendations", s) in meta}


def _describe(meta: dict) -> str:
    sets = [(k.partition(":")[2] or DEFAULT_SET, v) for k, v in sorted(meta.items())
            if k.partition(":")[0] == "recommendations"]
    recs = ", ".join(f"{v or 'no recommendations'} ({meta[set_field('users', s)]} users)"
                     + ("" if s == DEFAULT_SET else f" as {s}") for s, v in sets)
    return f"{meta['tracks']} tracks, {recs}, {meta['top_tracks']} top tracks"
