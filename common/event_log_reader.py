"""Reading botify event logs (docs/design.md contract) in Spark, with rejected lines kept aside.

Every line gets either a typed event or a ``reason`` naming what is wrong with
it, so a job can count rejected lines by reason, quarantine them with their
source file, and go on with the valid ones. :func:`load_events` is that whole
intake step (read, parse, check the error ratio, quarantine) for every job.
Spark SQL only: no Python UDFs.

Staged events (``jobs/stage_events.py``) are the same events parsed once:
Parquet partitioned by ``date`` (UTC) with ``_STAGED.json`` beside the
partitions saying what staging read and rejected. :func:`load` reads either
form, so a job given staged data never parses JSON and still reports the lines
and malformed counts staging saw.

Types are strict: ``user``, ``track``, ``timestamp`` and ``recommendation``
must be JSON integers, ``time`` and ``latency`` JSON numbers; a string such
as ``" 17 "`` or ``"0.5"``, a boolean or a float id is rejected with the
field's ``bad_<field>`` reason rather than coerced, because a client that
sends strings is not speaking the protocol and its values cannot be trusted
to mean what the numbers would. The ``experiments`` map is the exception:
its values are names and are read as text.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.schemas import EVENT_FIELDS, EVENT_SCHEMA, MESSAGES
from common.sessions import drop_duplicate_events
from common.storage import Storage, atomic_output, join

log = logging.getLogger(__name__)

# A valid event the job cannot use (its track is not in the catalog): quarantined and
# counted, but not held against max_error_ratio — old logs may hold many and they say
# nothing about whether the log itself is damaged.
NOT_MALFORMED = ("unknown_track",)

_CORRUPT = "_corrupt"
_INF = float("inf")
# Strict: a JSON string "NaN"/"Infinity" is a string, not a number.
_JSON_OPTIONS = {"columnNameOfCorruptRecord": _CORRUPT, "allowNonNumericNumbers": "false"}
_TYPED = T.StructType(EVENT_SCHEMA.fields + [T.StructField(_CORRUPT, T.StringType())])
STAGED_MANIFEST = "_STAGED.json"
# The staged Parquet layout: the event fields, then the partition column (read with this schema, never inferred).
STAGED_SCHEMA = T.StructType(EVENT_SCHEMA.fields + [T.StructField("date", T.StringType(), False)])
_DAY_MS = 86_400_000
# Every field as text: says only whether a key is present (and the line an object).
_PRESENCE = T.StructType([T.StructField(f, T.StringType()) for f in EVENT_FIELDS] + [T.StructField(_CORRUPT, T.StringType())])


def read_lines(spark: SparkSession, uri: Union[str, Sequence[str]]) -> DataFrame:
    """Raw lines of every file under ``uri`` (a file, a directory, a glob, or a list of files), with their source
    file."""
    return spark.read.option("recursiveFileLookup", "false").text(uri if isinstance(uri, str) else list(uri)).select(
        F.col("value").alias("line"), F.input_file_name().alias("source")
    )


def _wrong_type(field: str) -> Column:
    """The field is present but not of its JSON type (parsed alone, so the answer does not
    depend on how the engine reports partial results of a failed line)."""
    dtype = EVENT_SCHEMA[field].dataType
    probe = F.from_json("_text", T.StructType([T.StructField(field, dtype), T.StructField(_CORRUPT, T.StringType())]),
                        _JSON_OPTIONS)
    return F.col("_raw").getField(field).isNotNull() & probe.getField(_CORRUPT).isNotNull()


def _reason() -> Column:
    e = F.col("_e")
    message, user, track, time = e["message"], e["user"], e["track"], e["time"]
    timestamp, latency = e["timestamp"], e["latency"]
    corrupt = e[_CORRUPT].isNotNull()

    def missing(name: str) -> Column:
        # _raw is only parsed for lines the typed parse rejected; for the others a null typed value is a missing key.
        return e[name].isNull() & F.col("_raw").getField(name).isNull()

    def bad(name: str, invalid_value: Column) -> Column:
        return (corrupt & _wrong_type(name)) | invalid_value

    return (
        F.when(F.col("_text").isNull(), F.lit("not_utf8_text"))
        .when(e.isNull(), "blank_line")
        .when(corrupt & F.col("_raw").getField(_CORRUPT).isNotNull(), "not_json_object")
        .when(missing("message"), "missing_message")
        .when(~message.isin(*MESSAGES), "bad_message")
        .when(missing("user"), "missing_user")
        .when(bad("user", user < 0), "bad_user")
        .when(missing("track"), "missing_track")
        .when(bad("track", track < 0), "bad_track")
        .when(missing("time"), "missing_time")
        .when(bad("time", F.isnan(time) | (time < 0) | (time > 1)), "bad_time")
        .when(missing("timestamp"), "missing_timestamp")
        .when(bad("timestamp", F.lit(False)), "bad_timestamp")
        .when(bad("latency", F.isnan(latency) | (latency < 0) | (latency == _INF)), "bad_latency")
        .when(bad("recommendation", F.lit(False)), "bad_recommendation")
        .when(bad("experiments", F.lit(False)), "bad_experiments")
        .when(corrupt, "not_json_object")
    )


def parse_lines(lines: DataFrame) -> DataFrame:
    """Add typed event columns and ``reason`` (null when the line is a valid event)."""
    # Binary junk never reaches the JSON parser: Jackson would guess a UTF-16/32 encoding
    # from its NUL bytes and the line would be judged as something it is not.
    text = F.when(F.is_valid_utf8("line") & ~F.col("line").contains("\x00"), F.col("line"))
    df = lines.withColumn("_text", text).withColumn("_e", F.from_json("_text", _TYPED, _JSON_OPTIONS))
    df = df.withColumn("_raw", F.when(F.col("_e").getField(_CORRUPT).isNotNull(),
                                      F.from_json("_text", _PRESENCE, _JSON_OPTIONS)))
    reason = _reason()
    fields = [F.col("_e").getField(f).alias(f) for f in EVENT_FIELDS if f != "experiments"]
    experiments = F.coalesce(F.col("_e.experiments"), F.create_map().cast("map<string,string>")).alias("experiments")
    return df.select("line", "source", reason.alias("reason"), *fields, experiments)


def event_date() -> Column:
    """The UTC date (``YYYY-MM-DD``) of the event's ``timestamp``, whatever the session time zone."""
    days = F.floor(F.col("timestamp") / F.lit(_DAY_MS)).cast("int")
    return F.date_format(F.date_add(F.lit("1970-01-01").cast("date"), days), "yyyy-MM-dd")


