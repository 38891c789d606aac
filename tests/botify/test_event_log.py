"""Event log files: contract (.jsonl.open -> .jsonl), rotation by size, age and operator request, orphans."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from botify.event_log_writer import EventLog, complete_orphans, open_files, request_rotation


def event(i):
    return {"message": "next", "timestamp": 1700000000000 + i, "user": i, "track": i, "time": 0.5,
            "latency": 0.001, "recommendation": i + 1, "experiments": {"AB": "C"}}


def read_all(directory):
    return [json.loads(line) for name in sorted(os.listdir(directory)) if name.endswith(".jsonl")
            for line in open(os.path.join(directory, name), encoding="utf-8")]


def test_size_rotation_completes_whole_line_files(tmp_path):
    log = EventLog(str(tmp_path), max_bytes=600, max_age_s=3600)
    for i in range(40):
        log.write(event(i))
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert len(names) > 3 and all(n.endswith(".jsonl") for n in names)
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.endswith(b"\n") and len(data) < 600 + 200
    assert sorted(e["user"] for e in read_all(tmp_path)) == list(range(40))


def test_age_rotation_and_lazy_open(tmp_path):
    log = EventLog(str(tmp_path), max_bytes=10**9, max_age_s=60)
    log.tick()
    assert os.listdir(tmp_path) == []  # nothing written, no empty file
    log.write(event(1))
    assert len(open_files(str(tmp_path))) == 1
    log.tick(now=time.monotonic() + 30)
    assert len(open_files(str(tmp_path))) == 1
    log.tick(now=time.monotonic() + 61)
    assert open_files(str(tmp_path)) == [] and [e["user"] for e in read_all(tmp_path)] == [1]


def test_operator_request_completes_every_writers_file(tmp_path):
    logs = [EventLog(str(tmp_path), 10**9, 3600) for _ in range(3)]
    for i, log in enumerate(logs):
        log.write(event(i))
    stop = threading.Event()

    def upkeep():  # what each worker's upkeep thread does every poll_s
        while not stop.wait(0.02):
            for log in logs:
                log.tick()

    thread = threading.Thread(target=upkeep)
    thread.start()
    try:
        completed = request_rotation(str(tmp_path), timeout_s=30)
    finally:
        stop.set()
        thread.join()
    assert len(completed) == 3 and open_files(str(tmp_path)) == []
    assert sorted(e["user"] for e in read_all(tmp_path)) == [0, 1, 2]
    logs[0].write(event(9))  # writers keep going into a new file
    assert len(open_files(str(tmp_path))) == 1


def test_request_times_out_naming_files_nobody_completes(tmp_path):
    log = EventLog(str(tmp_path), 10**9, 3600)
    log.write(event(1))
    with pytest.raises(TimeoutError, match=r"still open.*\.jsonl\.open"):
        request_rotation(str(tmp_path), timeout_s=0.3)


def test_files_of_dead_processes_are_completed(tmp_path):
    code = ("import sys; from botify.event_log_writer import EventLog; "
            "log = EventLog(sys.argv[1], 10**9, 3600); log.write({'message': 'next'}); import os; os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert len(open_files(str(tmp_path))) == 1
    live = EventLog(str(tmp_path), 10**9, 3600)
    live.write(event(2))  # ours: alive, must stay open
    done = complete_orphans(str(tmp_path))
    assert len(done) == 1 and len(open_files(str(tmp_path))) == 1
    live.close()
