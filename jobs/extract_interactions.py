"""extract_interactions: event logs -> user-track interactions, index tables, top tracks.

The original course's ``collect_data`` notebook as a job. Output, under
``<root>/interactions/<run>/``:

- ``interactions/``  Parquet: user, track, plays, total_time, max_time, label, starts, user_idx, track_idx
  (``starts``: sessions the user began with this track — see :func:`mark_session_starts`)
- ``users/``, ``tracks/``  Parquet index tables (dense ids for the model)
- ``top_tracks.json``  the ``extract.top_tracks`` tracks with most positive plays, most popular first
- ``_MANIFEST.json`` (line counts, malformed lines by reason, unknown tracks, row counts), ``_SUCCESS``

The input is either staged events (``events/<dataset>``, from stage_events:
Parquet, already validated and deduplicated, read with its schema; the
manifest's line and malformed counts are staging's) or raw JSON logs, which
go through the same validation here. ``<root>/interactions/LATEST`` names
the run. Rejected lines go to
``<root>/quarantine/extract_interactions/<run>/`` with their reason and file:
malformed ones (more than ``extract.max_error_ratio`` of them fails the run
and writes nothing) and events of tracks the catalog does not know
(``unknown_track``: counted apart, never a reason to fail — a client that
asks for made-up tracks must not be able to stop the nightly run).

Staged events are read once: unknown tracks drop out by a broadcast
semi-join in the aggregation's own scan and are counted as the events staging
holds minus those aggregated (read again only when that is not zero); a
dataset holding fewer events than its ``_STAGED.json`` says fails the run.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import event_log_reader, run_record, sessions
from common.config import load_config
from common.manifest import sha256, write_manifest
from common.paths import resolve
from common.schemas import CATALOG_SCHEMA
from common.spark import add_job_arguments, add_window_arguments, get_session, window_of
from common.storage import HadoopStorage, atomic_output, join, write_pointer

log = logging.getLogger(__name__)


# ---- pure transforms (tested on tiny DataFrames) -------------------------------------------


def mark_session_starts(events: DataFrame) -> DataFrame:
    """Add ``start`` (0/1): this ``next`` event opens a session (see :mod:`common.sessions`).

    The first track of a session is the listener's own pick; botify logs the
    listening time the client reports for it, which says nothing about how
    much the user liked it (this project's simulator sends 0.0, the course's
    client 1.0; ``run_config.first_track_time``), so the time label cannot be
    trusted for it, yet it is the strongest sign of what the user wants.
    """
    opened = sessions.with_sessions(events)
    start = ((F.col("message") == "next") & F.col("opens_session")).cast("int")
    return opened.withColumn("start", start).drop("session", "opens_session")


def aggregate_interactions(events: DataFrame, threshold: float) -> DataFrame:
    """One row per (user, track): plays, total and max listening time, implicit label, session starts,
    and ``positive_plays`` (plays longer than the threshold: what :func:`top_tracks` ranks by; not published).

    ``label = max(time) > threshold``: strictly greater, so a listen of exactly
    the threshold is not a positive (the course notebook's ``time > 0.8``). ``starts``
    counts the user's sessions that began with the track. The window behind
    ``starts`` partitions by user, which the grouping by (user, track) reuses:
    no extra shuffle.
    """
    return (
        mark_session_starts(events)
        .groupBy("user", "track")
        .agg(
            F.count(F.lit(1)).alias("plays"),
            F.sum("time").alias("total_time"),
            F.max("time").alias("max_time"),
            F.sum("start").cast("int").alias("starts"),
            F.count(F.when(F.col("time") > F.lit(threshold), True)).alias("positive_plays"),
        )
        .withColumn("label", (F.col("max_time") > F.lit(threshold)).cast("int"))
    )


def dense_index(ids: DataFrame, column: str, index_column: str) -> DataFrame:
    """Dense 0..n-1 ids in ascending order of ``column`` (deterministic for the same id set)."""
    window = Window.orderBy(column)
    return ids.select(column).distinct().select(
        column, (F.row_number().over(window) - 1).cast("int").alias(index_column)
    )


def track_index(catalog_tracks: Optional[DataFrame], interactions: DataFrame) -> DataFrame:
    """Track ids follow the catalog when there is one, so the index is stable across runs."""
    source = catalog_tracks if catalog_tracks is not None else interactions
    return dense_index(source, "track", "track_idx")


def top_tracks(interactions: DataFrame, n: int) -> list:
    """The ``n`` tracks with most positive plays (summed over :func:`aggregate_interactions`' rows); ties by
    track id. From the aggregate, not the events: a few million rows instead of a pass over every event."""
    rows = (
        interactions.groupBy("track")
        .agg(F.sum("positive_plays").alias("count"))
        .where(F.col("count") > 0)
        .orderBy(F.desc("count"), F.asc("track"))
        .limit(n)
        .collect()
    )
    return [int(r["track"]) for r in rows]


def with_indices(interactions: DataFrame, users: DataFrame, tracks: DataFrame) -> DataFrame:
    return (
        interactions.join(F.broadcast(users), "user")
        .join(F.broadcast(tracks), "track")
        .select("user", "track", "plays", "total_time", "max_time", "label", "starts", "user_idx", "track_idx")
    )


# ---- I/O --------------------------------------------------------------------------------------


def read_catalog(spark: SparkSession, uri: str) -> DataFrame:
    return spark.read.schema(CATALOG_SCHEMA).json(uri).where(F.col("track").isNotNull())


def run(spark: SparkSession, config: dict, input_uri: str, run_id: str, catalog_uri: Optional[str],
        window: Optional[tuple] = None) -> dict:
    settings = config["extract"]
    threshold = float(settings["threshold"])
    root = resolve(config, "")
    storage = HadoopStorage(spark)
    quarantine_uri = join(root, "quarantine", "extract_interactions", run_id)
    catalog = read_catalog(spark, catalog_uri).cache() if catalog_uri else None
    loaded = event_log_reader.load(spark, storage, input_uri, quarantine_uri, float(settings["max_error_ratio"]), catalog,
                            dedupe=bool(settings.get("dedupe", True)), window=window)
    # The events are read once, by the per-user window and aggregate; its cached result serves the unknown-track
    # count, the user index, the top tracks and the table.
    interactions = aggregate_interactions(loaded.events, threshold).persist()
    loaded = loaded.settle(lambda: int(interactions.agg(F.sum("plays")).first()[0] or 0))  # every event is one play
    users = dense_index(interactions, "user", "user_idx")
    tracks = track_index(catalog, interactions)
    top = top_tracks(interactions, int(settings["top_tracks"]))
    facts = {
        "job": "extract_interactions", "run": run_id, "input": input_uri, "catalog": catalog_uri,
        "threshold": threshold, "lines": loaded.lines, "malformed": loaded.malformed,
        "unknown_tracks": loaded.unknown_tracks, "quarantine": loaded.quarantine, "staged": loaded.deduplicated,
        "window": list(window) if window else None,
    }
    final = join(root, "interactions", run_id)
    with run_record.stage("publish"):
        manifest = publish(spark, storage, final, interactions, users, tracks, top, facts, loaded.valid_lines)
    write_pointer(storage, join(root, "interactions", "LATEST"), run_id)
    loaded.release()
    interactions.unpersist()
    if catalog is not None:
        catalog.unpersist()
    run_record.read("event log lines", input_uri, loaded.lines)
    # Staged input: its malformed lines were staging's to quarantine, and are in its record.
    run_record.quarantined({**({} if loaded.deduplicated else loaded.malformed), "unknown_track": loaded.unknown_tracks})
    for name, rows in (("interactions", manifest["row_count"]), ("users", manifest["users"]), ("tracks", manifest["tracks"])):
        run_record.wrote(name, join(final, name), rows)
    log.info("interactions %s: %d rows, %d users, %d positives", final, manifest["row_count"], manifest["users"], manifest["positives"])
    return manifest


def publish(spark: SparkSession, storage: HadoopStorage, final: str, interactions: DataFrame, users: DataFrame,
            tracks: DataFrame, top: list, facts: dict, valid_lines: int) -> dict:
    """Write the run's tables, top tracks and manifest (counts read back from what was written) at once.

    The index tables are written first and the interactions take their ids from them as written (small,
    broadcast), so neither index is computed twice. The events are the plays summed over what was
    written (every event is one play of one row), so no pass over the events counts them.
    """
    top_json = json.dumps(top).encode()
    with atomic_output(storage, final) as tmp:
        users.write.mode("overwrite").parquet(join(tmp, "users"))
        tracks.write.mode("overwrite").parquet(join(tmp, "tracks"))
        written_users, written_tracks = (spark.read.parquet(join(tmp, name)) for name in ("users", "tracks"))
        with_indices(interactions, written_users, written_tracks).write.mode("overwrite").parquet(join(tmp, "interactions"))
        storage.write_bytes(join(tmp, "top_tracks.json"), top_json)
        stats = spark.read.parquet(join(tmp, "interactions")).agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("label").alias("positives"),
            F.sum("starts").alias("session_starts"),
            F.countDistinct("user").alias("users"),
            F.sum("plays").alias("events"),
        ).first()
        events = int(stats["events"] or 0)
        return write_manifest(storage, tmp, {
            **facts,
            "events": events,
            "duplicates_dropped": valid_lines - events,
            "row_count": int(stats["rows"]),
            "positives": int(stats["positives"] or 0),
            "session_starts": int(stats["session_starts"] or 0),
            "users": int(stats["users"]),
            "tracks": written_tracks.count(),
            "top_tracks": len(top),
            "top_tracks_sha256": sha256(top_json),
        })


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="extract_interactions", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--input", help="event logs URI, directory or glob, or staged events (events/<dataset>, "
                                        "from stage_events) (default: datasets.events)")
    parser.add_argument("--catalog", help="tracks catalog URI (default: datasets.catalog; 'none' to index seen tracks)")
    add_window_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    input_uri = resolve(config, args.input or config["datasets"]["events"])
    catalog = args.catalog if args.catalog is not None else config["datasets"].get("catalog")
    catalog_uri = None if catalog in (None, "", "none") else resolve(config, catalog)
    spark = get_session("extract_interactions", args.profile)
    manifest = run(spark, config, input_uri, args.run, catalog_uri, window_of(args))
    print(json.dumps({k: manifest[k] for k in ("run", "lines", "malformed", "unknown_tracks", "events", "row_count", "users",
                                              "positives")}))
    return 0
