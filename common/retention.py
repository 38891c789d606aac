"""Retention: which stored outputs the nightly may delete, decided without touching storage.

``plan`` takes an inventory (the entries found under the storage root and in
botify's local log folder), a :class:`Policy` (per kind: days kept, or versions
kept), "today" and a :class:`Protection` (what must survive whatever its age),
and returns every entry once: deleted with the reason, or kept with the reason.
pipeline/retention.py builds the inventory and the protection from storage and
configuration, and applies the plan.

An entry is dated by its name only (a stored file's modification time is the
time it was copied, not the day it holds): a name that does not parse is kept,
and reported as unknown. Versions (models, recommendations) are ordered by the
date in their name, then by name, within their *series*: the name with its date
taken out, so ``als-2024-05-01`` competes with the other ALS versions and not
with the MultiDAE's ``2024-05-01``.

Never deleted, in this order of precedence: an unparseable name; any entry of a
kind whose protection could not be established (``Protection.unknown``: a
pointer or marker that could not be read, botify's served versions unknown); a
recommendations version botify serves, pinned in configuration, held
(``recommendations/HOLD``) or named by a ``LATEST*`` pointer, and the model
version of the same name; any entry named by its kind's own ``LATEST*`` pointer
or protected by name (``Protection.entries``: lineage, configured runs, local
logs not yet uploaded); anything dated inside an active window (the training
window, an experiment's). A version listed in ``recommendations/REJECTED`` is
*not* protected: it ages and counts like any other version.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import defaultdict
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

RAW_LOGS = "raw_logs"
STAGED_EVENTS = "staged_events"
QUARANTINE = "quarantine"
INTERACTIONS = "interactions"
MODELS = "models"
RECOMMENDATIONS = "recommendations"
RUN_RECORDS = "run_records"
REPORTS = "reports"
LOCAL_LOGS = "local_logs"

DAY_KINDS = (RAW_LOGS, STAGED_EVENTS, QUARANTINE, INTERACTIONS, RUN_RECORDS, REPORTS, LOCAL_LOGS)
VERSION_KINDS = (MODELS, RECOMMENDATIONS)
KINDS = (RAW_LOGS, STAGED_EVENTS, QUARANTINE, INTERACTIONS, MODELS, RECOMMENDATIONS, RUN_RECORDS, REPORTS, LOCAL_LOGS)

# botify's completed event-log files (botify/event_log_writer.py): events-<UTC open time>-<host>-<pid>-<n>.jsonl.
_EVENT_LOG = re.compile(r"^events-(?P<date>\d{8})T\d{12}-.+\.jsonl$")
_STAGED_DATE = re.compile(r"^date=(?P<date>\d{4}-\d{2}-\d{2})$")
# common.run_record.new_id: <YYYYmmddTHHMMSSZ>-<suffix>.
_RUN_RECORD = re.compile(r"^(?P<date>\d{8})T\d{6}Z-.*\.json$")
# Run ids and versions the jobs write: --run/--version <date> (the daily's), als-<run>, train_multidae's default
# <YYYYmmddTHHMMSSZ>; a series prefix of words ending in "-", and a suffix after a separator, are allowed.
_DATED = re.compile(r"^(?P<series>(?:[A-Za-z][A-Za-z0-9_]*-)*)"
                    r"(?P<date>\d{4}-\d{2}-\d{2}|\d{8})(?:T\d{6}Z?)?(?:[-_.][A-Za-z0-9._-]*)?$")

_NAME_FORMS = {RAW_LOGS: _EVENT_LOG, LOCAL_LOGS: _EVENT_LOG, STAGED_EVENTS: _STAGED_DATE, RUN_RECORDS: _RUN_RECORD}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One deletable thing: a directory or file of ``kind`` named ``name``, at ``uri``.

    ``group`` is what it belongs to (a dataset, a job, an experiment; for local
    logs the storage folder they are uploaded to): only pipeline/retention.py
    reads it, to act on the entries of one folder together.
    """
    kind: str
    name: str
    uri: str
    group: str = ""
    size: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Window:
    """Dates ``first``..``last`` (inclusive) of ``kinds`` that an active job still reads."""
    first: dt.date
    last: dt.date
    kinds: FrozenSet[str]
    why: str

    def covers(self, kind: str, day: dt.date) -> bool:
        return kind in self.kinds and self.first <= day <= self.last


