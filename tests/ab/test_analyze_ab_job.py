"""analyze_ab end to end: botify-format logs uploaded with botify-upload, the job's outputs, re-runs,
malformed-line quarantine and clear errors (real Spark, real files)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from common.config import ConfigError
from common.event_log_reader import TooManyMalformed
from jobs import analyze_ab
from pipeline import upload_logs

from .helpers import COURSE_LOG, pandas_user_metrics, read_jsonl

BAD_LINES = ['this is not json',
             '{"message": "next", "timestamp": "yesterday", "user": 1, "track": 2, "time": 0.5, "experiments": {"AB": "T1"}}']
TABLE_HEADER = "| treatment | metric | effect | lower | upper | control_mean | treatment_mean | significant |"


def local(uri: str) -> Path:
    return Path(uri[len("file://"):])


def botify_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "botify"
    logs.mkdir()
    shutil.copy(COURSE_LOG, logs / "events-20210523T120000000000-host-1-0.jsonl")
    (logs / "events-20210523T130000000000-host-1-1.jsonl").write_text("\n".join(BAD_LINES) + "\n")
    # still being written: must not reach the analysis (it would add a user 99 in T1)
    (logs / "events-20210523T140000000000-host-1-2.jsonl.open").write_text(
        '{"message": "last", "timestamp": 1, "user": 99, "track": 1, "time": 1.0, "experiments": {"AB": "T1"}}\n')
    return logs


def job(warehouse, *args):
    return analyze_ab.main(["--set", f"storage.root={warehouse}", "--set", "ab.max_error_ratio=0.1", *args])


def test_upload_then_analyze_course_logs(tmp_path, warehouse, capsys):
    assert upload_logs.main(["--set", f"storage.root={warehouse}", "--log-dir", str(botify_dir(tmp_path)), "--no-progress"]) == 0
    capsys.readouterr()
    assert job(warehouse, "--run", "r1") == 0
    out = capsys.readouterr().out
    run_dir = local(warehouse) / "ab" / "AB" / "r1"
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == [
        "_MANIFEST.json", "_SUCCESS", "ab_results.png", "effects.csv", "effects.json", "report.md", "user_metrics"]
    assert (local(warehouse) / "ab" / "AB" / "LATEST").read_text().strip() == "r1"

    manifest = json.loads((run_dir / "_MANIFEST.json").read_text())
    assert manifest["lines"] == 26 and manifest["malformed"] == {"not_json_object": 1, "bad_timestamp": 1}
    assert (manifest["trailing_sessions"], manifest["trailing_rule"], manifest["analysed_users"]) == (1, "drop", 6)
    assert manifest["users_per_treatment"] == {"C": 3, "T1": 3} and manifest["events"] == 23

    effects = pd.read_csv(run_dir / "effects.csv").set_index("metric")
    assert list(effects["treatment"].unique()) == ["T1"] and len(effects) == 4
    # hand-computed from the fixture: sessions C = (2, 2, 3), T1 = (2, 1, 1); lengths C = (2.5, 2, 5/3), T1 = (2.5, 2, 2)
    assert effects.loc["sessions", "control_mean"] == pytest.approx(7 / 3)
    assert effects.loc["sessions", "treatment_mean"] == pytest.approx(4 / 3)
    assert effects.loc["sessions", "effect"] == pytest.approx((4 / 7 - 1) * 100)
    assert effects.loc["mean_session_length", "control_mean"] == pytest.approx((2.5 + 2 + 5 / 3) / 3)
    assert (effects["lower"] <= effects["effect"]).all() and (effects["effect"] <= effects["upper"]).all()

    data = json.loads((run_dir / "effects.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert isinstance(data["summary"][0]["users"], int)
    assert data["experiment"] == "AB" and data["control"] == "C" and len(data["effects"]) == 4
    assert data["srm"]["observed"] == {"C": 3, "T1": 3} and not data["srm"]["mismatch"]

    report = (run_dir / "report.md").read_text()
    assert TABLE_HEADER in report and "SRM:" in report and "MDE (80% power" in report
    assert report.strip() in out  # the job prints the report
    assert (run_dir / "ab_results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    quarantine = local(warehouse) / "quarantine" / "analyze_ab" / "AB" / "r1" / "lines"
    bad = [json.loads(line) for f in quarantine.glob("*.json") for line in f.read_text().splitlines()]
    assert sorted(b["reason"] for b in bad) == ["bad_timestamp", "not_json_object"]
    assert all(b["source"].endswith("-1.jsonl") for b in bad)

    # A re-run of the same run id replaces the output (here with trailing sessions kept).
    assert job(warehouse, "--run", "r1", "--set", "ab.trailing_session=keep") == 0
    manifest = json.loads((run_dir / "_MANIFEST.json").read_text())
    assert (manifest["trailing_rule"], manifest["events"]) == ("keep", 24)
    effects = pd.read_csv(run_dir / "effects.csv").set_index("metric")
    assert effects.loc["sessions", "treatment_mean"] == pytest.approx(5 / 3)
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(("_tmp-", "_old-"))]


@pytest.mark.slow
def test_staged_logs_give_the_raw_logs_analysis_and_staging_counts(tmp_path, warehouse, capsys):
    """Uploaded logs staged once (jobs/stage_events) then analysed: the raw run's facts and the pandas
    reference's user metrics; the malformed lines are staging's (quarantined there), reported by the job."""
    from jobs import stage_events

    assert upload_logs.main(["--set", f"storage.root={warehouse}", "--log-dir", str(botify_dir(tmp_path)), "--no-progress"]) == 0
    assert job(warehouse, "--run", "raw") == 0
    assert stage_events.main(["--set", f"storage.root={warehouse}", "--set", "stage.max_error_ratio=0.1",
                              "--input", "logs/ab", "--dataset", "ab", "--run", "s1"]) == 0
    assert job(warehouse, "--run", "staged", "--input", "events/ab") == 0
    capsys.readouterr()
    ab = local(warehouse) / "ab" / "AB"
    raw, staged = (json.loads((ab / r / "_MANIFEST.json").read_text()) for r in ("raw", "staged"))
    for key in ("lines", "malformed", "events", "duplicates_dropped", "analysed_sessions", "users_per_treatment"):
        assert staged[key] == raw[key], key
    assert staged["malformed"] == {"not_json_object": 1, "bad_timestamp": 1}
    assert staged["quarantine"].endswith("quarantine/stage_events/ab/s1")
    assert not (local(warehouse) / "quarantine" / "analyze_ab" / "AB" / "staged").exists()

    users = pd.read_parquet(ab / "staged" / "user_metrics").sort_values("user", ignore_index=True)
    expected = pandas_user_metrics(read_jsonl([COURSE_LOG]))
    assert users["user"].tolist() == expected["user"].tolist()
    for column in ("treatment", "sessions"):
        assert users[column].tolist() == expected[column].tolist()
    for column in ("mean_session_length", "mean_session_time", "mean_request_time"):
        assert users[column].to_numpy() == pytest.approx(expected[column].to_numpy(), nan_ok=True)


def test_too_many_malformed_lines_publish_nothing(tmp_path, warehouse):
    logs = local(warehouse) / "logs" / "ab"
    logs.mkdir(parents=True)
    shutil.copy(COURSE_LOG, logs / "a.jsonl")
    (logs / "b.jsonl").write_text("\n".join(BAD_LINES) + "\n")
    with pytest.raises(TooManyMalformed, match="2 of 26 lines malformed"):
        analyze_ab.main(["--set", f"storage.root={warehouse}", "--run", "r1"])  # default max_error_ratio 1%
    assert not (local(warehouse) / "ab").exists()
    assert not (local(warehouse) / "quarantine").exists()  # a failed check writes nothing, quarantine included
    # the unknown control is named, with the treatments that exist
    with pytest.raises(ConfigError, match=r"control 'T9' has no users.*\['C', 'T1'\]"):
        job(warehouse, "--run", "r2", "--control", "T9")
    with pytest.raises(ConfigError, match="experiment name"):
        job(warehouse, "--run", "r3", "--experiment", "../AB")
    assert not (local(warehouse) / "ab").exists()


def test_report_flags_sample_ratio_mismatch():
    from common import ab_stats

    effects = pd.DataFrame([{c: 0.0 for c in ab_stats.EFFECT_COLUMNS} | {
        "treatment": "T1", "metric": "sessions", "significant": False, "p_value": 0.5}])
    srm = ab_stats.srm({"C": 5000, "T1": 5400}, {"C": 1, "T1": 1})
    facts = {"events": 1, "analysed_sessions": 1, "analysed_users": 10400, "lines": 1, "malformed_lines": 0,
             "duplicates_dropped": 0, "trailing_sessions": 0, "trailing_rule": "drop", "excluded_users": 0}
    report = analyze_ab.render_report("AB", "C", "r", effects, srm, facts, 0.05, 0.8)
    assert "SAMPLE RATIO MISMATCH" in report and "users C 5000, T1 5400" in report
    ok = analyze_ab.render_report("AB", "C", "r", effects, ab_stats.srm({"C": 5000, "T1": 5000}, {"C": 1, "T1": 1}),
                                  facts, 0.05, 0.8)
    assert "MISMATCH" not in ok
