"""The fast path (sim/simulate_logs.py): botify's training logs without HTTP.

Fast tests check the lines themselves on a small world: count, format, arms,
first-track time, determinism across partitionings, and where TopPop's list
comes from. The slow test plays the same sessions through a real botify
(gunicorn, a private redis-server, HTTP on loopback) and compares what both
logs say per arm, with the jobs' own session rule.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common.event_log_reader import event_date, parse_lines, read_lines, split_valid
from common.experiments import assign
from common.schemas import EVENT_FIELDS
from common.sessions import with_sessions
from common.storage import FsspecStorage, join, local_path, write_pointer
from sim.env import MusicEnv
from sim.experiment_agent import ExperimentAgent
from sim.simulate_logs import Plan, day_plans, parse_args, run, served_top_tracks, session_lines
from sim.world import WorldParams, generate_world, write_world

BASELINE = {"BASELINE": {"split": 3, "treatments": {"C": "Random", "T1": "TopPop", "T2": "StickyArtist"}}}


def plan(**kw) -> Plan:
    values = dict(seed=5, first_track_time=0.0, max_steps=1000, experiments=BASELINE, active=["BASELINE"],
                  top_tracks=None, top_k=100)
    values.update(kw)
    return Plan(**values)


def lines_of(env, p, episodes):
    agent = ExperimentAgent(p.experiments, p.active, p.top_tracks, p.top_k)
    return [json.loads(line) for line in session_lines(env, agent, p, episodes)]


def sessions_of(events):
    """Consecutive events up to each ``last`` (one process plays episodes in order)."""
    out, current = [], []
    for e in events:
        current.append(e)
        if e["message"] == "last":
            out.append(current)
            current = []
    assert current == []
    return out


def test_lines_are_botify_events_one_per_request(small_world):
    tracks, users = small_world
    env = MusicEnv(tracks, users)
    top = list(range(500, 520))
    events = lines_of(env, plan(first_track_time=1.0, top_tracks=top, top_k=10), range(300))
    sessions = sessions_of(events)
    assert len(sessions) == 300
    arms = Counter()
    for episode, session in enumerate(sessions):
        user = session[0]["user"]
        arm = assign(user, "BASELINE", 3)
        arms[arm] += 1
        assert [list(e) for e in session] == [list(EVENT_FIELDS)] * len(session)
        assert all(e["user"] == user and e["experiments"] == {"BASELINE": arm} and e["latency"] == 0.0 for e in session)
        assert [e["message"] for e in session] == ["next"] * (len(session) - 1) + ["last"]
        assert session[0]["time"] == 1.0  # run_config.first_track_time on the session's first request
        assert session[-1]["recommendation"] is None
        # Each request reports the track recommended by the previous answer, as the HTTP client does.
        assert [e["track"] for e in session[1:]] == [e["recommendation"] for e in session[:-1]]
        stamps = [e["timestamp"] for e in session]
        assert stamps == list(range(stamps[0], stamps[0] + len(session)))
        assert stamps[0] == 1_700_000_000_000 + episode * 1001
        for e in session[:-1]:
            if arm == "T1":
                assert e["recommendation"] in top[:10]
            if arm == "T2":
                assert tracks.artist_list[e["recommendation"]] == tracks.artist_list[e["track"]]
    assert min(arms.values()) > 60  # all three arms were played


def test_toppop_without_a_list_serves_random_as_botify_does(small_world):
    tracks, users = small_world
    events = lines_of(MusicEnv(tracks, users), plan(), range(300))
    toppop = {e["recommendation"] for e in events if e["experiments"]["BASELINE"] == "T1" and e["message"] == "next"}
    assert len(toppop) > 200  # not a 100-track pool


def test_a_recommender_that_needs_botify_state_is_refused():
    with pytest.raises(ValueError, match="Ranked"):
        ExperimentAgent({"AB": {"split": 2, "treatments": {"C": "StickyArtist", "T1": "Ranked"}}}, ["AB"], None, 100)
    with pytest.raises(ValueError, match="NOPE"):
        ExperimentAgent(BASELINE, ["NOPE"], None, 100)


def write_small_world(root: str, users: int = 300, seed: int = 11, tracks: int = 2000) -> None:
    world = generate_world(WorldParams(tracks=tracks, artists=tracks // 10, genres=10, users=users), seed=seed)
    write_world(world, local_path(join(root, "world")))


def job_config(root: str) -> dict:
    return {"storage": {"root": root}}


def dataset_lines(root: str, dataset: str):
    folder = Path(local_path(join(root, "logs", dataset)))
    parts = sorted(folder.glob("part-*.jsonl"))
    return parts, [line for p in parts for line in p.read_text().splitlines()]


def test_job_output_does_not_depend_on_partitioning_and_reruns_replace_it(spark, warehouse):
    write_small_world(warehouse, users=60, tracks=500)
    args = ["--sessions", "150", "--seed", "3", "--dataset", "train"]
    first = run(spark, job_config(warehouse), parse_args(args + ["--partitions", "1"]))
    parts, lines = dataset_lines(warehouse, "train")
    assert len(parts) == 1 and first["events"] == len(lines)
    assert sum(json.loads(line)["message"] == "last" for line in lines) == 150
    # What the jobs read: every line a valid event, none quarantined.
    parsed = parse_lines(read_lines(spark, join(warehouse, "logs", "train")))
    assert parsed.where(F.col("reason").isNotNull()).count() == 0
    # Again in 3 tasks: the same lines, the old output replaced, nothing left beside it.
    again = run(spark, job_config(warehouse), parse_args(args + ["--partitions", "3"]))
    parts_again, lines_again = dataset_lines(warehouse, "train")
    assert len(parts_again) == 3 and again["events"] == len(lines_again)
    assert sorted(lines_again) == sorted(lines)
    assert os.listdir(local_path(join(warehouse, "logs"))) == ["train"]


def test_auto_top_tracks_are_the_list_botify_would_load(warehouse):
    storage = FsspecStorage()
    botify = {"storage": {"root": warehouse},
              "artifacts": {"recommendations": "recommendations", "version": "latest", "interactions": "interactions"}}
    assert served_top_tracks(storage, botify, 2000) == (None, None)
    run_uri = join(warehouse, "interactions", "r1")
    storage.write_bytes(join(run_uri, "top_tracks.json"), b"[7, 3, 9]")
    assert served_top_tracks(storage, botify, 2000) == (None, None)  # no pointer, no complete run
    storage.write_bytes(join(run_uri, "_SUCCESS"), b"")
    write_pointer(storage, join(warehouse, "interactions", "LATEST"), "r1")
    assert served_top_tracks(storage, botify, 2000) == ([7, 3, 9], join(run_uri, "top_tracks.json"))
    recs = join(warehouse, "recommendations", "v1")
    storage.write_bytes(join(recs, "top_tracks.json"), b"[1, 2]")
    storage.write_bytes(join(recs, "_SUCCESS"), b"")
    write_pointer(storage, join(warehouse, "recommendations", "LATEST"), "v1")
    assert served_top_tracks(storage, botify, 2000)[0] == [1, 2]  # the served version's list wins
    storage.write_bytes(join(recs, "top_tracks.json"), b"[1, 5000]")
    with pytest.raises(ValueError, match="track ids of this world"):
        served_top_tracks(storage, botify, 2000)


# -- calendar days (--start/--days, --date) ---------------------------------------------------------------------

CALENDAR = ["--sessions", "120", "--seed", "3", "--partitions", "2"]
DAYS = ("2024-02-28", "2024-02-29")  # a leap day: the dates come from the calendar, not from adding 86400 s by hand


def utc_day_ms(day: str) -> range:
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()) * 1000
    return range(start, start + 86_400_000)


def day_files(root: str, dataset: str) -> dict:
    folder = Path(local_path(join(root, "logs", dataset)))
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


@pytest.fixture(scope="module")
def calendar_run(spark, tmp_path_factory):
    """Two days of 120 sessions in one run: (warehouse, manifest)."""
    root = "file://" + str(tmp_path_factory.mktemp("calendar"))
    write_small_world(root, users=60, tracks=500)
    manifest = run(spark, job_config(root), parse_args(CALENDAR + ["--start", DAYS[0], "--days", "2"]))
    return root, manifest


def test_each_days_sessions_lie_inside_that_utc_day_over_the_same_users(spark, calendar_run):
    root, manifest = calendar_run
    files = day_files(root, "train")
    assert sorted(files) == [f"part-{day}-{i:05d}.jsonl" for day in DAYS for i in range(2)]
    assert manifest["days"] == list(DAYS) and manifest["events"] == sum(f.count(b"\n") for f in files.values())
    users = {}
    for day in DAYS:
        events = [json.loads(line) for name, data in files.items() if day in name for line in data.splitlines()]
        assert sum(e["message"] == "last" for e in events) == 120
        assert all(e["timestamp"] in utc_day_ms(day) for e in events)
        users[day] = [e["user"] for e in events if e["message"] == "last"]
    # The world's users come back, in sessions of the day's own.
    assert set(users[DAYS[0]]) & set(users[DAYS[1]]) and users[DAYS[0]] != users[DAYS[1]]
    # The jobs' reader dates every line by the day in its file's name: stage_events files each day under its date.
    parsed = parse_lines(read_lines(spark, join(root, "logs", "train")))
    dated = parsed.select(F.col("reason"), F.regexp_extract("source", r"part-(\d{4}-\d\d-\d\d)-", 1).alias("file"),
                          event_date().alias("date")).distinct().collect()
    assert sorted((r["reason"], r["file"], r["date"]) for r in dated) == [(None, day, day) for day in DAYS]


def test_a_date_is_a_one_day_calendar_and_reruns_repeat(spark, calendar_run):
    root, _ = calendar_run
    assert parse_args(["--sessions", "1", "--date", DAYS[1]]).calendar == \
        parse_args(["--sessions", "1", "--start", DAYS[1], "--days", "1"]).calendar == [dt.date(2024, 2, 29)]
    run(spark, job_config(root), parse_args(CALENDAR + ["--date", DAYS[1], "--dataset", "one"]))
    run(spark, job_config(root), parse_args(CALENDAR + ["--start", DAYS[0], "--days", "2", "--dataset", "again"]))
    both = day_files(root, "train")
    # A day's files do not depend on the other days asked for, and the same arguments write the same bytes.
    assert day_files(root, "one") == {name: data for name, data in both.items() if DAYS[1] in name}
    assert day_files(root, "again") == both


@pytest.mark.parametrize("extra", [["--date", "2024-02-29", "--clock-ms", "5"], ["--date", "2024-02-29", "--start",
                                   "2024-02-28"], ["--days", "2"], ["--start", "2024-02-28", "--days", "0"],
                                   ["--date", "2024-02-30"]])
def test_calendar_options_are_refused_when_contradictory(extra):
    with pytest.raises(SystemExit):
        parse_args(["--sessions", "1", *extra])


def test_a_day_holds_only_sessions_that_cannot_overlap():
    day = [dt.date(2024, 2, 29)]
    assert len(day_plans(plan(), day, 86_400_000 // 1001)) == 1
    with pytest.raises(ValueError, match="at most 86313"):
        day_plans(plan(), day, 86_400_000 // 1001 + 1)


# -- equivalence with real traffic through botify ---------------------------------------------------------------

def per_arm(spark, uri: str) -> dict:
    """Per arm: sessions, mean and s.e. of session time and length, with the jobs' session rule."""
    valid, _ = split_valid(parse_lines(read_lines(spark, uri)))
    sessions = with_sessions(valid).groupBy("user", "session").agg(
        F.first(F.col("experiments")["BASELINE"]).alias("arm"),
        F.sum("time").alias("time"),
        F.sum((F.col("message") == "next").cast("int")).alias("length"),
    )
    rows = sessions.groupBy("arm").agg(
        F.count("*").alias("n"), F.mean("time").alias("time"), F.stddev("time").alias("time_sd"),
        F.mean("length").alias("length"), F.stddev("length").alias("length_sd"),
    ).collect()
    return {r["arm"]: r.asDict() for r in rows}


