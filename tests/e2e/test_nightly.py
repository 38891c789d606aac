"""botify-daily every night, as an operator runs it: a three-night backfill on local[2] against a real botify.

Three days of botify's logs wait in its log folder; `botify-daily --from D1 --to D3` runs each date as its
own night. After night 1 a late log file for D1 arrives and the operator holds serving. The story checks what
the operator sees: each night's table, D1's staged date taking the late file on night 2 (the other dates
untouched), LATEST kept on D1 through the held nights while their versions are still written, and the A/B
report of night 3 carrying one sequential row per night. A second run of the same command does nothing
more; a failed step resumes where it failed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.multidae.conftest import TINY
from testkit.served import TOKEN, botify_serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BIN = Path(sys.executable).parent
D1, D2, D3 = "2026-11-02", "2026-11-03", "2026-11-04"


def sim(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sim", *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    work = tmp_path_factory.mktemp("nightly")
    root = f"file://{work / 'warehouse'}"
    sim("generate", "--seed", "3", "--tracks", "800", "--users", "300", "--out", str(work / "warehouse" / "world"))
    logs = work / "botify-logs"
    sim("bulk", "--events", "6000", "--world", str(work / "warehouse" / "world"), "--experiment", "AB:2",
        "--files", "2", "--seed", "3", "--out", str(logs), "--start", D1, "--days", "3")
    late = work / "late"
    sim("bulk", "--events", "400", "--world", str(work / "warehouse" / "world"), "--experiment", "AB:2",
        "--files", "1", "--seed", "99", "--out", str(late), "--date", D1)
    sets = [f"storage.root={root}", f"daily.botify_log_dir={logs}", f"daily.log_dir={work / 'daily-logs'}",
            f"daily.lock_file={work / 'daily.lock'}", "daily.train_window_days=2", "daily.master=local[2]",
            f"daily.metrics_textfile={work / 'botify_nightly.prom'}", *TINY]
    argv = [str(BIN / "botify-daily"), "--from", D1, "--to", D3, *sum((["--set", s] for s in sets), [])]
    with botify_serve(root, work) as (base, _):
        env = {**os.environ, "BOTIFY_ADMIN_TOKEN": TOKEN}
        argv += ["--set", f"daily.botify_url={base}"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        out: list = []

        def after_night_1():
            # Night 2 starts with upload and staging, long before it could publish: time enough to act.
            for line in proc.stdout:
                out.append(line)
                if line.startswith(f"botify-daily {D1}"):
                    for f in late.glob("*.jsonl"):
                        (logs / f"late-{f.name}").write_bytes(f.read_bytes())
                    subprocess.run([str(BIN / "botify"), "hold", "--reason", "looking into D1",
                                    "--set", f"storage.root={root}"], check=True, capture_output=True)

        reader = threading.Thread(target=after_night_1)
        reader.start()
        code = proc.wait(timeout=1700)
        reader.join()
        again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    return {"work": work, "root": work / "warehouse", "code": code, "out": "".join(out), "again": again,
            "argv": argv, "env": env}


def night(out: str, date: str) -> str:
    """The night's output: its table, then retention's, up to the next night's table."""
    text = out[out.index(f"botify-daily {date}"):]
    following = text.find("botify-daily 20", 1)
    return text if following < 0 else text[:following]


def table(out: str, date: str) -> dict:
    """step -> status, from the night's table (retention's own table, after it, is left out)."""
    lines = night(out, date).split(f"retention {date}")[0].splitlines()[2:]
    return {line.split()[0]: line.split()[1] for line in lines if line and not line.startswith(" ")}


def test_three_nights_ran_in_order_and_the_held_ones_reloaded_nothing(nights):
    assert nights["code"] == 0, nights["out"][-4000:]
    first, second, third = (table(nights["out"], d) for d in (D1, D2, D3))
    assert set(first.values()) == {"succeeded"}, first
    for night in (second, third):
        assert night["reload"] == "held" and night["infer_recommendations"] == "succeeded", night
    recs = nights["root"] / "recommendations"
    assert (recs / "LATEST").read_text().strip() == D1
    assert all((recs / d / "_SUCCESS").exists() for d in (D1, D2, D3))
    assert json.loads((recs / "HOLD").read_text())["reason"] == "looking into D1"


def test_each_night_reports_its_retention_and_leaves_a_metric_for_prometheus(nights):
    from prometheus_client.parser import text_string_to_metric_families

    for date in (D1, D2, D3):
        assert f"retention {date}" in night(nights["out"], date)
    metrics = {s.name: s.value for f in text_string_to_metric_families((nights["work"] / "botify_nightly.prom").read_text())
               for s in f.samples}
    assert metrics["botify_nightly_last_success_timestamp_seconds"] > 0 and metrics["botify_nightly_held"] == 1


def test_the_late_file_was_staged_into_its_own_date_on_the_next_night(nights):
    manifest = json.loads((nights["root"] / "events" / "botify" / "_STAGED.json").read_text())
    assert {d: v["run"] for d, v in manifest["dates"].items()} == {D1: D2, D2: D1, D3: D1}
    late_inputs = [u for u, v in manifest["inputs"].items() if "late-" in u]
    assert late_inputs and all(manifest["inputs"][u]["run"] == D2 for u in late_inputs)


def test_each_night_trained_on_its_window_and_no_later(nights):
    for date, first in ((D1, "2026-11-01"), (D2, D1), (D3, D2)):  # train_window_days=2
        record = json.loads((nights["root"] / "interactions" / date / "_MANIFEST.json").read_text())
        assert record["window"] == [first, date]


def test_the_report_of_night_3_has_a_sequential_row_per_night(nights):
    report = (nights["root"] / "ab" / "AB" / D3 / "report.md").read_text()
    assert "## Sequential analysis (valid when read every night)" in report
    rows = [line for line in report.splitlines() if line.startswith("| T1 | 2026-11-")]
    assert [row.split("|")[2].strip() for row in rows] == [D1, D2, D3]
    assert (nights["root"] / "ab" / "AB" / D3 / "sequential.png").stat().st_size > 1000
    history = json.loads((nights["root"] / "ab" / "AB" / "_SEQUENTIAL.json").read_text())
    assert [look["night"] for look in history["T1"]["looks"]] == [1, 2, 3]


def test_the_same_backfill_again_has_nothing_left_to_do(nights):
    assert nights["again"].returncode == 0, nights["again"].stdout[-3000:] + nights["again"].stderr[-3000:]
    assert "3 of 3 dates done by an earlier run" in nights["again"].stderr
    assert "botify-daily 2026" not in nights["again"].stdout
