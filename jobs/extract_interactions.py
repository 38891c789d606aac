"""extract_interactions: event logs -> user-track interactions, index tables, top tracks.

The seed's ``collect_data`` notebook as a job. Output, under
``<root>/interactions/<run>/``:

- ``interactions/``  Parquet: user, track, plays, total_time, max_time, label, starts, user_idx, track_idx
  (``starts``: sessions the user began with this track — see :func:`mark_session_starts`)
- ``users/``, ``tracks/``  Parquet index tables (dense ids for the model)
- ``top_tracks.json``  the ``extract.top_tracks`` tracks with most positive plays, most popular first
- ``_MANIFEST.json`` (line counts, malformed lines by reason, row counts), ``_SUCCESS``

and ``<root>/interactions/LATEST`` names the run. Malformed lines go to
``<root>/quarantine/extract_interactions/<run>/`` with their reason and file.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import event_log
from common.config import load_config
from common.manifest import sha256, write_manifest
from common.paths import resolve
from common.schemas import CATALOG_SCHEMA
from common.spark import add_job_arguments, get_session
from common.storage import HadoopStorage, atomic_output, join, write_pointer

log = logging.getLogger(__name__)


# ---- pure transforms (tested on tiny DataFrames) -------------------------------------------


def drop_duplicate_events(events: DataFrame) -> DataFrame:
    """The same event logged twice (a log uploaded twice) counts once."""
    return events.dropDuplicates(["message", "timestamp", "user", "track", "time"])


def mark_unknown_tracks(parsed: DataFrame, catalog_tracks: Optional[DataFrame]) -> DataFrame:
    """Valid-looking events whose track is not in the catalog become malformed (``unknown_track``)."""
    if catalog_tracks is None:
        return parsed
    known = catalog_tracks.select(F.col("track").alias("_known")).distinct()
    joined = parsed.join(F.broadcast(known), parsed["track"] == known["_known"], "left")
    reason = F.when(
        F.col("reason").isNull() & F.col("_known").isNull(), F.lit("unknown_track")
    ).otherwise(F.col("reason"))
    return joined.withColumn("reason", reason).drop("_known")


def mark_session_starts(events: DataFrame) -> DataFrame:
    """Add ``start`` (0/1): this ``next`` event opens a session — the user's first event, or the first after a ``last``.

    The first track of a session is the listener's own pick, and the client
    logs it with time 0 (the course's protocol), so the time label never sees
    it; yet it is the strongest sign of what the user wants. At equal
    timestamps a ``last`` sorts before a ``next``, so a session that starts in
    the millisecond the previous one ended still counts.
    """
    is_last = (F.col("message") == "last").cast("int")
    order = Window.partitionBy("user").orderBy(F.col("timestamp"), is_last.desc())
    after_last = F.coalesce(F.lag(is_last).over(order) == 1, F.lit(True))
    return events.withColumn("start", ((F.col("message") == "next") & after_last).cast("int"))


def aggregate_interactions(events: DataFrame, threshold: float) -> DataFrame:
    """One row per (user, track): plays, total and max listening time, implicit label, session starts.

    ``label = max(time) > threshold``: strictly greater, so a listen of exactly
    the threshold is not a positive (the seed's ``time > 0.8``). ``starts``
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


def top_tracks(events: DataFrame, threshold: float, n: int) -> list:
    """The ``n`` tracks with most positive plays (time > threshold); ties by track id."""
    rows = (
        events.where(F.col("time") > F.lit(threshold))
        .groupBy("track")
        .count()
        .orderBy(F.desc("count"), F.asc("track"))
        .limit(n)
        .collect()
    )
    return [int(r["track"]) for r in rows]


def with_indices(interactions: DataFrame, users: DataFrame, tracks: DataFrame) -> DataFrame:
    return (
        interactions.join(users, "user")
        .join(F.broadcast(tracks), "track")
        .select("user", "track", "plays", "total_time", "max_time", "label", "starts", "user_idx", "track_idx")
    )


# ---- I/O --------------------------------------------------------------------------------------


def read_catalog(spark: SparkSession, uri: str) -> DataFrame:
    return spark.read.schema(CATALOG_SCHEMA).json(uri).where(F.col("track").isNotNull())


def run(spark: SparkSession, config: dict, input_uri: str, run_id: str, catalog_uri: Optional[str]) -> dict:
    settings = config["extract"]
    threshold = float(settings["threshold"])
    root = resolve(config, "")
    storage = HadoopStorage(spark)

    catalog = read_catalog(spark, catalog_uri).cache() if catalog_uri else None
    parsed = mark_unknown_tracks(event_log.parse_lines(event_log.read_lines(spark, input_uri)), catalog)
    parsed = parsed.persist()
    total, malformed = event_log.count_reasons(parsed)
    valid, bad = event_log.split_valid(parsed)
    log.info("read %d lines from %s, %d malformed", total, input_uri, sum(malformed.values()))

    quarantine_uri = join(root, "quarantine", "extract_interactions", run_id)
    if malformed:
        with atomic_output(storage, quarantine_uri) as tmp:
            bad.write.mode("overwrite").json(join(tmp, "lines"))
        log.warning("quarantined %s -> %s", malformed, quarantine_uri)
    event_log.check_error_ratio(total, malformed, float(settings["max_error_ratio"]), input_uri)

    events = drop_duplicate_events(valid) if settings.get("dedupe", True) else valid
    events = events.persist()
    valid_count = total - sum(malformed.values())
    event_count = events.count()

    interactions = aggregate_interactions(events, threshold)
    users = dense_index(interactions, "user", "user_idx")
    tracks = track_index(catalog, interactions)
    indexed = with_indices(interactions, users, tracks)
    top = top_tracks(events, threshold, int(settings["top_tracks"]))
    top_json = json.dumps(top).encode()

    final = join(root, "interactions", run_id)
    with atomic_output(storage, final) as tmp:
        indexed.write.mode("overwrite").parquet(join(tmp, "interactions"))
        users.write.mode("overwrite").parquet(join(tmp, "users"))
        tracks.write.mode("overwrite").parquet(join(tmp, "tracks"))
        storage.write_bytes(join(tmp, "top_tracks.json"), top_json)
        stats = spark.read.parquet(join(tmp, "interactions")).agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("label").alias("positives"),
            F.sum("starts").alias("session_starts"),
            F.countDistinct("user").alias("users"),
        ).first()
        manifest = write_manifest(
            storage,
            tmp,
            {
                "job": "extract_interactions",
                "run": run_id,
                "input": input_uri,
                "catalog": catalog_uri,
                "threshold": threshold,
                "lines": total,
                "malformed": malformed,
                "quarantine": quarantine_uri if malformed else None,
                "duplicates_dropped": valid_count - event_count,
                "events": event_count,
                "row_count": int(stats["rows"]),
                "positives": int(stats["positives"] or 0),
                "session_starts": int(stats["session_starts"] or 0),
                "users": int(stats["users"]),
                "tracks": spark.read.parquet(join(tmp, "tracks")).count(),
                "top_tracks": len(top),
                "top_tracks_sha256": sha256(top_json),
            },
        )
    write_pointer(storage, join(root, "interactions", "LATEST"), run_id)
    parsed.unpersist()
    events.unpersist()
    log.info("interactions %s: %d rows, %d users, %d positives", final, manifest["row_count"], manifest["users"], manifest["positives"])
    return manifest


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="extract_interactions", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--input", help="event logs URI, directory or glob (default: datasets.events)")
    parser.add_argument("--catalog", help="tracks catalog URI (default: datasets.catalog; 'none' to index seen tracks)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    input_uri = resolve(config, args.input or config["datasets"]["events"])
    catalog = args.catalog if args.catalog is not None else config["datasets"].get("catalog")
    catalog_uri = None if catalog in (None, "", "none") else resolve(config, catalog)
    spark = get_session("extract_interactions", args.profile)
    manifest = run(spark, config, input_uri, args.run, catalog_uri)
    print(json.dumps({k: manifest[k] for k in ("run", "lines", "malformed", "events", "row_count", "users", "positives")}))
    return 0
