"""Retention: delete what is old under the storage root and in botify's local log folder, never what is needed.

    python -m pipeline.retention [--date YYYY-MM-DD] [--dry-run] [--served VERSION ...] [--no-lock] [--set key=value ...]

The decisions are common/retention.py's (pure); this module finds the entries
(the layout the jobs write), what protects them (LATEST* pointers, the HOLD
marker, configured pins, botify's served versions, the training and experiment
windows, lineage: the model and interactions run behind a protected version),
and deletes. Kinds and where they live under the root:

- raw_logs: ``logs/<dataset>/events-*.jsonl`` of a dataset that is staged (``events/<dataset>/_STAGED.json``)
  and not read raw by configuration (``datasets.*``, ``ab.cuped.pre_input``)
- staged_events: ``events/<dataset>/date=YYYY-MM-DD/`` (``_STAGED.json`` rewritten first, so it never
  counts a date that is gone: consumers check the dataset against it)
- quarantine: ``quarantine/stage_events/<dataset>/<run>/``, ``quarantine/extract_interactions/<run>/``,
  ``quarantine/analyze_ab/<experiment>/<run>/``
- interactions: ``interactions/<run>/``; models: ``models/<family>/<version>/``;
  recommendations: ``recommendations/<version>/``; reports: ``ab/<experiment>/<run>/``
- run_records: ``runs/<job>/<YYYYmmddTHHMMSSZ>-<suffix>.json``
- local_logs: botify's completed files in ``daily.botify_log_dir``, deleted only when ``logs/<daily.dataset>/``
  holds a file of the same name and size (checked again, under botify-upload's lock, just before deleting)

Hidden names (``_tmp-…``, ``_old-…``, ``_work``, ``.…``) are never listed: they belong to the writers' own
recovery. Protection that cannot be established (a pointer or HOLD that does not read, botify not answering
what it serves, botify.yml not loading) keeps the whole kind for that night instead of guessing.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import posixpath
import sys
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from common import retention, serving_control
from common.config import ConfigError, add_config_arguments, load_config
from common.manifest import MANIFEST, now_iso
from common.retention import Decision, Entry, Plan, Protection, Window
from common.storage import FsspecStorage, Storage, join, local_path, read_pointer, to_uri
from pipeline.processes import REPO
from pipeline.upload_logs import OPEN_SUFFIX, UploadLocked, directory_lock, remote_sizes

log = logging.getLogger(__name__)

POINTER_PREFIX = "LATEST"
HOLD = serving_control.HOLD
REJECTED = serving_control.REJECTED  # not protected: a rejected version ages and counts like any other
STAGED_MANIFEST = "_STAGED.json"  # common.event_log_reader.STAGED_MANIFEST (that module needs Spark)
SEQUENTIAL_HISTORY = "_SEQUENTIAL.json"  # common.sequential_report.HISTORY (that module loads scipy, pandas)
# Folder levels between quarantine/<job>/ and the run directories, per job (jobs/*.py).
QUARANTINE_LEVELS = {"stage_events": 1, "extract_interactions": 0, "analyze_ab": 1}
# Configuration that names raw logs a job reads as they are: those datasets are not raw_logs to delete.
RAW_INPUT_KEYS = (("datasets", "events"), ("datasets", "ab_events"), ("ab", "cuped", "pre_input"))
# Configuration that pins a model version or an interactions run ("LATEST" follows the pointer, already protected).
MODEL_PINS = (("infer", "model_version"), ("evaluate", "model_version"))
INTERACTIONS_PINS = (("multidae", "interactions_run"), ("als", "interactions_run"))
BOTIFY_VERSION_ENV = "BOTIFY_RECOMMENDATIONS_VERSION"


# ---- where things are ---------------------------------------------------------------------------


def root_of(config: dict) -> str:
    """The storage root as botify-daily's steps see it: they run in the repository, so a relative root is its."""
    return to_uri(config["storage"]["root"], base=str(REPO))


def local_dir(path: str) -> str:
    return path if os.path.isabs(path) else str(REPO / path)


def under_root(root: str, path: str) -> str:
    """``path`` as common.paths.resolve reads it: URIs and absolute paths as given, the rest under the root."""
    if "://" in path or os.path.isabs(path):
        return to_uri(path)
    return join(root, path).rstrip("/")


