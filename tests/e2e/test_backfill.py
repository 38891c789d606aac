"""A backfill is the nights it stands for: `botify-daily --from D1 --to D3` gives each date the outputs a
single `--date` run gives it, and one killed mid-night resumes at the date and step that died (the
staging and extraction steps, on local Spark)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.process_group import kill_group
from testkit.procs import command_lines

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

BIN = Path(sys.executable).parent
D1, D2, D3 = "2026-10-05", "2026-10-06", "2026-10-07"
STEPS = ["--only", "upload", "--only", "stage_events", "--only", "extract_interactions"]


def prepared(work: Path, name: str) -> list:
    """A storage root with the world, botify's logs of three days in a folder of their own, and the argv."""
    root = work / name
    subprocess.run([sys.executable, "-m", "sim", "generate", "--seed", "4", "--tracks", "500", "--users", "150",
                    "--out", str(root / "world")], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "sim", "bulk", "--events", "3000", "--world", str(root / "world"),
                    "--experiment", "AB:2", "--seed", "4", "--out", str(work / f"{name}-logs"), "--start", D1,
                    "--days", "3"], check=True, capture_output=True)
    sets = [f"storage.root=file://{root}", f"daily.botify_log_dir={work / f'{name}-logs'}",
            f"daily.log_dir={work / f'{name}-daily'}", f"daily.lock_file={work / f'{name}.lock'}",
            "daily.train_window_days=2", "daily.master=local[1]"]
    return [str(BIN / "botify-daily"), *STEPS, *sum((["--set", s] for s in sets), [])]


def kill_when_running(pattern: str, stop: threading.Event) -> None:
    """SIGKILL the process group of the first process whose command line holds every word of ``pattern``."""
    while not stop.is_set():
        for pid, cmdline in command_lines():
            if all(word in cmdline for word in pattern.split()) and "launcher.submit" in cmdline:
                kill_group(pid)
                return
        time.sleep(0.2)


def interactions(root: Path, date: str):
    import pyarrow.parquet as pq

    table = pq.read_table(root / "interactions" / date / "interactions").to_pylist()
    return sorted(tuple(sorted(row.items())) for row in table)


def test_a_killed_backfill_resumes_and_equals_three_single_nights(tmp_path):
    backfill = prepared(tmp_path, "backfill")
    stop = threading.Event()
    killer = threading.Thread(target=kill_when_running, args=(f"extract_interactions --run {D2}", stop))
    killer.start()
    first = subprocess.run([*backfill, "--from", D1, "--to", D3], capture_output=True, text=True, timeout=900)
    stop.set()
    killer.join()
    assert first.returncode == 1, first.stderr[-3000:]
    assert f"backfill stopped at {D2}, step extract_interactions" in first.stderr

    resumed = subprocess.run([*backfill, "--from", D1, "--to", D3], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 of 3 dates done by an earlier run" in resumed.stderr
    assert f"botify-daily {D1}" not in resumed.stdout  # D1 was not run again
    night_2 = resumed.stdout[resumed.stdout.index(f"botify-daily {D2}"):].splitlines()
    assert next(line for line in night_2 if line.startswith("stage_events")).split()[1] == "succeeded"
    assert "(earlier" in next(line for line in night_2 if line.startswith("stage_events"))

    single = prepared(tmp_path, "single")
    for date in (D1, D2, D3):
        night = subprocess.run([*single, "--date", date], capture_output=True, text=True, timeout=600)
        assert night.returncode == 0, night.stderr[-3000:]
    for date in (D1, D2, D3):
        assert interactions(tmp_path / "backfill", date) == interactions(tmp_path / "single", date)


def test_dates_in_the_future_are_refused_before_anything_runs(tmp_path):
    argv = prepared(tmp_path, "future")
    done = subprocess.run([*argv, "--from", D3, "--to", "2999-01-01"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is in the future (today is" in done.stderr
    assert not (tmp_path / "future-daily").exists()
