"""botify's Prometheus metrics (names and labels: docs/botify.md#metrics).

``botify serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh private
directory before anything imports ``prometheus_client`` (``use_private_dir``),
so every gunicorn worker writes its counts into its own memory-mapped file
there and a scrape of ``GET /metrics``, whichever worker answers it, adds up
all of them (``prometheus_client.multiprocess``). Without the variable (the
tests' in-process server) the counts are this process's.

Labels are bounded by configuration, never by traffic: route templates (an
unknown path is ``other``), status codes, experiment arms, recommender names,
answer sources, set names. No user or track id is ever a label. The version a
set serves is not a counter label either: it is read from the worker's
``Service`` at scrape time (``ServedVersions``), so a replaced version leaves
no stale series behind. Readiness and the publish time of each served version
(``ServingState``) are read the same way, at scrape time, from the answering
worker's view of Redis.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Callable, Optional

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Route templates: the label of a request is one of these, whatever its ids.
_FIXED = {"/": "/", "/metrics": "/metrics", "/healthz": "/healthz", "/readyz": "/readyz",
          "/admin/reload": "/admin/reload", "/admin/rotate-logs": "/admin/rotate-logs"}
_PREFIXED = (("/next/", "/next/<user>"), ("/last/", "/last/<user>"), ("/track/", "/track/<id>"))

# A /next takes 0.2-0.5 ms of CPU; the buckets resolve the 10 ms target and a stalled Redis (socket timeout 0.5 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def use_private_dir() -> str:
    """Create a fresh directory for this botify's worker files and export it (call before importing metrics)."""
    path = tempfile.mkdtemp(prefix="botify-metrics-")
    os.environ[ENV] = path
    return path


def remove_private_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """gunicorn ``child_exit`` hook: a dead worker's counts stay in the totals (its live gauges would not)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def route_of(path: str) -> str:
    fixed = _FIXED.get(path)
    if fixed:
        return fixed
    for prefix, template in _PREFIXED:
        if path.startswith(prefix):
            return template
    return "other"


class Recorder:
    """What botify counts. Built once per process; ``NullRecorder`` when ``metrics.enabled`` is false."""

    enabled = True

    def __init__(self):
        from prometheus_client import Counter, Histogram

        self._requests = Counter("botify_requests", "HTTP requests answered, by route template, status and the "
                                 "routing experiment's arm ('' when the request named no valid user)",
                                 ["route", "status", "arm"])
        self._latency = Histogram("botify_request_duration_seconds", "Time from the request reaching botify's WSGI "
                                  "app to its answer, by route template", ["route"], buckets=LATENCY_BUCKETS)
        self._answers = Counter("botify_answers", "/next answers by arm, recommender and source: list (the user's "
                                "list), artist, popular, random (fallbacks), degraded (Redis unavailable: a random "
                                "catalog track)", ["arm", "recommender", "source"])
        self._redis_errors = Counter("botify_redis_errors", "Redis calls that failed (each starts "
                                     "redis.retry_after_s of degraded serving in that worker)")
        self._degraded = Counter("botify_degraded_answers", "Requests answered from the in-process catalog because "
                                 "Redis was unavailable, by route template", ["route"])
        self._reloads = Counter("botify_reloads", "Artifact loads by trigger (start, admin, recovery) and outcome "
                                "(loaded, rejected, storage_unavailable, busy, redis_error, not_needed)", ["trigger", "outcome"])
        for trigger in ("start", "admin", "recovery"):  # at 0 from the start, so the first rejection is an increase
            self._reloads.labels(trigger, "rejected")
        self._lines = Counter("botify_event_log_lines", "Event log lines written")
        self._rotations = Counter("botify_event_log_rotations", "Event log files completed, by reason (size, age, "
                                  "request, shutdown)", ["reason"])
        self._children = {}

    def request(self, route: str, status: str, arm: str, seconds: float) -> None:
        key = (route, status, arm)
        child = self._children.get(key)
        if child is None:  # labels() takes a lock and checks its arguments: once per label set, not per request
            child = self._children[key] = (self._requests.labels(route, status, arm), self._latency.labels(route))
        child[0].inc()
        child[1].observe(seconds)

    def answer(self, arm: str, recommender: str, source: str) -> None:
        self._answers.labels(arm, recommender, source).inc()

    def redis_error(self) -> None:
        self._redis_errors.inc()

    def degraded(self, route: str) -> None:
        self._degraded.labels(route).inc()

    def reload(self, trigger: str, outcome: str) -> None:
        self._reloads.labels(trigger, outcome).inc()

    def event_line(self) -> None:
        self._lines.inc()

    def rotation(self, reason: str) -> None:
        self._rotations.labels(reason).inc()


class NullRecorder(Recorder):
    enabled = False

    def __init__(self):
        pass

    def request(self, *args) -> None:
        pass

    answer = redis_error = degraded = reload = event_line = rotation = request


_recorder: Optional[Recorder] = None


def recorder(enabled: bool = True) -> Recorder:
    """The process's recorder (prometheus_client registers each metric name once per process)."""
    global _recorder
    if not enabled:
        return NullRecorder()
    if _recorder is None:
        _recorder = Recorder()
    return _recorder