def name_of(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/"))


def children(storage: Storage, uri: str) -> List[Tuple[str, str]]:
    """``(name, uri)`` of a folder's visible children; a file listed in place of a folder has none."""
    found = []
    for child in storage.list(uri):
        name = name_of(child)
        if name.startswith(("_", ".")) or child.rstrip("/") == uri.rstrip("/"):
            continue
        found.append((name, child.rstrip("/")))
    return found


def dig(config: Mapping, keys: Sequence[str]):
    node = config
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


# ---- the survey: entries and what protects them ---------------------------------------------------


class Survey:
    """What one pass over storage found: the inventory and the protection that storage itself states."""

    def __init__(self) -> None:
        self.entries: List[Entry] = []
        self.pointed: Dict[str, Dict[str, str]] = defaultdict(dict)
        self.protected: Dict[Tuple[str, str], str] = {}
        self.unknown: Dict[str, str] = {}

    def add(self, kind: str, found: Iterable[Tuple[str, str]], group: str = "") -> None:
        self.entries.extend(Entry(kind, name, uri, group) for name, uri in found)

    def protect(self, kind: str, name: Optional[str], reason: str) -> None:
        if name:
            self.protected.setdefault((kind, str(name)), reason)

    def not_known(self, kind: str, reason: str) -> None:
        log.warning("retention: keeping every %s entry: %s", kind, reason)
        self.unknown.setdefault(kind, reason)


def survey_versioned(survey: Survey, storage: Storage, kind: str, folder: str, label: str,
                     markers: Sequence[str] = (), pointers: Sequence[str] = ()) -> None:
    """Entries of a folder of runs or versions; its ``LATEST*`` files (and ``pointers``) protect what they name."""
    for name, uri in children(storage, folder):
        if name in markers:
            continue
        if name.startswith(POINTER_PREFIX) or name in pointers:
            try:
                survey.pointed[kind][read_pointer(storage, uri)] = f"{label}/{name}"
            except (OSError, ValueError) as exc:
                survey.not_known(kind, f"pointer {label}/{name} unreadable ({exc})")
            continue
        survey.entries.append(Entry(kind, name, uri, label))


def survey_raw_logs(survey: Survey, storage: Storage, root: str, config: dict) -> None:
    raw_inputs = {under_root(root, str(v)) for keys in RAW_INPUT_KEYS if (v := dig(config, keys))}
    for dataset, uri in children(storage, join(root, "logs")):
        if uri in raw_inputs:
            log.info("retention: %s is read as raw logs by the configuration: kept", uri)
        elif not storage.exists(join(root, "events", dataset, STAGED_MANIFEST)):
            log.info("retention: %s was never staged (no events/%s/%s): kept", uri, dataset, STAGED_MANIFEST)
        else:
            survey.add(retention.RAW_LOGS, children(storage, uri), dataset)


def survey_staged_events(survey: Survey, storage: Storage, root: str) -> None:
    for dataset, uri in children(storage, join(root, "events")):
        if storage.exists(join(uri, STAGED_MANIFEST)):
            survey.add(retention.STAGED_EVENTS, children(storage, uri), dataset)


def survey_quarantine(survey: Survey, storage: Storage, root: str) -> None:
    for job, uri in children(storage, join(root, "quarantine")):
        if job not in QUARANTINE_LEVELS:
            survey.add(retention.QUARANTINE, [(job, uri)], "")  # a layout this code does not know: reported, kept
            continue
        folders = [(job, uri)]
        for _ in range(QUARANTINE_LEVELS[job]):
            folders = [(f"{label}/{name}", child) for label, folder in folders for name, child in children(storage, folder)]
        for label, folder in folders:
            survey.add(retention.QUARANTINE, children(storage, folder), label)


def survey_models(survey: Survey, storage: Storage, root: str) -> None:
    for family, uri in children(storage, join(root, "models")):
        survey_versioned(survey, storage, retention.MODELS, uri, f"models/{family}")


def survey_run_records(survey: Survey, storage: Storage, root: str) -> None:
    for job, uri in children(storage, join(root, "runs")):
        survey.add(retention.RUN_RECORDS, children(storage, uri), job)


def survey_reports(survey: Survey, storage: Storage, root: str) -> None:
    for experiment, uri in children(storage, join(root, "ab")):
        survey_versioned(survey, storage, retention.REPORTS, uri, f"ab/{experiment}")


def survey_local_logs(survey: Survey, root: str, config: dict) -> None:
    """botify's completed files on this host; each one still here protects its uploaded copy (deleting that
    would make botify-upload ship it again), and each one not on storage with the same size is protected."""
    daily = config.get("daily") or {}
    if not daily.get("botify_log_dir") or not daily.get("dataset"):
        return
    folder = local_dir(str(daily["botify_log_dir"]))
    if not os.path.isdir(folder):
        log.info("retention: no local botify log folder %s on this host", folder)
        return
    dest = join(root, "logs", str(daily["dataset"]))
    files = local_log_files(folder)
    for name, size in files:
        survey.entries.append(Entry(retention.LOCAL_LOGS, name, to_uri(os.path.join(folder, name)), dest, size))
        survey.protect(retention.RAW_LOGS, name, f"its local copy is still in {folder}")
    try:
        fs, dest_path = _fs(dest)
        uploaded = remote_sizes(fs, dest_path)
    except OSError as exc:
        survey.not_known(retention.LOCAL_LOGS, f"{dest} not listed ({exc})")
        return
    for name, size in files:
        if name not in uploaded:
            survey.protect(retention.LOCAL_LOGS, name, f"not uploaded to {dest}")
        elif uploaded[name] != size:
            survey.protect(retention.LOCAL_LOGS, name, f"{dest} holds {uploaded[name]} bytes, this file {size}")


def local_log_files(folder: str) -> List[Tuple[str, int]]:
    """``(name, size)`` of the regular, visible files botify has finished writing (never a ``.jsonl.open``)."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")) or entry.name.endswith(OPEN_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            found.append((entry.name, entry.stat(follow_symlinks=False).st_size))
    return sorted(found)


def survey_storage(survey: Survey, storage: Storage, root: str, config: dict, botify: Optional[dict]) -> None:
    survey_raw_logs(survey, storage, root, config)
    survey_staged_events(survey, storage, root)
    survey_quarantine(survey, storage, root)
    survey_versioned(survey, storage, retention.INTERACTIONS, join(root, "interactions"), "interactions")
    survey_models(survey, storage, root)
    set_pointers = [spec["pointer"] for spec in recommendation_sets(botify).values()] if botify else []
    survey_versioned(survey, storage, retention.RECOMMENDATIONS, join(root, "recommendations"), "recommendations",
                     markers=(HOLD, REJECTED), pointers=set_pointers)
    survey_run_records(survey, storage, root)
    survey_reports(survey, storage, root)


# ---- what configuration and botify protect --------------------------------------------------------


def load_botify_config(config: dict, environ: Mapping[str, str]) -> Optional[dict]:
    """botify's configuration (``retention.botify_config``), with the version botify's environment pins."""
    name = str(dig(config, ("retention", "botify_config")) or "botify.yml")
    try:
        botify = load_config(name)
    except (ConfigError, OSError, ValueError) as exc:
        log.warning("retention: botify configuration %s not read (%s)", name, exc)
        return None
    if environ.get(BOTIFY_VERSION_ENV):
        botify.setdefault("artifacts", {})["version"] = environ[BOTIFY_VERSION_ENV]
    return botify


def recommendation_sets(botify: dict) -> Dict[str, dict]:
    """Every set botify may serve, ``{name: {"pointer", "version"}}`` (botify.settings.recommendation_sets' rule)."""
    artifacts = botify.get("artifacts") or {}
    sets = {"default": {"pointer": "LATEST", "version": str(artifacts.get("version", "latest"))}}
    for name, spec in (artifacts.get("sets") or {}).items():
        spec = spec or {}
        sets[name] = {"pointer": str(spec.get("pointer", f"LATEST-{name}")), "version": str(spec.get("version", "latest"))}
    return sets


def pinned_versions(botify: dict) -> Dict[str, str]:
    """``{version: where}`` for every set whose configured version is a name rather than ``latest``."""
    return {spec["version"]: f"set {name}" for name, spec in recommendation_sets(botify).items() if spec["version"] != "latest"}


def held_versions(storage: Storage, root: str) -> frozenset:
    """The version ``recommendations/HOLD`` holds (common.serving_control: ``{"version", "reason", "since"}``).

    A hold without a version only stops the pointers, which protect what they name anyway. Raises when the
    marker does not read, so that nothing is deleted on a guess.
    """
    marker = serving_control.held(storage, join(root, "recommendations"))
    if marker is None:
        return frozenset()
    if not isinstance(marker, dict) or not isinstance(marker.get("version") or "", str):
        raise ValueError(f"recommendations/{HOLD}: {marker!r} is not a hold")
    return frozenset({marker["version"]} if marker.get("version") else ())


def experiment_windows(botify: dict, storage: Storage, root: str, analysed: Optional[str],
                       today: dt.date) -> List[Window]:
    """From each running experiment's start to today: the staged dates analyze_ab reads for it every night.
    An experiment past its planned end (``planned_days``) has no window: its dates age like any others.

    The start is ``experiments.<name>.start`` in botify.yml, else the one its first sequential look recorded
    (``ab/<name>/_SEQUENTIAL.json``). The nightly's experiment (``analysed``) with neither starts at its first
    event, which only its older staged dates can tell: ValueError, so that none of them is deleted. An
    experiment planned in users has no date to end on: its window runs to today until it is removed.
    """
    windows = []
    for name, spec in (botify.get("experiments") or {}).items():
        start = (spec or {}).get("start") if isinstance(spec, Mapping) else None
        first = _as_date(start) if start else recorded_start(storage, root, name)
        if first is not None:
            planned = (spec or {}).get("planned_days") if isinstance(spec, Mapping) else None
            end = first + dt.timedelta(days=int(planned) - 1) if planned else today
            if end >= today:  # an experiment past its planned end is no longer read every night
                windows.append(Window(first, today, frozenset({retention.STAGED_EVENTS}),
                                      f"experiment {name}'s window"))
        elif name == analysed:
            raise ValueError(f"experiment {name} has no start (botify.yml experiments.{name}.start) and no look "
                             f"recorded yet: its window begins at its first event")
    return windows


def recorded_start(storage: Storage, root: str, experiment: str) -> Optional[dt.date]:
    """The earliest ``design.start`` among the experiment's sequential look histories (None without any)."""
    uri = join(root, "ab", experiment, SEQUENTIAL_HISTORY)
    if not storage.exists(uri):
        return None
    histories = json.loads(storage.read_text(uri))
    starts = [h["design"]["start"] for h in histories.values() if (h.get("design") or {}).get("start")]
    return min(_as_date(s) for s in starts) if starts else None


def training_window(config: dict, today: dt.date) -> List[Window]:
    """The staged dates and interactions runs of the training window: botify-daily's extract reads the
    ``daily.train_window_days`` dates up to the night's; one more is kept as a margin (absent: no window)."""
    days = (config.get("daily") or {}).get("train_window_days")
    if not days:
        return []
    return [Window(today - dt.timedelta(days=int(days)), today,
                   frozenset({retention.STAGED_EVENTS, retention.INTERACTIONS}),
                   f"the training window (daily.train_window_days={days})")]


def protect_configured_runs(survey: Survey, config: dict) -> None:
    for keys, kind in [*((k, retention.MODELS) for k in MODEL_PINS), *((k, retention.INTERACTIONS) for k in INTERACTIONS_PINS)]:
        value = dig(config, keys)
        if value and str(value) != "LATEST":
            survey.protect(kind, str(value), f"pinned ({'.'.join(keys)})")


def protect_lineage(survey: Survey, storage: Storage, root: str, versions: Iterable[str]) -> None:
    """The model and interactions run behind each protected version, and the run behind each protected model:
    what it would take to rebuild what is kept (from the ``_MANIFEST.json`` each one was published with)."""
    found = {(e.kind, e.name): e.uri for e in survey.entries}
    models = set()
    for version in versions:
        manifest = _manifest(storage, found.get((retention.RECOMMENDATIONS, version)))
        survey.protect(retention.MODELS, manifest.get("model_version"), f"model of protected recommendations {version}")
        survey.protect(retention.INTERACTIONS, manifest.get("interactions_run"), f"run of protected recommendations {version}")
        models.update({version, manifest.get("model_version")} - {None})
    models.update(survey.pointed.get(retention.MODELS, {}))
    models.update(name for kind, name in survey.protected if kind == retention.MODELS)
    for model in models:
        manifest = _manifest(storage, found.get((retention.MODELS, model)))
        survey.protect(retention.INTERACTIONS, manifest.get("interactions_run"), f"run of protected model {model}")


def _manifest(storage: Storage, uri: Optional[str]) -> dict:
    if uri is None:
        return {}
    try:
        manifest = json.loads(storage.read_text(join(uri, MANIFEST)))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("retention: %s/%s not read (%s): its lineage is not protected", uri, MANIFEST, exc)
        return {}
    return manifest if isinstance(manifest, dict) else {}


def served_by_botify(url: Optional[str], timeout_s: float = 5.0) -> Optional[frozenset]:
    """The versions botify says it serves (``GET /``: ``recommendations`` and ``sets``); None when it cannot say."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout_s) as response:
            health = json.loads(response.read())
    except (OSError, ValueError) as exc:
        log.warning("retention: botify at %s did not say what it serves (%s)", url, exc)
        return None
    if health.get("redis") != "ok":
        log.warning("retention: botify at %s cannot read its Redis (%s): what it serves is unknown", url, health.get("redis"))
        return None
    versions = [health.get("recommendations"), *((health.get("sets") or {}).values())]
    return frozenset(v for v in versions if v)


def botify_url(config: dict) -> Optional[str]:
    return dig(config, ("retention", "botify_url")) or dig(config, ("daily", "botify_url"))


# ---- the plan -----------------------------------------------------------------------------------


def plan_for(config: dict, storage: Storage, today: dt.date, served_versions: Optional[Iterable[str]] = (),
             environ: Optional[Mapping[str, str]] = None) -> Plan:
    """What retention deletes today. ``served_versions``: the versions botify serves (every set); None when
    they are unknown, which keeps every recommendations and model version."""
    environ = os.environ if environ is None else environ
    root = root_of(config)
    policy = retention.policy_from_config(config.get("retention"))
    botify = load_botify_config(config, environ)
    survey = Survey()
    survey_storage(survey, storage, root, config, botify)
    survey_local_logs(survey, root, config)
    protect_configured_runs(survey, config)
    windows = training_window(config, today)
    pinned: Dict[str, str] = {}
    if botify is None:
        survey.not_known(retention.RECOMMENDATIONS, "botify's configuration (its pinned versions) not read")
        survey.not_known(retention.STAGED_EVENTS, "botify's configuration (its experiments' windows) not read")
    else:
        pinned = pinned_versions(botify)
        try:
            windows += experiment_windows(botify, storage, root, dig(config, ("daily", "experiment")), today)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            survey.not_known(retention.STAGED_EVENTS, f"an experiment's window is unknown ({exc})")
    try:
        held = held_versions(storage, root)
    except (OSError, ValueError) as exc:
        held = frozenset()
        survey.not_known(retention.RECOMMENDATIONS, f"recommendations/{HOLD} unreadable ({exc})")
    if served_versions is None:
        survey.not_known(retention.RECOMMENDATIONS, "the versions botify serves are unknown")
    served = frozenset(served_versions or ())
    protected_versions = served | held | set(pinned) | set(survey.pointed.get(retention.RECOMMENDATIONS, {}))
    protect_lineage(survey, storage, root, sorted(protected_versions))
    protection = Protection(served=served, held=held, pinned=pinned, pointed=dict(survey.pointed),
                            entries=dict(survey.protected), windows=tuple(windows), unknown=dict(survey.unknown))
    result = retention.plan(survey.entries, policy, today, protection)
    for entry in result.unknown():
        log.info("retention: %s %s has no date in its name: kept", entry.kind, entry.uri)
    return result


# ---- deleting -----------------------------------------------------------------------------------


def _fs(uri: str):
    import fsspec.core

    return fsspec.core.url_to_fs(uri)


def size_of(uri: str) -> Optional[int]:
    """Bytes under ``uri`` (a file or a folder); None when storage cannot say."""
    try:
        fs, path = _fs(uri)
        return int(fs.du(path, total=True))
    except (OSError, ValueError, NotImplementedError) as exc:
        log.debug("retention: size of %s unknown (%s)", uri, exc)
        return None


def apply(plan: Plan, storage: Storage, dry_run: bool) -> Dict[str, Dict[str, int]]:
    """Delete the plan's deletions (``dry_run``: only log them); ``{kind: {"deleted", "kept", "bytes", "failed"}}``.

    A failed deletion is logged and counted, and the others go on: one entry
    refusing must not keep the quota full. In a dry run "deleted" counts what would be.
    """
    counts = {kind: {"deleted": 0, "kept": c["keep"], "bytes": 0, "failed": 0} for kind, c in plan.counts().items()}
    by_folder: Dict[Tuple[str, str], List[Decision]] = defaultdict(list)
    for decision in plan.deletions:
        by_folder[(decision.entry.kind, posixpath.dirname(decision.entry.uri))].append(decision)
    for (kind, folder), decisions in by_folder.items():
        if kind == retention.STAGED_EVENTS:
            outcome = delete_staged_dates(storage, folder, decisions, dry_run)
        elif kind == retention.LOCAL_LOGS:
            outcome = delete_local_logs(storage, local_path(folder), decisions, dry_run)
        else:
            outcome = [delete_entry(storage, d, dry_run) for d in decisions]
        for result, size in outcome:
            counts[kind][result] += 1
            counts[kind]["bytes"] += size or 0
    return counts


def _announce(decision: Decision, dry_run: bool) -> None:
    if dry_run:
        log.info("retention: would delete %s (%s)", decision.entry.uri, decision.reason)
    else:
        log.info("retention: delete %s (%s)", decision.entry.uri, decision.reason)


def delete_entry(storage: Storage, decision: Decision, dry_run: bool) -> Tuple[str, Optional[int]]:
    """``("deleted" | "failed", bytes)`` for one entry on storage."""
    size = size_of(decision.entry.uri)
    _announce(decision, dry_run)
    if dry_run:
        return "deleted", size
    try:
        storage.delete(decision.entry.uri)
    except OSError as exc:
        log.error("retention: %s not deleted: %s", decision.entry.uri, exc)
        return "failed", 0
    return "deleted", size


def delete_staged_dates(storage: Storage, dataset_uri: str, decisions: Sequence[Decision],
                        dry_run: bool) -> List[Tuple[str, Optional[int]]]:
    """The manifest first, then the dates: killed in between, the next run finds those dates again and deletes
    them, whereas a manifest counting deleted dates would fail every consumer until someone fixed it by hand."""
    if not dry_run:
        uri = join(dataset_uri, STAGED_MANIFEST)
        dates = [d.entry.name[len("date="):] for d in decisions]
        try:
            manifest = json.loads(storage.read_text(uri))
            storage.write_atomically(uri, json.dumps(retention.staged_manifest_without(manifest, dates, now_iso()),
                                                     indent=2, sort_keys=True).encode())
        except (OSError, ValueError) as exc:
            log.error("retention: %s not rewritten (%s): none of its dates deleted", uri, exc)
            return [("failed", 0) for _ in decisions]
    return [delete_entry(storage, d, dry_run) for d in decisions]


def delete_local_logs(storage: Storage, folder: str, decisions: Sequence[Decision],
                      dry_run: bool) -> List[Tuple[str, Optional[int]]]:
    """Under botify-upload's lock, each file again checked against its uploaded copy right before it goes."""
    if dry_run:
        for decision in decisions:
            _announce(decision, dry_run)
        return [("deleted", d.entry.size) for d in decisions]
    try:
        with directory_lock(folder):
            return [delete_local_log(d, uploaded) for d, uploaded in _with_uploaded(decisions)]
    except UploadLocked as exc:
        log.warning("retention: %s; its files are kept this time", exc)
        return [("kept", 0) for _ in decisions]


def _with_uploaded(decisions: Sequence[Decision]) -> Iterator[Tuple[Decision, Dict[str, int]]]:
    sizes: Dict[str, Dict[str, int]] = {}
    for decision in decisions:
        dest = decision.entry.group
        if dest not in sizes:
            fs, path = _fs(dest)
            sizes[dest] = remote_sizes(fs, path)
        yield decision, sizes[dest]


def delete_local_log(decision: Decision, uploaded: Mapping[str, int]) -> Tuple[str, Optional[int]]:
    entry = decision.entry
    path = local_path(entry.uri)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "kept", 0
    if size != entry.size or uploaded.get(entry.name) != size:
        log.warning("retention: %s changed since it was checked against %s: kept", path, entry.group)
        return "kept", 0
    _announce(decision, dry_run=False)
    try:
        os.remove(path)
    except OSError as exc:
        log.error("retention: %s not deleted: %s", path, exc)
        return "failed", 0
    return "deleted", size


# ---- the nightly's entry point and the command ----------------------------------------------------


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def run(config: dict, date, dry_run: bool = False, served_versions: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, int]]:
    """botify-daily's retention step: plan for ``date`` and apply. ``served_versions`` None asks botify
    (``retention.botify_url``, else ``daily.botify_url``); if it cannot say, no version is deleted."""
    storage = FsspecStorage()
    if served_versions is None:
        served_versions = served_by_botify(botify_url(config))
    plan = plan_for(config, storage, _as_date(date), served_versions)
    return apply(plan, storage, dry_run)


def render(date: str, counts: Mapping[str, Mapping[str, int]], dry_run: bool) -> str:
    done = "to delete" if dry_run else "deleted"
    columns = ("kind", done, "kept", "failed", "bytes")
    rows = [{"kind": kind, done: c["deleted"], "kept": c["kept"], "failed": c["failed"], "bytes": f"{c['bytes']:,}"}
            for kind, c in counts.items()]
    widths = {col: max(len(col), *(len(str(r[col])) for r in rows)) for col in columns}
    lines = [f"retention {date}" + (" (dry run: nothing deleted)" if dry_run else "")]
    for row in [dict(zip(columns, columns)), *rows]:
        lines.append("  ".join(str(row[c]).ljust(widths[c]) if c == "kind" else str(row[c]).rjust(widths[c])
                               for c in columns).rstrip())
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def daily_lock(path: str) -> Iterator[None]:
    """botify-daily's lock (its ``daily.lock_file``), so a retention by hand never rewrites a manifest a night's
    stage_events is writing. BlockingIOError when another daily run holds it; held by the botify-daily that
    started this process (its retention step: the pid in the file is our parent's), it is ours to run under."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            if fh.read().strip() != str(os.getppid()):
                raise
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.retention", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--date", default=dt.datetime.now(dt.timezone.utc).date().isoformat(),
                        help="the day ages are counted from (default: today, UTC)")
    parser.add_argument("--dry-run", action="store_true", help="only list and count what would be deleted")
    parser.add_argument("--served", action="append", metavar="VERSION",
                        help="a version botify serves (repeatable); default: ask botify (retention.botify_url or "
                             "daily.botify_url), and delete no version if it does not answer")
    parser.add_argument("--no-lock", action="store_true",
                        help="do not take daily.lock_file (botify-daily's own retention step needs no flag: the lock "
                             "is its parent's)")
    args = parser.parse_args(argv)
    try:
        dt.date.fromisoformat(args.date)
    except ValueError:
        parser.error(f"--date {args.date!r} is not YYYY-MM-DD")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = load_config(args.config, args.overrides)
    lock_file = dig(config, ("daily", "lock_file"))
    with contextlib.ExitStack() as stack:
        if lock_file and not args.no_lock:
            try:
                stack.enter_context(daily_lock(str(lock_file)))
            except BlockingIOError:
                print(f"retention: a botify-daily run holds {lock_file}; not running beside it", file=sys.stderr)
                return 1
            except OSError as exc:
                log.warning("retention: %s not taken (%s): make sure no botify-daily run is going on", lock_file, exc)
        counts = run(config, args.date, args.dry_run, args.served)
    print(render(args.date, counts, args.dry_run), end="", flush=True)
    return 1 if any(c["failed"] for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
