"""Bulk logs: docs/design.md event format, sessions from the user model, experiments hashing, determinism."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from common.experiments import assign
from sim import bulk_logs
from sim.catalog import TrackCatalog

FIELDS = {"message", "timestamp", "user", "track", "time", "latency", "recommendation", "experiments"}


def read_events(directory):
    events = []
    for path in sorted(directory.glob("part-*.jsonl")):
        events.extend(json.loads(line) for line in path.read_text().splitlines())
    return events


def sessions_of(events):
    sessions, current = [], []
    for event in events:
        current.append(event)
        if event["message"] == "last":
            sessions.append(current)
            current = []
    assert not current, "every file ends with a closed session"
    return sessions


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk")
    n = bulk_logs.generate(str(root / "logs"), events=4000, users=200, tracks=600, seed=9, files=2,
                           experiments={"AB": 2, "ALL": 7}, progress=False, policy="sticky")
    bulk_logs.write_catalog(str(root / "tracks.jsonl"), tracks=600, artists=60, seed=9)
    return root, n


def test_exact_count_in_the_design_format(logs):
    root, n = logs
    events = read_events(root / "logs")
    assert n == len(events) == 4000
    assert sorted(p.name for p in (root / "logs").iterdir()) == ["part-00000.jsonl", "part-00001.jsonl"]
    for event in events:
        assert set(event) == FIELDS
        assert event["message"] in ("next", "last") and 0.0 <= event["time"] <= 1.0
        assert 0 <= event["track"] < 600 and 0 <= event["user"] < 200
        assert event["experiments"] == {"AB": assign(event["user"], "AB", 2), "ALL": assign(event["user"], "ALL", 7)}
        assert (event["recommendation"] is None) == (event["message"] == "last")
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


def test_sessions_follow_the_user_model_and_the_policy(logs):
    root, _ = logs
    artist = {json.loads(l)["track"]: json.loads(l)["artist"] for l in (root / "tracks.jsonl").read_text().splitlines()}
    sessions = sessions_of(read_events(root / "logs"))
    assert len(sessions) > 100
    for session in sessions:
        assert len({e["user"] for e in session}) == 1
        assert session[0]["time"] == 0.0  # the first track is the user's pick, sent with time 0
        played = set()
        for event, following in zip(session, session[1:]):
            # What was recommended is what is played next, and sticky keeps the artist.
            assert following["track"] == event["recommendation"]
            assert artist[event["recommendation"]] == artist[event["track"]]
        for event in session:
            if event["track"] in played:
                assert event["time"] == 0.0  # no-repeat rule
            played.add(event["track"])
    # Users listen: sticky recommendations get real listening time.
    times = [e["time"] for s in sessions for e in s[1:]]
    assert sum(times) / len(times) > 0.1


def test_same_seed_same_bytes(logs, tmp_path):
    root, _ = logs
    bulk_logs.generate(str(tmp_path / "again"), events=4000, users=200, tracks=600, seed=9, files=2,
                       experiments={"AB": 2, "ALL": 7}, progress=False, policy="sticky")
    for name in ("part-00000.jsonl", "part-00001.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "logs" / name).read_bytes()


def test_catalog_matches_the_simulated_world(logs):
    root, _ = logs
    world = bulk_logs.bulk_world(600, 200, 9)
    rows = [json.loads(l) for l in (root / "tracks.jsonl").read_text().splitlines()]
    assert [r["track"] for r in rows] == list(range(600))
    assert [r["artist"] for r in rows] == [world.artist_names[a] for a in world.artist_of.tolist()]


def test_cli_with_a_generated_world_and_random_policy(tmp_path):
    from sim.world import WorldParams, generate_world, write_world

    write_world(generate_world(WorldParams(tracks=500, artists=50, genres=5, users=50), seed=2), str(tmp_path / "w"))
    assert bulk_logs.main(["--events", "300", "--out", str(tmp_path / "logs"), "--world", str(tmp_path / "w"),
                           "--policy", "random", "--files", "1", "--experiment", "AB:2"]) == 0
    events = read_events(tmp_path / "logs")
    assert len(events) == 300 and {e["user"] for e in events} <= set(range(50))
    tracks = TrackCatalog.load(str(tmp_path / "w" / "tracks.jsonl"), str(tmp_path / "w" / "tracks.npy"))
    assert all(0 <= e["track"] < tracks.size() for e in events)


def test_the_pipelines_event_reader_accepts_every_line(logs, spark):
    """The jobs' own parser (real Spark) finds no malformed line in bulk logs."""
    from common.event_log_reader import count_reasons, parse_lines, read_lines

    root, n = logs
    total, malformed = count_reasons(parse_lines(read_lines(spark, "file://" + str(root / "logs"))))
    assert total == n and malformed == {}


