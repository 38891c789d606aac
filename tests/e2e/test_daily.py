"""botify-daily: the commands it would run, the lock, per-step logs and stopping at the first failure.

The steps themselves are the same jobs the demo test runs; YARN cannot run here, so the
real runs below use the local master through the same spark-submit.sh."""
import fcntl
from pathlib import Path

from common.config import load_config
from pipeline import daily


def config_for(tmp_path, extra=()):
    return [f"storage.root={tmp_path / 'warehouse'}", f"daily.log_dir={tmp_path / 'daily-logs'}",
            f"daily.lock_file={tmp_path / 'daily.lock'}", f"daily.botify_log_dir={tmp_path / 'botify-logs'}", *extra]


def test_step_commands_name_outputs_after_the_date(tmp_path):
    overrides = config_for(tmp_path)
    config = load_config("pipeline.yml", overrides)
    cmds = daily.step_commands(config, "2026-11-26", "yarn", overrides)
    assert list(cmds) == list(daily.STEPS)
    assert cmds["extract_interactions"][1:2] == ["extract_interactions"]
    assert ["--master", "yarn"] == cmds["train_multidae"][2:4]
    for step in ("stage_events", "extract_interactions", "analyze_ab"):
        assert "2026-11-26" in cmds[step]
    # the logs are parsed once: staging reads the upload, the jobs read what it staged
    assert cmds["stage_events"][cmds["stage_events"].index("--input") + 1] == "logs/botify"
    for step in ("extract_interactions", "analyze_ab"):
        assert cmds[step][cmds[step].index("--input") + 1] == "events/botify"
    assert cmds["train_multidae"][cmds["train_multidae"].index("--interactions") + 1] == "2026-11-26"
    assert cmds["reload"][-2:] == ["--version", "2026-11-26"]
    # overrides travel to every step that reads pipeline.yml
    assert f"storage.root={tmp_path / 'warehouse'}" in cmds["analyze_ab"]


def test_stops_at_first_failure_with_a_log_per_step(tmp_path, capsys):
    (tmp_path / "botify-logs").mkdir()
    # No logs were uploaded, so stage_events fails; nothing after it may run.
    code = daily.main(["--date", "2026-11-26", "--master", "local[1]", "--only", "upload",
                       "--only", "stage_events", "--only", "extract_interactions",
                       *sum((["--set", o] for o in config_for(tmp_path)), [])])
    assert code == 1
    logs = tmp_path / "daily-logs" / "2026-11-26"
    assert (logs / "upload.log").exists()
    assert (logs / "stage_events.log").exists()
    assert not (logs / "extract_interactions.log").exists()
    assert not (tmp_path / "warehouse" / "events").exists()


def test_a_second_run_does_not_overlap(tmp_path):
    lock = tmp_path / "daily.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = daily.main(["--date", "2026-11-26", "--only", "upload",
                           *sum((["--set", o] for o in config_for(tmp_path)), [])])
    assert code == 1
    assert not (tmp_path / "daily-logs" / "2026-11-26" / "upload.log").exists()


def test_rejects_a_bad_date(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        daily.main(["--date", "26/11/2026"])
