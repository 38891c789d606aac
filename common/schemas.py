"""Spark schemas of the data contracts in DESIGN.md (event log, catalog, outputs)."""
from __future__ import annotations

from pyspark.sql import types as T

EVENT_FIELDS = ("message", "timestamp", "user", "track", "time", "latency", "recommendation", "experiments")
MESSAGES = ("next", "last")

# Parsed first with every scalar as a string: a value of the wrong type then
# survives parsing and is reported by field instead of nulling the whole line.
RAW_EVENT_SCHEMA = T.StructType(
    [
        T.StructField("message", T.StringType()),
        T.StructField("timestamp", T.StringType()),
        T.StructField("user", T.StringType()),
        T.StructField("track", T.StringType()),
        T.StructField("time", T.StringType()),
        T.StructField("latency", T.StringType()),
        T.StructField("recommendation", T.StringType()),
        T.StructField("experiments", T.MapType(T.StringType(), T.StringType())),
    ]
)

EVENT_SCHEMA = T.StructType(
    [
        T.StructField("message", T.StringType(), False),
        T.StructField("timestamp", T.LongType(), False),
        T.StructField("user", T.LongType(), False),
        T.StructField("track", T.LongType(), False),
        T.StructField("time", T.DoubleType(), False),
        T.StructField("latency", T.DoubleType(), True),
        T.StructField("recommendation", T.LongType(), True),
        T.StructField("experiments", T.MapType(T.StringType(), T.StringType()), True),
    ]
)

CATALOG_SCHEMA = T.StructType(
    [
        T.StructField("track", T.LongType(), False),
        T.StructField("artist", T.StringType(), True),
        T.StructField("title", T.StringType(), True),
    ]
)

INTERACTIONS_SCHEMA = T.StructType(
    [
        T.StructField("user", T.LongType(), False),
        T.StructField("track", T.LongType(), False),
        T.StructField("plays", T.LongType(), False),
        T.StructField("total_time", T.DoubleType(), False),
        T.StructField("max_time", T.DoubleType(), False),
        T.StructField("label", T.IntegerType(), False),
        T.StructField("user_idx", T.IntegerType(), False),
        T.StructField("track_idx", T.IntegerType(), False),
    ]
)
