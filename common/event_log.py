"""Reading botify event logs (DESIGN.md contract) in Spark, with malformed lines kept aside.

Every line gets either a typed event or a ``reason`` naming what is wrong with
it, so a job can count malformed lines by reason, quarantine them with their
source file, and go on with the valid ones. Spark SQL only: no Python UDFs.
"""
from __future__ import annotations

from typing import Dict, Tuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.schemas import MESSAGES, RAW_EVENT_SCHEMA

TYPED_FIELDS = ("message", "timestamp", "user", "track", "time", "latency", "recommendation", "experiments")


def read_lines(spark: SparkSession, uri: str) -> DataFrame:
    """Raw lines of every file under ``uri`` (a file, a directory or a glob), with their source file."""
    return spark.read.option("recursiveFileLookup", "false").text(uri).select(
        F.col("value").alias("line"), F.input_file_name().alias("source")
    )


def parse_lines(lines: DataFrame) -> DataFrame:
    """Add typed event columns and ``reason`` (null when the line is a valid event)."""
    # One JSON parse per line: the parser itself reports what is not a JSON object.
    schema = T.StructType(RAW_EVENT_SCHEMA.fields + [T.StructField("_corrupt", T.StringType())])
    df = lines.withColumn("_e", F.from_json("line", schema, {"columnNameOfCorruptRecord": "_corrupt"}))
    message = F.col("_e.message")
    timestamp = F.col("_e.timestamp").try_cast("bigint")
    user = F.col("_e.user").try_cast("bigint")
    track = F.col("_e.track").try_cast("bigint")
    time = F.col("_e.time").try_cast("double")
    latency = F.col("_e.latency").try_cast("double")
    recommendation = F.col("_e.recommendation").try_cast("bigint")

    def missing(name: str) -> Column:
        return F.col(f"_e.{name}").isNull()

    reason = (
        F.when(F.col("_e._corrupt").isNotNull() | F.col("line").isNull(), F.lit("not_json_object"))
        .when(missing("message"), "missing_message")
        .when(~message.isin(*MESSAGES), "bad_message")
        .when(missing("user"), "missing_user")
        .when(user.isNull() | (user < 0), "bad_user")
        .when(missing("track"), "missing_track")
        .when(track.isNull() | (track < 0), "bad_track")
        .when(missing("time"), "missing_time")
        .when(time.isNull() | F.isnan(time) | (time < 0) | (time > 1), "bad_time")
        .when(missing("timestamp"), "missing_timestamp")
        .when(timestamp.isNull(), "bad_timestamp")
        .when(~missing("latency") & (latency.isNull() | F.isnan(latency) | (latency < 0)), "bad_latency")
        .when(~missing("recommendation") & recommendation.isNull(), "bad_recommendation")
    )
    return df.select(
        "line",
        "source",
        reason.alias("reason"),
        message.alias("message"),
        timestamp.alias("timestamp"),
        user.alias("user"),
        track.alias("track"),
        time.alias("time"),
        latency.alias("latency"),
        recommendation.alias("recommendation"),
        F.coalesce(F.col("_e.experiments"), F.create_map().cast("map<string,string>")).alias("experiments"),
    )


def split_valid(parsed: DataFrame) -> Tuple[DataFrame, DataFrame]:
    """(valid typed events, malformed lines with reason and source)."""
    valid = parsed.where(F.col("reason").isNull()).select(*TYPED_FIELDS)
    bad = parsed.where(F.col("reason").isNotNull()).select("reason", "source", "line")
    return valid, bad


def count_reasons(parsed: DataFrame) -> Tuple[int, Dict[str, int]]:
    """(total lines, malformed lines per reason) in one pass."""
    rows = parsed.groupBy("reason").count().collect()
    total = sum(r["count"] for r in rows)
    return total, {r["reason"]: r["count"] for r in rows if r["reason"] is not None}


class TooManyMalformed(RuntimeError):
    """The malformed share of the input exceeds the configured ratio; nothing was published."""


def check_error_ratio(total: int, malformed: Dict[str, int], max_ratio: float, where: str) -> None:
    bad = sum(malformed.values())
    if total == 0:
        raise TooManyMalformed(f"{where}: no input lines")
    if bad / total > max_ratio:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(malformed.items()))
        raise TooManyMalformed(
            f"{where}: {bad} of {total} lines malformed ({bad / total:.4%} > max_error_ratio {max_ratio:.4%}): {detail}"
        )
