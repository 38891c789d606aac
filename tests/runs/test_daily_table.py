"""botify-daily's night table from the steps' run records, and its exit naming the failed step."""
from __future__ import annotations

import json
import logging

import pytest

from pipeline import daily
from tests.runs.test_run_records import write_logs

OK = {"job": "stage_events", "run_id": "t-daily-2026-11-26", "status": "succeeded", "error": None, "seconds": 40.2,
      "inputs": [{"name": "event log lines", "uri": "u", "rows": 1000}],
      "outputs": [{"name": "events date=a", "uri": "u", "rows": 600}, {"name": "events date=b", "uri": "u", "rows": 390}],
      "quarantined": {"bad_user": 4, "not_json_object": 6}}


def test_a_row_per_step_from_its_record():
    row = daily.night_row("stage_events", {"status": "succeeded", "seconds": 44.0}, OK)
    assert (row["status"], row["seconds"], row["rows read"], row["rows written"], row["quarantined"]) == \
        ("succeeded", "44", "1,000", "990", "10")
    assert row["run record"] == "stage_events/t-daily-2026-11-26.json"
    earlier = daily.night_row("stage_events", None, OK)
    assert earlier["status"] == "succeeded (earlier run)" and earlier["seconds"] == "40"
    assert daily.night_row("reload", None, None)["status"] == "not run"


def test_a_failed_step_shows_its_jobs_error_or_that_its_driver_was_stopped():
    failed = dict(OK, status="failed", error="TooManyMalformed: 9 of 10 lines malformed", outputs=[])
    ran = {"status": "failed", "seconds": 9.0, "error": "spark-submit.sh stage_events exited with 1"}
    row = daily.night_row("stage_events", ran, failed)
    assert row["status"] == "failed" and row["error"].startswith("TooManyMalformed") and row["rows written"] == "-"
    killed = daily.night_row("stage_events", ran, dict(OK, status="running", outputs=[], seconds=None))
    assert killed["status"] == "failed" and "exited with 1" in killed["error"] and "driver was stopped" in killed["error"]
    lost = daily.night_row("upload", ran, None)
    assert lost["error"] == ran["error"] and lost["run record"] == "-"
    table = daily.render_night("2026-11-26", [row, daily.night_row("reload", None, None)])
    header, first, second = table.splitlines()[1:4]
    assert header.split()[:3] == ["step", "status", "seconds"] and first.split()[:3] == ["stage_events", "failed", "9"]
    assert second.split()[:3] == ["reload", "not", "run"]
    assert table.splitlines()[-1] == "  stage_events: TooManyMalformed: 9 of 10 lines malformed"


def test_spark_steps_carry_the_nights_record_id(tmp_path):
    from common.config import load_config

    cmds = daily.step_commands(load_config("pipeline.yml"), "2026-11-26", "yarn", [], "X-daily-2026-11-26")
    for step, argv in cmds.items():
        assert (argv[-2:] == ["--record-id", "X-daily-2026-11-26"]) == (daily.spark_job(argv) is not None), step
    assert daily.spark_job(cmds["analyze_ab"]) == "analyze_ab" and daily.spark_job(cmds["upload"]) is None


@pytest.mark.slow
def test_the_night_fails_naming_its_step_and_resumes_from_it(tmp_path, capsys, caplog):
    """stage_events succeeds, extract_interactions fails (no catalog); --from-step resumes after the fix."""
    lines = write_logs(tmp_path)
    sets = [f"storage.root=file://{tmp_path}", f"daily.log_dir={tmp_path / 'daily-logs'}",
            f"daily.lock_file={tmp_path / 'daily.lock'}", "stage.max_error_ratio=0.5",
            "daily.train_window_days=null"]  # the logs are from 2024: read every date up to the night
    argv = ["--date", "2026-11-26", "--master", "local[1]", *sum((["--set", s] for s in sets), [])]
    with caplog.at_level(logging.ERROR, logger="daily"):
        code = daily.main([*argv, "--only", "stage_events", "--only", "extract_interactions"])
    assert code == 1
    assert "failed at step extract_interactions: AnalysisException: [PATH_NOT_FOUND]" in caplog.text
    table = capsys.readouterr().out.splitlines()
    staged = next(line for line in table if line.startswith("stage_events")).split()
    assert staged[1] == "succeeded" and staged[3] == f"{lines:,}"
    runs = tmp_path / "runs"
    record = json.loads(next((runs / "stage_events").glob("*-daily-2026-11-26.json")).read_text())
    assert staged[4] == f"{sum(o['rows'] for o in record['outputs']):,}" and staged[5] == "3"
    failed = next(line for line in table if line.startswith("extract_interactions")).split()
    assert failed[1] == "failed"
    assert any(line.startswith("  extract_interactions: AnalysisException: [PATH_NOT_FOUND]") for line in table)

    catalog = tmp_path / "world" / "tracks.jsonl"
    catalog.parent.mkdir()
    catalog.write_text("".join(json.dumps({"track": t, "artist": "a", "title": str(t)}) + "\n" for t in range(7)))
    assert daily.main([*argv, "--from-step", "extract_interactions", "--only", "stage_events",
                       "--only", "extract_interactions"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert next(line for line in table if line.startswith("stage_events")).split()[1:4] == \
        ["succeeded", "(earlier", "run)"]
    assert next(line for line in table if line.startswith("extract_interactions")).split()[1] == "succeeded"
    assert len(list((runs / "extract_interactions").glob("*-daily-2026-11-26.json"))) == 2  # the failure is kept
