"""botify-upload on real files (file:// and fsspec's memory:// back end), with a writer that follows
botify's file contract (write ``*.jsonl.open``, rename to ``*.jsonl`` when complete) running meanwhile.
HDFS/WebHDFS servers cannot run here; the same fsspec calls are exercised on these two back ends."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import fsspec
import pytest

from pipeline import upload_logs


def run_upload(root, log_dir, *args):
    return upload_logs.main(["--set", f"storage.root={root}", "--log-dir", str(log_dir), "--no-progress", *args])


def dataset_dir(warehouse, name="ab") -> Path:
    return Path(warehouse[len("file://"):]) / "logs" / name


def write(path: Path, lines):
    path.write_text("".join(json.dumps({"message": "next", "timestamp": i, "user": 1, "track": i, "time": 0.5}) + "\n"
                            for i in lines))


def test_ships_only_completed_files_once(tmp_path, warehouse, capsys):
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    write(logs / "events-b.jsonl.open", range(5, 8))  # still being written
    (logs / "_rotate_request").write_text("3")
    write(logs / ".hidden.jsonl", range(2))
    assert run_upload(warehouse, logs) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["uploaded"], first["skipped"], first["open_files_ignored"]) == (1, 0, 1)
    ds = dataset_dir(warehouse)
    assert sorted(os.listdir(ds)) == ["events-a.jsonl"]
    assert (ds / "events-a.jsonl").read_bytes() == (logs / "events-a.jsonl").read_bytes()

    assert run_upload(warehouse, logs) == 0  # nothing new: nothing uploaded twice
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["uploaded"], second["skipped"]) == (0, 1)

    (logs / "events-b.jsonl.open").rename(logs / "events-b.jsonl")  # botify rotates
    assert run_upload(warehouse, logs, "--dry-run") == 0
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dry["uploaded"] == 1 and sorted(os.listdir(ds)) == ["events-a.jsonl"]
    assert run_upload(warehouse, logs) == 0
    third = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (third["uploaded"], third["skipped"]) == (1, 1)
    assert sorted(os.listdir(ds)) == ["events-a.jsonl", "events-b.jsonl"]


def test_conflict_is_reported_not_overwritten(tmp_path, warehouse, capsys):
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    write(logs / "events-c.jsonl", range(3))
    ds = dataset_dir(warehouse)
    ds.mkdir(parents=True)
    write(ds / "events-a.jsonl", range(2))  # same name, other content
    assert run_upload(warehouse, logs) == upload_logs.EXIT_CONFLICT
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["conflicts"][0]["file"] == "events-a.jsonl" and summary["uploaded"] == 1
    assert len((ds / "events-a.jsonl").read_text().splitlines()) == 2
    assert (ds / "events-c.jsonl").exists()


def test_cleanup_replaces_the_dataset(tmp_path, warehouse):
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    ds = dataset_dir(warehouse, "ab_test_results")
    ds.mkdir(parents=True)
    write(ds / "events-old.jsonl", range(9))
    write(ds / "events-a.jsonl", range(1))
    assert run_upload(warehouse, logs, "ab_test_results", "--cleanup") == 0
    assert sorted(os.listdir(ds)) == ["_SUCCESS", "events-a.jsonl"]
    assert (ds / "events-a.jsonl").read_bytes() == (logs / "events-a.jsonl").read_bytes()
    assert not [p for p in ds.parent.iterdir() if p.name.startswith(("_tmp-", "_old-"))]


def test_leftovers_of_an_interrupted_upload_are_removed(tmp_path, warehouse):
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    ds = dataset_dir(warehouse)
    ds.mkdir(parents=True)
    (ds / "_tmp-events-a.jsonl-deadbeef").write_text('{"half": ')
    assert run_upload(warehouse, logs) == 0
    assert sorted(os.listdir(ds)) == ["events-a.jsonl"]


def test_second_upload_while_one_runs_does_nothing(tmp_path, warehouse):
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    with upload_logs.directory_lock(str(logs)):
        assert run_upload(warehouse, logs) == upload_logs.EXIT_LOCKED
    assert not dataset_dir(warehouse).exists()
    assert run_upload(warehouse, logs) == 0  # lock released


def test_bad_arguments_are_clear_errors(tmp_path, warehouse, capsys):
    assert run_upload(warehouse, tmp_path / "missing") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "botify").mkdir()
    for name in ("../etc", "_hidden", "a/b"):
        assert run_upload(warehouse, tmp_path / "botify", name) == 2
        assert "invalid dataset name" in capsys.readouterr().err


def test_memory_filesystem_backend(tmp_path):
    """A non-local fsspec back end goes through the same code (mv, ls with sizes, atomic swap)."""
    logs = tmp_path / "botify"
    logs.mkdir()
    write(logs / "events-a.jsonl", range(5))
    root = "memory://ab-upload-test/botify"
    fs = fsspec.filesystem("memory")
    try:
        assert run_upload(root, logs) == 0
        assert run_upload(root, logs) == 0
        write(logs / "events-b.jsonl", range(3))
        assert run_upload(root, logs, "--cleanup") == 0
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/ab-upload-test/botify/logs/ab", detail=False))
        assert names == ["_SUCCESS", "events-a.jsonl", "events-b.jsonl"]
        assert fs.cat("/ab-upload-test/botify/logs/ab/events-b.jsonl") == (logs / "events-b.jsonl").read_bytes()
    finally:
        if fs.exists("/ab-upload-test"):
            fs.rm("/ab-upload-test", recursive=True)


def test_safe_while_botify_writes(tmp_path, warehouse):
    """A writer appends whole lines to ``.jsonl.open`` files and rotates them while uploads run;
    every uploaded file is complete and, after the last rotation, the dataset equals the completed files."""
    logs = tmp_path / "botify"
    logs.mkdir()
    stop = threading.Event()

    def writer():
        for index in range(40):  # bounded
            open_path = logs / f"events-{index:04d}.jsonl.open"
            with open(open_path, "w") as fh:
                for i in range(200):
                    fh.write(json.dumps({"message": "next", "timestamp": index * 1000 + i, "user": index, "track": i,
                                         "time": 0.5}) + "\n")
                    if i % 50 == 0:
                        fh.flush()
            open_path.rename(logs / f"events-{index:04d}.jsonl")
            if stop.is_set():
                break

    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(15):  # bounded: uploads racing the writer
        assert run_upload(warehouse, logs) == 0
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert run_upload(warehouse, logs) == 0
    ds = dataset_dir(warehouse)
    completed = sorted(p.name for p in logs.glob("*.jsonl") if not p.name.startswith("."))
    assert sorted(os.listdir(ds)) == completed and len(completed) == 40
    for name in completed:
        data = (ds / name).read_bytes()
        assert data == (logs / name).read_bytes()
        assert len(data.decode().splitlines()) == 200


def course_session(user, treatment, start, tracks, times):
    """One session as the course's client and botify log it: the first /next says time 1.0, then the times of the
    recommended tracks; the closing /last reports 0.25 for the last one."""
    events = [{"message": "next", "timestamp": start + i, "user": user, "track": t, "time": tm, "latency": 0.001,
               "recommendation": tracks[i + 1] if i + 1 < len(tracks) else 99, "experiments": {"AB": treatment}}
              for i, (t, tm) in enumerate(zip(tracks, [1.0] + times))]
    events.append({"message": "last", "timestamp": start + len(tracks), "user": user, "track": 99, "time": 0.25,
                   "latency": 0.001, "recommendation": None, "experiments": {"AB": treatment}})
    return "".join(json.dumps(e) + "\n" for e in events)


def course_log_dir(tmp_path):
    logs = tmp_path / "course"
    logs.mkdir()
    # users 2 and 4 are in C, 0 and 1 in T1 (the course's hashing of experiment AB)
    (logs / "data.json").write_text(course_session(0, "T1", 1000, [5, 6, 7], [1.0, 0.5])
                                    + course_session(1, "T1", 2000, [5, 6, 7, 8], [0.25, 0.5, 1.0]))
    (logs / "data.json.1").write_text(course_session(2, "C", 3000, [5, 6], [0.5])
                                      + course_session(4, "C", 4000, [7, 8, 9], [0.5, 0.75]))
    return logs


def test_course_botify_log_names_ship_with_a_pattern_and_are_warned_about_without(tmp_path, warehouse, capsys, caplog):
    logs = course_log_dir(tmp_path)
    assert run_upload(warehouse, logs) == 0  # botify's default pattern selects nothing here...
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["uploaded"], summary["not_shipped"]) == (0, 2)
    assert "data.json, data.json.1" in caplog.text  # ...and says which files it left behind
    assert run_upload(warehouse, logs, "--strict") == upload_logs.EXIT_UNSHIPPED
    capsys.readouterr()

    assert run_upload(warehouse, logs, "--pattern", "data.json*", "--strict") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["uploaded"], summary["not_shipped"]) == (2, 0)
    ds = dataset_dir(warehouse)
    assert sorted(os.listdir(ds)) == ["data.json", "data.json.1"]
    assert (ds / "data.json.1").read_bytes() == (logs / "data.json.1").read_bytes()  # shipped unchanged


@pytest.mark.slow
def test_course_logs_with_first_track_time_one_are_analysed_as_logged(tmp_path, warehouse, capsys):
    """analyze_ab reads the course's files as shipped; session time sums every logged time, the first track's 1.0
    included (the course notebook's metric), hand-computed: C (1.75, 2.5), T1 (2.75, 3.0)."""
    import pandas as pd

    from jobs import analyze_ab

    assert run_upload(warehouse, course_log_dir(tmp_path), "--pattern", "data.json*") == 0
    assert analyze_ab.main(["--set", f"storage.root={warehouse}", "--run", "course"]) == 0
    run_dir = Path(warehouse[len("file://"):]) / "ab" / "AB" / "course"
    effects = pd.read_csv(run_dir / "effects.csv").set_index("metric")
    assert effects.loc["mean_session_time", "control_mean"] == pytest.approx((1.75 + 2.5) / 2)
    assert effects.loc["mean_session_time", "treatment_mean"] == pytest.approx((2.75 + 3.0) / 2)
    assert effects.loc["mean_session_length", "control_mean"] == pytest.approx((3 + 4) / 2)
    manifest = json.loads((run_dir / "_MANIFEST.json").read_text())
    assert manifest["malformed"] == {} and manifest["users_per_treatment"] == {"C": 2, "T1": 2}

    # Staged once (jobs/stage_events), the same files give the same analysis.
    from jobs import stage_events

    assert stage_events.main(["--set", f"storage.root={warehouse}", "--input", "logs/ab", "--dataset", "ab",
                              "--run", "s1"]) == 0
    assert analyze_ab.main(["--set", f"storage.root={warehouse}", "--input", "events/ab", "--run", "staged"]) == 0
    staged_dir = run_dir.parent / "staged"
    pd.testing.assert_frame_equal(pd.read_csv(staged_dir / "effects.csv"), pd.read_csv(run_dir / "effects.csv"))
    staged = json.loads((staged_dir / "_MANIFEST.json").read_text())
    for key in ("lines", "malformed", "events", "duplicates_dropped", "analysed_users", "users_per_treatment"):
        assert staged[key] == manifest[key], key


def test_a_cleanup_killed_midway_is_swept_by_the_next_run(tmp_path, warehouse):
    """A real SIGKILL while `botify-upload --cleanup` copies: the dataset it was replacing stays whole, and the
    next run removes the hidden temporary dataset the killed one left under logs/."""
    import signal
    import subprocess
    import sys
    import time

    logs = tmp_path / "botify"
    logs.mkdir()
    for i in range(3000):
        (logs / f"events-{i:05d}.jsonl").write_text("x" * 2048 + "\n")
    parent = dataset_dir(warehouse).parent
    assert run_upload(warehouse, logs) == 0  # the dataset the killed cleanup was replacing
    before = sorted(os.listdir(dataset_dir(warehouse)))
    leftovers = []
    for _ in range(3):  # the kill must land while the copy runs; 3,000 files take seconds, polling takes ms
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.upload_logs", "--set", f"storage.root={warehouse}",
                                 "--log-dir", str(logs), "--no-progress", "--cleanup"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not leftovers:
            leftovers = [n for n in os.listdir(parent) if n.startswith("_tmp-ab-")]
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if leftovers:
            break
    assert leftovers, "the kill never landed during the copy"
    assert sorted(os.listdir(dataset_dir(warehouse))) == before
    assert run_upload(warehouse, logs, "--cleanup") == 0
    assert sorted(os.listdir(parent)) == ["ab"]
    assert sorted(os.listdir(dataset_dir(warehouse))) == sorted(before + ["_SUCCESS"])
