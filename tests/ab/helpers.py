"""Shared helpers for the A/B tests: events through the real parser, an independent pandas reference."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import pandas as pd

from common import event_log_reader
from jobs import analyze_ab

DATA = Path(__file__).resolve().parent / "data"
COURSE_LOG = DATA / "course_botify.jsonl"


def event(message, ts, user, track=1, time=0.5, latency=0.001, treatment="C", experiment="AB", rec=None):
    e = {"message": message, "timestamp": ts, "user": user, "track": track, "time": time, "latency": latency,
         "recommendation": rec, "experiments": {experiment: treatment} if treatment else {}}
    return e


def parsed_lines(spark, lines: Iterable[Union[str, dict]]):
    rows = [(line if isinstance(line, str) else json.dumps(line), "test") for line in lines]
    return event_log_reader.parse_lines(spark.createDataFrame(rows, "line string, source string"))


def valid_events(spark, lines, experiment="AB"):
    valid, _ = event_log_reader.split_valid(parsed_lines(spark, lines))
    return analyze_ab.with_treatment(valid, experiment)


def pandas_user_metrics(events: pd.DataFrame, experiment: str = "AB", trailing: str = "drop") -> pd.DataFrame:
    """An independent reference: sort, cumulative count of `last` per user, groupby; no Spark."""
    df = events.copy()
    df["treatment"] = df["experiments"].map(lambda m: (m or {}).get(experiment))
    df["is_last"] = (df["message"] == "last").astype(int)
    # Exact duplicates only: every field of the event (the experiments map as sorted items).
    df["_experiments"] = df["experiments"].map(lambda m: tuple(sorted((m or {}).items())))
    df = df.drop_duplicates(["message", "timestamp", "user", "track", "time", "latency", "recommendation", "_experiments"])
    df = df.sort_values(["user", "timestamp", "is_last", "track", "time"], kind="stable")
    df["session"] = df.groupby("user")["is_last"].cumsum() - df["is_last"]
    lasts = df.groupby("user")["is_last"].transform("sum")
    df["complete"] = df["session"] < lasts
    treatments = df.groupby("user")["treatment"].agg(lambda s: set(s.dropna()))
    ok_users = treatments[treatments.map(len) == 1]
    df = df[df["user"].isin(ok_users.index)]
    if trailing == "drop":
        df = df[df["complete"]]
    df = df.assign(treatment=df["user"].map(lambda u: next(iter(ok_users[u]))))
    sessions = df.groupby(["user", "treatment", "session"]).agg(
        length=("time", "size"), time=("time", "sum"), lat_sum=("latency", "sum"), lat_n=("latency", "count"))
    users = sessions.groupby(["user", "treatment"]).agg(
        sessions=("length", "size"), mean_session_length=("length", "mean"), mean_session_time=("time", "mean"),
        lat_sum=("lat_sum", "sum"), lat_n=("lat_n", "sum"))
    with np.errstate(invalid="ignore", divide="ignore"):
        users["mean_request_time"] = users["lat_sum"] / users["lat_n"].where(users["lat_n"] > 0)
    return users.drop(columns=["lat_sum", "lat_n"]).reset_index().sort_values("user", ignore_index=True)


def read_jsonl(paths) -> pd.DataFrame:
    frames = [pd.read_json(p, lines=True, dtype=False) for p in paths]
    return pd.concat(frames, ignore_index=True)
