"""Spark schemas of the data contracts in docs/design.md (event log, catalog)."""
from __future__ import annotations

from pyspark.sql import types as T

EVENT_FIELDS = ("message", "timestamp", "user", "track", "time", "latency", "recommendation", "experiments")
MESSAGES = ("next", "last")

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