def mark_unknown_tracks(parsed: DataFrame, catalog_tracks: DataFrame) -> DataFrame:
    """Otherwise valid events whose track is not in the catalog get the reason ``unknown_track``."""
    known = catalog_tracks.select(F.col("track").alias("_known")).distinct()
    joined = parsed.join(F.broadcast(known), parsed["track"] == known["_known"], "left")
    reason = F.when(F.col("reason").isNull() & F.col("_known").isNull(), F.lit("unknown_track")).otherwise(F.col("reason"))
    return joined.withColumn("reason", reason).drop("_known")


def split_valid(parsed: DataFrame) -> Tuple[DataFrame, DataFrame]:
    """(valid typed events, rejected lines with reason and source)."""
    valid = parsed.where(F.col("reason").isNull()).select(*EVENT_FIELDS)
    bad = parsed.where(F.col("reason").isNotNull()).select("reason", "source", "line")
    return valid, bad


def count_reasons(parsed: DataFrame) -> Tuple[int, Dict[str, int]]:
    """(total lines, rejected lines per reason) in one pass."""
    rows = parsed.groupBy("reason").count().collect()
    total = sum(r["count"] for r in rows)
    return total, {r["reason"]: r["count"] for r in rows if r["reason"] is not None}


class TooManyMalformed(RuntimeError):
    """The malformed share of the input exceeds the configured ratio; nothing was written."""