class ServedVersions:
    """A collector: ``botify_recommendation_set_info{set, version} 1`` for what the answering worker serves."""

    def __init__(self, versions: Callable[[], Optional[dict]]):
        self.versions = versions

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("botify_recommendation_set_info", "The version each recommendation set serves "
                                   "('' = no lists), as the answering worker last saw it in Redis",
                                   labels=["set", "version"])
        for name, version in sorted((self.versions() or {}).items()):
            family.add_metric([name, version], 1)
        yield family


# The namespace meta field (one per set, ``published_at:<set>`` beside ``recommendations:<set>``) holding the served
# version's _MANIFEST.json ``created_at``: when the job published it (botify/store.py writes it at each load).
PUBLISHED_FIELD = "published_at"


def _epoch(iso: str) -> Optional[float]:
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


class ServingState:
    """A collector: ``botify_ready`` (what ``GET /readyz`` would answer, 1 or 0) and
    ``botify_served_version_published_timestamp_seconds{set}`` for what the answering worker serves.

    ``readiness``: ``Service.readiness`` (``(ready, detail)``, the detail naming the active namespace);
    ``meta``: ``Store.meta`` (namespace -> its meta hash). A Redis failure costs a sample, never the scrape."""

    def __init__(self, readiness: Callable[[], tuple], meta: Callable[[str], dict]):
        self.readiness = readiness
        self.meta = meta

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from botify.settings import DEFAULT_SET

        try:
            ready, detail = self.readiness()
        except Exception:  # noqa: BLE001 (a scrape must answer whatever Redis does)
            ready, detail = False, {}
        yield GaugeMetricFamily("botify_ready", "1 while the answering worker is ready (GET /readyz answers 200): "
                                "Redis holds the catalog and every served recommendation set; else 0", value=int(ready))
        published = GaugeMetricFamily("botify_served_version_published_timestamp_seconds", "When the version each "
                                      "recommendation set serves was published (its _MANIFEST.json created_at, "
                                      "Unix time); no sample for a set without lists", labels=["set"])
        namespace = detail.get("namespace")
        try:
            meta = self.meta(namespace) if namespace else {}
        except Exception:  # noqa: BLE001
            meta = {}
        for key, value in sorted(meta.items()):
            field, _, name = key.partition(":")
            seconds = _epoch(value) if field == PUBLISHED_FIELD and value else None
            if seconds is not None:
                published.add_metric([name or DEFAULT_SET], seconds)
        yield published


def exposition(versions: Callable[[], Optional[dict]], readiness: Optional[Callable[[], tuple]] = None,
               meta: Optional[Callable[[str], dict]] = None) -> tuple:
    """``(body, content type)`` of a scrape: every worker's counts (multiprocess mode) or this process's."""
    from prometheus_client import REGISTRY, CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    served = CollectorRegistry()
    served.register(ServedVersions(versions))
    if readiness is not None and meta is not None:
        served.register(ServingState(readiness, meta))
    if not os.environ.get(ENV):
        return generate_latest(REGISTRY) + generate_latest(served), CONTENT_TYPE_LATEST
    multiprocess.MultiProcessCollector(served)
    return generate_latest(served), CONTENT_TYPE_LATEST


class Instrumented:
    """WSGI middleware, outermost: counts and times every request by route template, status and arm.

    The arm is what the handler put in ``environ["botify.arm"]`` (only a valid
    /next or /last knows its user)."""

    def __init__(self, app, metrics: Recorder):
        self.app = app
        self.metrics = metrics

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        status = ["500"]

        def recording_start_response(line, headers, exc_info=None):
            status[0] = line[:3]
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            self.metrics.request(route_of(environ.get("PATH_INFO", "")), status[0], environ.get("botify.arm", ""),
                                 time.perf_counter() - start)