def test_first_track_time_is_logged_as_asked(tmp_path):
    """--first-track-time 1.0 writes the course client's value on every session's first event; nothing else moves."""
    default = tmp_path / "default"
    course = tmp_path / "course"
    for out, first in ((default, 0.0), (course, 1.0)):
        bulk_logs.generate(str(out), events=1500, users=100, tracks=400, seed=4, files=1, progress=False,
                           first_track_time=first)
    a, b = sessions_of(read_events(default)), sessions_of(read_events(course))
    assert len(a) == len(b) > 10
    for sa, sb in zip(a, b):
        assert sa[0]["time"] == 0.0 and sb[0]["time"] == 1.0
        assert [e["time"] for e in sa[1:]] == [e["time"] for e in sb[1:]]


def test_every_line_is_the_shared_formatters_own(logs):
    """One formatter for every log writer: each bulk line is exactly what common.event_line writes for its event."""
    from common.event_line import event, to_line

    root, _ = logs
    for path in sorted((root / "logs").glob("part-*.jsonl")):
        for line in path.read_text().splitlines(keepends=True):
            e = json.loads(line)
            assert to_line(event(**{k: e[k] for k in FIELDS})) == line


# -- calendar days (--start/--days, --date) ---------------------------------------------------------------------

DAYS = ("2024-02-28", "2024-02-29")
CALENDAR = ["--events", "600", "--users", "80", "--tracks", "400", "--artists", "40", "--files", "2", "--seed", "5"]


def utc_day_ms(day: str) -> range:
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()) * 1000
    return range(start, start + 86_400_000)


def files_of(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.jsonl"))}


def test_calendar_days_fill_each_utc_day_with_the_same_users(tmp_path):
    assert bulk_logs.main([*CALENDAR, "--out", str(tmp_path / "both"), "--start", DAYS[0], "--days", "2"]) == 0
    files = files_of(tmp_path / "both")
    assert sorted(files) == [f"part-{day}-{i:05d}.jsonl" for day in DAYS for i in range(2)]
    users = {}
    for day in DAYS:
        events = [json.loads(line) for name, data in files.items() if day in name for line in data.splitlines()]
        assert len(events) == 600 and all(e["timestamp"] in utc_day_ms(day) for e in events)
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(set(stamps))  # strictly rising: one user's sessions never mix
        sessions_of(events)
        users[day] = [e["user"] for e in events]
    assert set(users[DAYS[0]]) & set(users[DAYS[1]]) and users[DAYS[0]] != users[DAYS[1]]
    # --date D is one day of the calendar, whatever other days a run asks for; the same arguments, the same bytes.
    assert bulk_logs.main([*CALENDAR, "--out", str(tmp_path / "one"), "--date", DAYS[1]]) == 0
    assert files_of(tmp_path / "one") == {name: data for name, data in files.items() if DAYS[1] in name}
    assert bulk_logs.main([*CALENDAR, "--out", str(tmp_path / "again"), "--start", DAYS[0], "--days", "2"]) == 0
    assert files_of(tmp_path / "again") == files


def test_without_a_calendar_the_clock_is_the_fixed_one(logs):
    root, _ = logs
    stamps = [e["timestamp"] for e in read_events(root / "logs")]
    assert stamps[0] - 1_700_000_000_000 in range(1, 2000)
    assert all(b - a in range(1, 2000) for a, b in zip(stamps, stamps[1:]))


@pytest.mark.parametrize("extra", [["--date", DAYS[1], "--start", DAYS[0]], ["--days", "2"],
                                   ["--start", DAYS[0], "--days", "0"], ["--date", "2024-2-30"]])
def test_contradictory_calendar_options_are_refused(tmp_path, extra):
    with pytest.raises(SystemExit):
        bulk_logs.main(["--events", "10", "--out", str(tmp_path), *extra])