def check_error_ratio(total: int, malformed: Dict[str, int], max_ratio: float, where: str) -> None:
    bad = sum(malformed.values())
    if total == 0:
        raise TooManyMalformed(f"{where}: no input lines")
    if bad / total > max_ratio:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(malformed.items()))
        raise TooManyMalformed(
            f"{where}: {bad} of {total} lines malformed ({bad / total:.4%} > max_error_ratio {max_ratio:.4%}): {detail}"
        )


@dataclass
class LoadedEvents:
    """What :func:`load_events` read: the valid events (persisted) and the counts a manifest reports."""

    events: DataFrame
    lines: int
    malformed: Dict[str, int]       # reason -> lines, held against max_error_ratio
    unknown_tracks: int             # valid lines whose track the catalog does not know
    quarantine: Optional[str]       # where the rejected lines went (None: there were none)
    cached: Optional[DataFrame] = None  # what release() unpersists
    duplicates: Optional[int] = None    # exact copies staging already dropped (None: raw logs, not deduplicated)
    # Staged events read through a catalog: counts and quarantines their unknown tracks once the consumer knows
    # how many events came through (see settle).
    pending: Optional[Callable[[int], "LoadedEvents"]] = None
    dates: Optional[Dict[str, int]] = None  # staged: the events _STAGED.json counts for each date read
    windowed: bool = False                  # staged: only some dates were read

    @property
    def valid_lines(self) -> int:
        """Valid lines, exact copies included (``valid_lines`` minus the events used is what dedupe dropped)."""
        return self.lines - sum(self.malformed.values()) - self.unknown_tracks

    @property
    def deduplicated(self) -> bool:
        """Staged: deduplicated by staging, which counted the copies (raw logs are deduplicated by :func:`load`)."""
        return self.duplicates is not None

    def settle(self, came_through: Callable[[], int]) -> "LoadedEvents":
        """The final counts, given how many events the consumer used (asked only when it is needed).

        Raw logs counted their unknown tracks while parsed; staged events read
        through a catalog count them as staging's events minus those that came
        through, so the consumer's own pass over the events is the only one.
        """
        return self if self.pending is None else self.pending(came_through())

    def release(self) -> None:
        (self.cached if self.cached is not None else self.events).unpersist()


def load_events(spark: SparkSession, storage: Storage, input_uri: Union[str, Sequence[str]], quarantine_uri: str,
                max_error_ratio: float, catalog_tracks: Optional[DataFrame] = None) -> LoadedEvents:
    """Read, parse, check the error ratio, quarantine: the intake of every job that reads event logs.

    The ratio is checked before anything is written, so a failed check leaves
    no quarantine behind either. With ``catalog_tracks``, events of tracks
    it does not hold are set aside as ``unknown_track`` (see NOT_MALFORMED).
    """
    parsed = parse_lines(read_lines(spark, input_uri))
    if catalog_tracks is not None:
        parsed = mark_unknown_tracks(parsed, catalog_tracks)
    # The raw line and its file are kept only for rejected lines, so the cache holds a few numbers per event.
    rejected = F.col("reason").isNotNull()
    parsed = parsed.select("reason", F.when(rejected, F.col("line")).alias("line"),
                           F.when(rejected, F.col("source")).alias("source"), *EVENT_FIELDS).persist()
    total, reasons = count_reasons(parsed)
    malformed = {k: v for k, v in reasons.items() if k not in NOT_MALFORMED}
    if not isinstance(input_uri, str):
        input_uri = f"{len(input_uri)} files ({input_uri[0]}, ...)" if len(input_uri) > 1 else input_uri[0]
    log.info("read %d lines from %s, %d malformed, %s", total, input_uri, sum(malformed.values()),
             {k: v for k, v in reasons.items() if k in NOT_MALFORMED} or "no unusable events")
    try:
        check_error_ratio(total, malformed, max_error_ratio, input_uri)
    except TooManyMalformed:
        parsed.unpersist()
        raise
    valid, bad = split_valid(parsed)
    if reasons:
        with atomic_output(storage, quarantine_uri) as tmp:
            bad.write.mode("overwrite").json(join(tmp, "lines"))
        log.warning("quarantined %s -> %s", reasons, quarantine_uri)
    return LoadedEvents(events=valid, lines=total, malformed=malformed,
                        unknown_tracks=sum(v for k, v in reasons.items() if k in NOT_MALFORMED),
                        quarantine=quarantine_uri if reasons else None, cached=parsed)