@dataclasses.dataclass(frozen=True)
class Protection:
    """What survives whatever its age (see the module docstring for the order).

    ``served``, ``held`` and ``pinned`` name recommendations versions (and so the
    model versions of the same names); ``pointed`` is per kind the names its
    ``LATEST*`` pointers give (pointer name as the reason); ``entries`` protects
    single entries by ``(kind, name)``; ``unknown`` keeps a whole kind, with why.
    """
    served: FrozenSet[str] = frozenset()
    held: FrozenSet[str] = frozenset()
    pinned: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pointed: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    entries: Mapping[Tuple[str, str], str] = dataclasses.field(default_factory=dict)
    windows: Tuple[Window, ...] = ()
    unknown: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Per kind, days kept (day kinds) or newest versions kept per series (version kinds); absent: never deleted."""
    days: Mapping[str, int] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Decision:
    entry: Entry
    reason: str


@dataclasses.dataclass(frozen=True)
class Plan:
    today: dt.date
    deletions: Tuple[Decision, ...]
    kept: Tuple[Decision, ...]

    def counts(self) -> Dict[str, Dict[str, int]]:
        """``{kind: {"delete": n, "keep": n}}`` for every kind."""
        counts = {kind: {"delete": 0, "keep": 0} for kind in KINDS}
        for decision in self.deletions:
            counts[decision.entry.kind]["delete"] += 1
        for decision in self.kept:
            counts[decision.entry.kind]["keep"] += 1
        return counts

    def unknown(self) -> List[Entry]:
        return [d.entry for d in self.kept if d.reason.startswith(UNKNOWN_NAME)]


UNKNOWN_NAME = "unknown name"


# ---- configuration ------------------------------------------------------------------------------

SETTINGS = ("botify_config", "botify_url")


def policy_from_config(section: Optional[Mapping]) -> Policy:
    """The ``retention:`` section of conf/pipeline.yml as a :class:`Policy`.

    ``<kind>_days`` for day kinds and ``<kind>_versions`` for version kinds; null
    leaves a kind alone. A value below 1 is refused: one that would delete
    today's output is a typo far more often than a wish; so is an unknown key.
    """
    section = dict(section or {})
    days, versions = {}, {}
    for key, value in section.items():
        if key in SETTINGS:
            continue
        kind, _, unit = key.rpartition("_")
        if not ((unit == "days" and kind in DAY_KINDS) or (unit == "versions" and kind in VERSION_KINDS)):
            raise ValueError(f"retention.{key}: unknown key (expected <kind>_days for {', '.join(DAY_KINDS)}, "
                             f"<kind>_versions for {', '.join(VERSION_KINDS)})")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"retention.{key}: a whole number of at least 1, or null to keep everything (got {value!r})")
        (days if unit == "days" else versions)[kind] = value
    return Policy(days=days, versions=versions)


# ---- names ---------------------------------------------------------------------------------------


def _to_date(text: str) -> Optional[dt.date]:
    try:
        return dt.datetime.strptime(text.replace("-", ""), "%Y%m%d").date()
    except ValueError:
        return None


def entry_date(kind: str, name: str) -> Optional[dt.date]:
    """The date an entry's name carries, or None when it carries none (the entry is then never deleted)."""
    match = _NAME_FORMS.get(kind, _DATED).match(name)
    return _to_date(match.group("date")) if match else None


def series(name: str) -> str:
    """The versions a version competes with: its name's words before the date (``als-`` of ``als-2024-05-01``)."""
    match = _DATED.match(name)
    return match.group("series") if match else name


# ---- the plan -------------------------------------------------------------------------------------


def version_protection(protection: Protection, kind: str, name: str) -> Optional[str]:
    """Why a recommendations version, or a model of a protected version's name, must stay (None: nothing says so)."""
    if kind not in VERSION_KINDS:
        return None
    if name in protection.served:
        return "served by botify" if kind == RECOMMENDATIONS else "model of a version botify serves"
    if name in protection.held:
        return "held (recommendations/HOLD)" if kind == RECOMMENDATIONS else "model of a held version"
    if name in protection.pinned:
        return f"pinned ({protection.pinned[name]})" if kind == RECOMMENDATIONS else "model of a pinned version"
    pointer = protection.pointed.get(RECOMMENDATIONS, {}).get(name)
    if pointer is not None:
        return f"named by recommendations/{pointer}" if kind == RECOMMENDATIONS else f"model of recommendations/{pointer}"
    return None


