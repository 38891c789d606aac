"""stage_events on logs written to disk: Parquet by UTC date, quarantine counts, idempotent re-runs per date,
and extract_interactions giving the same output on staged events as on the raw logs (real Spark, real files)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from common.config import load_config
from common.event_log_reader import STAGED_SCHEMA, TooManyMalformed
from jobs import analyze_ab, extract_interactions, stage_events

DAY = 86_400_000
D1, D2 = 20_000 * DAY, 20_001 * DAY  # 2024-10-04 and 2024-10-05, UTC
BAD = ["not json", '{"message": "next", "timestamp": 5, "user": "1", "track": 2, "time": 0.5}', ""]


def events(start: int, users: int, per_user: int = 4):
    out = []
    for user in range(users):
        for step in range(per_user):
            out.append({"message": "last" if step == per_user - 1 else "next", "timestamp": start + user * 100 + step,
                        "user": user, "track": (user + step) % 7, "time": 0.25 * step, "latency": 0.002,
                        "recommendation": step, "experiments": {"AB": "C" if user % 2 else "T1"}})
    return out


def write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")


def stage(spark, root: Path, run_id: str, logs: str = "logs/train", ratio: float = 0.2):
    config = load_config("pipeline.yml", [f"storage.root=file://{root}", f"stage.max_error_ratio={ratio}"])
    return stage_events.run(spark, config, f"file://{root}/{logs}", "train", run_id)


def staged_rows(spark, root: Path):
    df = spark.read.schema(STAGED_SCHEMA).parquet(f"file://{root}/events/train")
    return sorted(tuple(r) for r in df.select("date", "user", "timestamp", "message", "track", "time").collect())


def manifest(root: Path) -> dict:
    return json.loads((root / "events" / "train" / "_STAGED.json").read_text())


def test_new_inputs_are_the_files_not_staged_before_and_a_changed_size_is_refused():
    from common.storage import FileStatus

    staged = {"file:///l/a.jsonl": {"size": 10, "mtime_ms": 1, "run": "r1"}}
    listing = [FileStatus("file:///l/a.jsonl", 10, 99), FileStatus("file:///l/b.jsonl", 4, 2)]
    assert stage_events.new_inputs(listing, staged) == [listing[1]]  # a new mtime alone is the same file
    with pytest.raises(stage_events.InputChanged, match="a.jsonl"):
        stage_events.new_inputs([FileStatus("file:///l/a.jsonl", 11, 1)], staged)


def test_merged_counts_add_the_copies_dropped_across_old_and_new_rows():
    counts = stage_events.merged_counts({"2024-10-05": {"events": 8, "duplicates": 1}},
                                        {"2024-10-05": 9, "2024-10-06": 3}, {"2024-10-05": 9, "2024-10-06": 3})
    assert counts == {"2024-10-05": {"events": 9, "duplicates": 9}, "2024-10-06": {"events": 3, "duplicates": 0}}


def test_merged_manifest_keeps_other_dates_and_drops_runs_serving_none():
    previous = {"dates": {"2024-10-04": {"events": 3, "duplicates": 0, "run": "a"},
                          "2024-10-05": {"events": 5, "duplicates": 1, "run": "a"}},
                "runs": {"a": {"lines": 9, "malformed": {"bad_user": 1}}, "old": {"lines": 1, "malformed": {}}}}
    merged = stage_events.merged_manifest(previous, "b", {"lines": 4, "malformed": {}}, {"2024-10-05": {"events": 4, "duplicates": 0}})
    assert merged["dates"] == {"2024-10-04": {"events": 3, "duplicates": 0, "run": "a"},
                               "2024-10-05": {"events": 4, "duplicates": 0, "run": "b"}}
    assert sorted(merged["runs"]) == ["a", "b"] and merged["runs"]["b"]["dates"] == ["2024-10-05"]


@pytest.mark.slow
def test_staging_counts_quarantines_dedupes_and_a_new_file_merges_into_only_its_dates(spark, tmp_path):
    day1, day2 = events(D1, 3), events(D2 + DAY - 1000, 2)  # day 2 ends a second before midnight UTC
    write(tmp_path / "logs" / "train" / "a.jsonl", day1 + day1[:2] + BAD)  # two exact copies, three bad lines
    write(tmp_path / "logs" / "train" / "b.jsonl", day2)
    result = stage(spark, tmp_path, "r1")
    assert result["lines"] == 12 + 2 + 3 + 8
    assert result["malformed"] == {"not_json_object": 1, "bad_user": 1, "blank_line": 1}
    assert result["dates"] == {"2024-10-04": {"events": 12, "duplicates": 2}, "2024-10-05": {"events": 8, "duplicates": 0}}
    quarantine = tmp_path / "quarantine" / "stage_events" / "train" / "r1" / "lines"
    bad = [json.loads(line) for f in quarantine.glob("*.json") for line in f.read_text().splitlines()]
    assert sorted(b["reason"] for b in bad) == ["bad_user", "blank_line", "not_json_object"]
    assert sorted(p.name for p in (tmp_path / "events" / "train").iterdir() if not p.name.startswith(".")) == [
        "_STAGED.json", "date=2024-10-04", "date=2024-10-05"]
    first = staged_rows(spark, tmp_path)
    assert len(first) == 20 and len(set(first)) == 20

    day1_files = sorted((tmp_path / "events" / "train" / "date=2024-10-04").iterdir())
    again = stage(spark, tmp_path, "r2")  # the same logs again: nothing read, nothing re-written
    assert (again["files"], again["lines"], again["dates"]) == ({"listed": 2, "new": 0}, 0, {})
    assert staged_rows(spark, tmp_path) == first
    assert set(manifest(tmp_path)["runs"]) == {"r1"}

    # A late file for day 2 (its 8 events again, and one more): read alone, merged into day 2 only, the
    # copies dropped across old and new rows; day 1 keeps its files and its run.
    write(tmp_path / "logs" / "train" / "c-late.jsonl", day2 + events(D2 + 5000, 1, per_user=1))
    late = stage(spark, tmp_path, "r3")
    assert late["files"] == {"listed": 3, "new": 1} and late["lines"] == 9
    assert late["dates"] == {"2024-10-05": {"events": 9, "duplicates": 8}}
    rows = staged_rows(spark, tmp_path)
    assert [r for r in rows if r[0] == "2024-10-04"] == [r for r in first if r[0] == "2024-10-04"]
    assert len([r for r in rows if r[0] == "2024-10-05"]) == 9
    assert sorted((tmp_path / "events" / "train" / "date=2024-10-04").iterdir()) == day1_files
    m = manifest(tmp_path)
    assert {d: v["run"] for d, v in m["dates"].items()} == {"2024-10-04": "r1", "2024-10-05": "r3"}
    assert set(m["runs"]) == {"r1", "r3"} and len(m["inputs"]) == 3
    assert not [p for p in (tmp_path / "events" / "train").iterdir() if p.name.startswith(("_tmp-", "_old-"))]

    # A staged file that changed size is refused before anything is read or written.
    write(tmp_path / "logs" / "train" / "b.jsonl", day2 + events(D2 + 9000, 1, per_user=1))
    with pytest.raises(stage_events.InputChanged, match=r"b\.jsonl \(staged with \d+ bytes by run r1, now \d+\)"):
        stage(spark, tmp_path, "r4")
    assert staged_rows(spark, tmp_path) == rows and manifest(tmp_path) == m


@pytest.mark.slow
def test_too_many_malformed_lines_stage_nothing(spark, tmp_path):
    write(tmp_path / "logs" / "train" / "a.jsonl", events(D1, 2) + BAD)
    with pytest.raises(TooManyMalformed, match="3 of 11 lines malformed"):
        stage(spark, tmp_path, "r1", ratio=0.01)
    assert not (tmp_path / "events" / "train" / "_STAGED.json").exists()
    assert not (tmp_path / "quarantine").exists()


@pytest.mark.slow
def test_extract_on_staged_events_equals_extract_on_the_raw_logs(spark, tmp_path):
    lines = events(D1, 6) + events(D2, 4)
    lines += [dict(lines[0]), dict(lines[5])]  # re-uploaded copies
    stray = {"message": "next", "timestamp": D2 + 7, "user": 9, "track": 1000, "time": 0.9}  # not in the catalog
    lines += [stray, dict(stray)]  # an event of an unknown track, uploaded twice: one event, one copy
    write(tmp_path / "logs" / "train" / "a.jsonl", lines + BAD[:1])
    write(tmp_path / "world" / "tracks.jsonl", [{"track": t, "artist": "a", "title": str(t)} for t in range(7)])
    config = load_config("pipeline.yml", [f"storage.root=file://{tmp_path}", "extract.max_error_ratio=0.1",
                                          "stage.max_error_ratio=0.1"])
    catalog = f"file://{tmp_path}/world/tracks.jsonl"
    raw = extract_interactions.run(spark, config, f"file://{tmp_path}/logs/train", "raw", catalog)
    stage_events.run(spark, config, f"file://{tmp_path}/logs/train", "train", "s1")
    staged = extract_interactions.run(spark, config, f"file://{tmp_path}/events/train", "staged", catalog)

    for key in ("lines", "malformed", "unknown_tracks", "events", "duplicates_dropped", "row_count", "users",
                "positives", "session_starts", "top_tracks_sha256"):
        assert staged[key] == raw[key], key
    assert (raw["staged"], staged["staged"]) == (False, True)
    assert (staged["lines"], staged["duplicates_dropped"], staged["unknown_tracks"]) == (45, 3, 1)

    def table(run_id):
        df = spark.read.parquet(f"file://{tmp_path}/interactions/{run_id}/interactions")
        return sorted(tuple(r) for r in df.collect())
    assert table("staged") == table("raw")
    unknown = tmp_path / "quarantine" / "extract_interactions" / "staged" / "lines"
    rows = [json.loads(line) for f in unknown.glob("*.json") for line in f.read_text().splitlines()]
    assert [(r["reason"], json.loads(r["line"])["track"]) for r in rows] == [("unknown_track", 1000)]
    # Both forms take one intake: the jobs never ask which form they were given.
    for job in (extract_interactions, analyze_ab):
        source = Path(job.__file__).read_text()
        assert not re.search(r"not \w+\.deduplicated|set_aside_unknown", source), job.__name__


@pytest.mark.slow
def test_extract_refuses_staged_events_that_do_not_match_their_manifest(spark, tmp_path):
    # Unknown tracks are counted as staged minus aggregated events, so a dataset holding fewer events than its
    # _STAGED.json says must fail loudly rather than report the missing ones as unknown tracks.
    write(tmp_path / "logs" / "train" / "a.jsonl", events(D1, 6) + events(D2, 4))
    write(tmp_path / "world" / "tracks.jsonl", [{"track": t, "artist": "a", "title": str(t)} for t in range(7)])
    stage(spark, tmp_path, "s1")
    for part in (tmp_path / "events" / "train" / "date=2024-10-05").glob("*.parquet"):
        part.unlink()
    config = load_config("pipeline.yml", [f"storage.root=file://{tmp_path}"])
    with pytest.raises(RuntimeError, match="_STAGED.json counts 40 events, the dataset holds 24 of known tracks "
                                           "and 0 of unknown ones"):
        extract_interactions.run(spark, config, f"file://{tmp_path}/events/train", "r1",
                                 f"file://{tmp_path}/world/tracks.jsonl")
    assert not (tmp_path / "interactions").exists()


@pytest.mark.slow
def test_a_window_reads_only_its_dates_and_its_lines_are_the_windows_count(spark, tmp_path):
    days = [events(D1 + i * DAY, 3 + i) for i in range(3)]  # 2024-10-04 .. 2024-10-06
    for i, day in enumerate(days):
        write(tmp_path / "logs" / "train" / f"{i}.jsonl", day + day[:1])  # one copy a day
    write(tmp_path / "world" / "tracks.jsonl", [{"track": t, "artist": "a", "title": str(t)} for t in range(7)])
    stage(spark, tmp_path, "s1")
    config = load_config("pipeline.yml", [f"storage.root=file://{tmp_path}"])
    window = ("2024-10-05", "2024-10-06")
    manifest_ = extract_interactions.run(spark, config, f"file://{tmp_path}/events/train", "w",
                                         f"file://{tmp_path}/world/tracks.jsonl", window)
    # Counted independently, from the raw files: the lines whose timestamp falls in the window's days.
    lines = [json.loads(line) for f in sorted((tmp_path / "logs" / "train").iterdir())
             for line in f.read_text().splitlines()]
    in_window = [e for e in lines if D1 + DAY <= e["timestamp"] < D1 + 3 * DAY]
    assert manifest_["lines"] == len(in_window) == 4 * 4 + 1 + 5 * 4 + 1
    assert manifest_["events"] == len(in_window) - 2 and manifest_["window"] == list(window)
    users = spark.read.parquet(f"file://{tmp_path}/interactions/w/users").count()
    assert users == 5  # day 1's users 0-2 come back on days 2 and 3; 3 and 4 are new