def is_staged(storage: Storage, uri: str) -> bool:
    return storage.exists(join(uri, STAGED_MANIFEST))


def read_staged_manifest(storage: Storage, uri: str) -> dict:
    return json.loads(storage.read_text(join(uri, STAGED_MANIFEST)))


def read_staged(spark: SparkSession, uri: str, dates: Optional[Sequence[str]] = None) -> DataFrame:
    """The staged events, of ``dates`` only when given: a filter on the partition column, so Spark lists and
    reads those dates' directories alone."""
    events = spark.read.schema(STAGED_SCHEMA).parquet(uri)
    if dates is not None:
        events = events.where(F.col("date").isin(list(dates)))
    return events.select(*EVENT_FIELDS)


Window = Tuple[Optional[str], Optional[str]]  # first and last UTC date (YYYY-MM-DD), inclusive; None: open


def in_window(date: str, window: Optional[Window]) -> bool:
    first, last = window or (None, None)
    return (first is None or date >= first) and (last is None or date <= last)


def load_staged(spark: SparkSession, storage: Storage, uri: str, window: Optional[Window] = None) -> LoadedEvents:
    """Staged events (already valid and deduplicated) with the counts staging recorded; with ``window``, the
    dates inside it only: their events and duplicates, so the lines read are the window's own count."""
    manifest = read_staged_manifest(storage, uri)
    dates = {d: info for d, info in manifest["dates"].items() if in_window(d, window)}
    # A line that did not parse has no date: a window's read counts none (staging's own records hold them).
    runs = manifest["runs"] if window is None else {}
    malformed: Dict[str, int] = {}
    for info in runs.values():
        for reason, n in info["malformed"].items():
            malformed[reason] = malformed.get(reason, 0) + int(n)
    staged = sum(int(d["events"]) for d in dates.values())
    duplicates = sum(int(d["duplicates"]) for d in dates.values())
    quarantines = sorted(info["quarantine"] for info in runs.values() if info.get("quarantine"))
    log.info("staged events %s: %d events of %d dates, %d malformed lines at staging", uri, staged, len(dates),
             sum(malformed.values()))
    return LoadedEvents(events=read_staged(spark, uri, sorted(dates) if window else None),
                        lines=staged + duplicates + sum(malformed.values()),
                        malformed=malformed, unknown_tracks=0, quarantine=", ".join(quarantines) or None,
                        duplicates=duplicates, dates={d: int(info["events"]) for d, info in dates.items()},
                        windowed=window is not None)


def known_tracks_only(events: DataFrame, catalog_tracks: DataFrame) -> DataFrame:
    """The events whose track the catalog holds: a broadcast semi-join, no pass of its own."""
    return events.join(F.broadcast(catalog_tracks.select("track").distinct()), "track", "left_semi")


