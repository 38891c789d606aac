"""botify-upload on real files (file:// and fsspec's memory:// back end), with a writer that follows
botify's file contract (write ``*.jsonl.open``, rename to ``*.jsonl`` when complete) running meanwhile.
HDFS/WebHDFS servers cannot run here; the same fsspec calls are exercised on these two back ends."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import fsspec

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