def starts(spark, uri: str) -> Counter:
    """(user, first track, its time) of every session, by the jobs' own rule (extract_interactions' starts)."""
    from jobs.extract_interactions import mark_session_starts

    valid, _ = split_valid(parse_lines(read_lines(spark, uri)))
    rows = mark_session_starts(valid).where(F.col("start") == 1).select("user", "track", "time").collect()
    return Counter((r["user"], r["track"], r["time"]) for r in rows)


def ties_the_chain_leaves_open(folder: Path) -> int:
    """Millisecond ties of one user's ``next`` events whose order the recommendation chain does not decide:
    more than two, or two that each answer the other (or neither does)."""
    groups = {}
    for line in (line for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()):
        e = json.loads(line)
        if e["message"] == "next":
            groups.setdefault((e["user"], e["timestamp"]), []).append(e)
    open_ties = 0
    for tied in groups.values():
        if len(tied) == 2:
            a, b = tied
            open_ties += (a["recommendation"] == b["track"]) == (b["recommendation"] == a["track"])
        else:
            open_ties += len(tied) > 2
    return open_ties


@pytest.mark.slow
def test_fast_path_logs_match_botify_over_http(spark, warehouse, tmp_path):
    from sim.run import run as run_sessions
    from sim.settings import load_env_config
    from testkit.served import botify_serve

    sessions, seed = 1500, 77
    write_small_world(warehouse, users=400)
    world_dir = local_path(join(warehouse, "world"))
    with botify_serve(warehouse, tmp_path, "--workers", "2", "--set", "active_experiments=[BASELINE]") as (url, _):
        config = load_env_config("env.yml", world_dir=world_dir)
        config["remote_recommender_config"]["port"] = int(url.rsplit(":", 1)[1])
        # One process: a user's sessions never overlap in botify's log, so the session rule cuts them exactly.
        run_sessions(config, "remote", sessions, seed, processes=1, progress=False)
    http_uri = "file://" + str(tmp_path / "logs" / "botify")
    run(spark, job_config(warehouse), parse_args(["--sessions", str(sessions), "--seed", str(seed)]))
    fast_uri = join(warehouse, "logs", "train")

    # Episode i starts the same way in both: same user, same first track, same reported time. Against botify a
    # session's first two requests often share a millisecond; the jobs' rule orders them by the recommendation
    # chain, so no start may differ except at a tie the chain leaves open (none expected).
    http_starts, fast_starts = starts(spark, http_uri), starts(spark, fast_uri)
    assert sum(http_starts.values()) == sum(fast_starts.values()) == sessions
    assert sum((fast_starts - http_starts).values()) <= ties_the_chain_leaves_open(tmp_path / "logs" / "botify")
    http, fast = per_arm(spark, http_uri), per_arm(spark, fast_uri)
    assert set(http) == set(fast) == {"C", "T1", "T2"}
    for arm in http:
        assert http[arm]["n"] == fast[arm]["n"]
        for metric in ("time", "length"):
            se = math.sqrt((http[arm][f"{metric}_sd"] ** 2 + fast[arm][f"{metric}_sd"] ** 2) / http[arm]["n"])
            assert abs(http[arm][metric] - fast[arm][metric]) <= 2 * se, (arm, metric, http[arm], fast[arm])
    # The arms differ as the calibration says (StickyArtist well above Random): the comparison has power.
    assert fast["T2"]["time"] > fast["C"]["time"] + 4 * math.sqrt(
        (fast["T2"]["time_sd"] ** 2 + fast["C"]["time_sd"] ** 2) / fast["C"]["n"])