def load(spark: SparkSession, storage: Storage, uri: str, quarantine_uri: str, max_error_ratio: float,
         catalog_tracks: Optional[DataFrame] = None, dedupe: bool = True,
         window: Optional[Window] = None) -> LoadedEvents:
    """The one intake of the jobs that read events: staged events when ``uri`` is a staged dataset, else the
    raw logs through :func:`load_events`; either way valid events, exact copies dropped (``dedupe``; staging
    always drops them) and counted alike, so no job asks which form it was given.

    With ``catalog_tracks`` the events are those of tracks it holds, and an
    event of an unknown track counts once however often it was uploaded. Raw
    logs quarantine the others as they are parsed. Staged events keep them out
    by a semi-join inside the consumer's own scan, since the catalog belongs to
    the job's run, not to staging; the consumer then calls
    :meth:`LoadedEvents.settle` with what came through, so no pass is spent on a
    catalog that knows every track.

    With ``window`` only the events of those UTC dates: staged events read
    those dates' partitions alone; raw logs are read whole and filtered.
    """
    if not is_staged(storage, uri):
        loaded = load_events(spark, storage, uri, quarantine_uri, max_error_ratio, catalog_tracks)
        if window is not None:
            first, last = window
            dated = event_date()
            keep = (dated >= first if first else F.lit(True)) & (dated <= last if last else F.lit(True))
            loaded = dataclasses.replace(loaded, events=loaded.events.where(keep))
        if not dedupe:
            return loaded
        unknown = loaded.unknown_tracks
        if unknown:  # as staging counts them: exact copies of an unknown track's event are copies, not events
            unknown = drop_duplicate_events(loaded.cached.where(F.col("reason").isin(*NOT_MALFORMED))
                                            .select(*EVENT_FIELDS)).count()
        return dataclasses.replace(loaded, events=drop_duplicate_events(loaded.events), unknown_tracks=unknown)
    loaded = load_staged(spark, storage, uri, window)
    if catalog_tracks is None:
        return loaded
    filtered = dataclasses.replace(loaded, events=known_tracks_only(loaded.events, catalog_tracks))
    filtered.pending = lambda came_through: set_aside_unknown_staged(storage, filtered, came_through, catalog_tracks,
                                                                     uri, quarantine_uri)
    return filtered


def set_aside_unknown_staged(storage: Storage, loaded: LoadedEvents, came_through: int, catalog_tracks: DataFrame,
                             uri: str, quarantine_uri: str) -> LoadedEvents:
    """After a catalog-filtered read of staged events: the ``came_through`` events were of known tracks, so
    staging's count minus them is of unknown ones. Only when that is not zero are the staged events read
    again and those quarantined; a dataset whose contents disagree with its manifest fails the run."""
    loaded = dataclasses.replace(loaded, pending=None)
    staged = loaded.valid_lines - loaded.duplicates
    if came_through == staged:
        return loaded
    read_dates = sorted(loaded.dates) if loaded.windowed else None
    events = read_staged(loaded.events.sparkSession, uri, read_dates)
    marked = mark_unknown_tracks(events.withColumn("reason", F.lit(None).cast("string")), catalog_tracks)
    with atomic_output(storage, quarantine_uri) as tmp:
        marked.where(F.col("reason").isNotNull()) \
            .select("reason", F.lit(uri).alias("source"), F.to_json(F.struct(*EVENT_FIELDS)).alias("line")) \
            .write.mode("overwrite").json(join(tmp, "lines"))
        unknown = events.sparkSession.read.schema("reason string").json(join(tmp, "lines")).count()
    log.warning("quarantined %d events of unknown tracks -> %s", unknown, quarantine_uri)
    if came_through + unknown != staged:
        held = {r["date"]: r["count"] for r in events.groupBy(event_date().alias("date")).count().collect()}
        wrong = [f"{d}: {n} counted, {held.get(d, 0)} held" for d, n in sorted((loaded.dates or {}).items())
                 if held.get(d, 0) != n]
        raise RuntimeError(f"{uri}: {STAGED_MANIFEST} counts {staged} events, the dataset holds "
                           f"{came_through} of known tracks and {unknown} of unknown ones"
                           + (f" (per date: {'; '.join(wrong)})" if wrong else ""))
    quarantine = ", ".join(q for q in (loaded.quarantine, quarantine_uri) if q)
    return dataclasses.replace(loaded, unknown_tracks=unknown, quarantine=quarantine)