def protected_because(protection: Protection, entry: Entry, day: dt.date) -> Optional[str]:
    """Why ``entry`` (dated ``day``) must stay whatever its age, or None."""
    if entry.kind in protection.unknown:
        return protection.unknown[entry.kind]
    if entry.kind == MODELS and RECOMMENDATIONS in protection.unknown:
        return f"models follow recommendations: {protection.unknown[RECOMMENDATIONS]}"
    reason = version_protection(protection, entry.kind, entry.name)
    if reason:
        return reason
    pointer = protection.pointed.get(entry.kind, {}).get(entry.name)
    if pointer is not None:
        return f"named by {pointer}"
    reason = protection.entries.get((entry.kind, entry.name))
    if reason:
        return reason
    for window in protection.windows:
        if window.covers(entry.kind, day):
            return f"inside {window.why} ({window.first}..{window.last})"
    return None


def expired_by_days(day: dt.date, today: dt.date, days: int) -> bool:
    """Past a policy of ``days``: dated before ``today - days`` (so ``days`` whole days back from today are kept)."""
    return day < today - dt.timedelta(days=days)


def newest_versions(entries: Iterable[Tuple[Entry, dt.date]], keep: int) -> FrozenSet[Entry]:
    """The ``keep`` newest of each series (by date in the name, then name)."""
    by_series: Dict[Tuple[str, str], List[Tuple[dt.date, str, Entry]]] = defaultdict(list)
    for entry, day in entries:
        by_series[(entry.group, series(entry.name))].append((day, entry.name, entry))
    newest = set()
    for versions in by_series.values():
        newest.update(entry for _, _, entry in sorted(versions, key=lambda v: (v[0], v[1]), reverse=True)[:keep])
    return frozenset(newest)


def plan(inventory: Iterable[Entry], policy: Policy, today: dt.date, protection: Protection) -> Plan:
    """Every entry of ``inventory`` once, deleted or kept, each with its reason."""
    deletions: List[Decision] = []
    kept: List[Decision] = []
    dated: Dict[str, List[Tuple[Entry, dt.date]]] = defaultdict(list)
    for entry in inventory:
        day = entry_date(entry.kind, entry.name)
        if day is None:
            kept.append(Decision(entry, f"{UNKNOWN_NAME}: no date in it"))
        else:
            dated[entry.kind].append((entry, day))
    for kind, entries in dated.items():
        newest = newest_versions(entries, policy.versions[kind]) if kind in policy.versions else frozenset()
        for entry, day in entries:
            reason = protected_because(protection, entry, day)
            if reason:
                kept.append(Decision(entry, reason))
            elif kind in policy.days:
                days = policy.days[kind]
                if expired_by_days(day, today, days):
                    deletions.append(Decision(entry, f"dated {day}, older than {days} days"))
                else:
                    kept.append(Decision(entry, f"within {days} days"))
            elif kind in policy.versions:
                count = policy.versions[kind]
                if entry in newest:
                    kept.append(Decision(entry, f"one of the {count} newest of its series"))
                else:
                    deletions.append(Decision(entry, f"older than the {count} newest of its series"))
            else:
                kept.append(Decision(entry, "no retention policy for this kind"))
    order = {kind: i for i, kind in enumerate(KINDS)}

    def by_place(decision: Decision):
        return order.get(decision.entry.kind, len(order)), decision.entry.uri

    return Plan(today=today, deletions=tuple(sorted(deletions, key=by_place)), kept=tuple(sorted(kept, key=by_place)))


# ---- the staged dataset's manifest ----------------------------------------------------------------


def staged_manifest_without(manifest: Mapping, dates: Sequence[str], updated_at: str) -> dict:
    """``_STAGED.json`` once ``dates`` are deleted: their entries gone, and the runs that neither serve a date
    nor staged a remembered input any more (stage_events.merged_manifest's rule).

    Consumers check a staged dataset's contents against these counts, so the
    manifest must stop counting a date as soon as its directory goes. ``inputs``
    stays as it is: it is how staging knows a file was read already, whether or
    not the dates it touched are still kept.
    """
    gone = set(dates)
    remaining = {d: info for d, info in (manifest.get("dates") or {}).items() if d not in gone}
    inputs = manifest.get("inputs") or {}
    live = {info.get("run") for info in remaining.values()} | {info.get("run") for info in inputs.values()}
    runs = {run: info for run, info in (manifest.get("runs") or {}).items() if run in live}
    return {**manifest, "updated_at": updated_at, "dates": remaining, "runs": runs}
