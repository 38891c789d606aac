"""The deploy runbook's files hold together (docs/deploy.md): the systemd units verify, the Prometheus rules pass
promtool's check and their unit tests, every alert reads a metric botify or the nightly really exports, and the
nightly's textfile metric keeps the last success across a failed night.

promtool (Debian's ``prometheus`` package; bootstrap.sh installs it as root) and systemd-analyze are external
tools: without them these tests skip, saying so, except under CI (the ``CI`` variable set), where they fail.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.night_metrics import write_textfile
from tests.botify.conftest import live_server, make_config, next_track, world  # noqa: F401 (world: a fixture)

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "conf" / "prometheus"
SYSTEMD = REPO / "conf" / "systemd"
RULES, RULE_TESTS, SCRAPE = PROM / "botify-rules.yml", PROM / "botify-rules.test.yml", PROM / "scrape.yml"
ALERTS = {"BotifyDown", "BotifyNotReady", "BotifyErrorRatio", "BotifyLatencyP99", "BotifyReloadRejected",
          "BotifyServedVersionStale", "BotifyNightlyFailed", "BotifyNightlyLate"}
HOW_TO_GET = {
    "promtool": "apt-get install --no-install-recommends prometheus (Debian), as bootstrap.sh does as root",
    "systemd-analyze": "apt-get install systemd (Debian)",
    "systemd-tmpfiles": "apt-get install systemd (Debian)",
}


def tool(name: str) -> str:
    """The tool's path; without it: fail under CI, else skip with the reason."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed ({HOW_TO_GET[name]})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run this check")
        pytest.skip(reason)
    return path


def run(*argv, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def pipeline_daily() -> dict:
    return yaml.safe_load((REPO / "conf" / "pipeline.yml").read_text())["daily"]


def unit_settings(path: Path) -> dict:
    """``{key: [values]}`` of a unit file (``Environment=`` split into ``{VAR: value}`` under ``env``)."""
    settings: dict = {"env": {}}
    for line in path.read_text().splitlines():
        if line.startswith(("#", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        settings.setdefault(key, []).append(value)
        if key == "Environment":
            var, _, val = value.partition("=")
            settings["env"][var] = val
    return settings


# ---- systemd -------------------------------------------------------------------------------------------------


def render(template: Path, out_dir: Path) -> Path:
    """What docs/deploy.md's ``sed "s|@CHECKOUT@|$PWD|g"`` makes of ``template`` in this checkout."""
    out = out_dir / template.name.removesuffix(".in")
    out.write_text(template.read_text().replace("@CHECKOUT@", str(REPO)))
    return out


def test_the_units_render_and_verify_cleanly(tmp_path):
    analyze = tool("systemd-analyze")
    assert (REPO / ".venv" / "bin" / "botify").is_file(), "ExecStart needs the checkout's .venv (./bootstrap.sh)"
    units = [render(SYSTEMD / "botify.service.in", tmp_path), render(SYSTEMD / "botify-daily.service.in", tmp_path)]
    shutil.copy(SYSTEMD / "botify-daily.timer", tmp_path)
    units.append(tmp_path / "botify-daily.timer")
    for unit in units:
        assert "@CHECKOUT@" not in unit.read_text()
    result = run(analyze, "verify", *(u.name for u in units), cwd=tmp_path)
    # verify exits 0 on an unknown key or a value it cannot parse, only warning: a warning about ours fails too
    about_ours = [line for line in (result.stdout + result.stderr).splitlines()
                  if any(u.name in line or str(tmp_path) in line for u in units)]
    assert result.returncode == 0 and about_ours == [], result.stdout + result.stderr


def test_botify_writes_its_event_log_where_the_nightly_uploads_from():
    unit = unit_settings(SYSTEMD / "botify.service.in")
    daily = pipeline_daily()
    assert unit["env"]["BOTIFY_LOG_DIR"] == daily["botify_log_dir"]
    assert unit["LogsDirectory"] == [Path(daily["botify_log_dir"]).relative_to("/var/log").as_posix()]
    assert unit["Type"] == ["notify"] and unit["ProtectSystem"] == ["strict"] and unit["PrivateTmp"] == ["yes"]
    assert unit["ExecStart"] == ["@CHECKOUT@/.venv/bin/botify serve"] and unit["User"] == ["botify"]


def test_the_token_comes_from_one_file_for_botify_and_the_nightly():
    token_file = unit_settings(SYSTEMD / "botify.service.in")["env"]["BOTIFY_ADMIN_TOKEN_FILE"]
    assert unit_settings(SYSTEMD / "botify-daily.service.in")["env"]["BOTIFY_ADMIN_TOKEN_FILE"] == token_file
    crontab = (REPO / "conf" / "crontab.example").read_text()
    assert f"\nBOTIFY_ADMIN_TOKEN_FILE={token_file}\n" in crontab
    assert "\nCRON_TZ=UTC\n" in crontab
    assert not re.search(r"^BOTIFY_ADMIN_TOKEN=", crontab, re.M), "no token in plain text in a crontab"


def test_tmpfiles_creates_the_nightly_folders_and_lock(tmp_path):
    tmpfiles = tool("systemd-tmpfiles")
    conf = SYSTEMD / "botify-daily.tmpfiles.conf"
    daily = pipeline_daily()
    lines = [line.split() for line in conf.read_text().splitlines() if line and not line.startswith("#")]
    paths = {fields[1] for fields in lines}
    lock = Path(daily["lock_file"])  # /var/lock is a link to /run/lock
    assert {daily["log_dir"], daily["botify_log_dir"], str(Path("/run/lock") / lock.relative_to("/var/lock"))} == paths
    # as root (this machine has no botify user): the syntax and the modes, under a scratch root
    scratch = tmp_path / "root"
    for folder in ("run/lock", "var/log"):
        (scratch / folder).mkdir(parents=True)
    as_root = tmp_path / "botify-daily.conf"
    as_root.write_text(conf.read_text().replace(" botify botify ", " root root "))
    result = run(tmpfiles, f"--root={scratch}", "--create", as_root)
    assert result.returncode == 0, result.stderr
    assert oct((scratch / "var/log/botify-daily").stat().st_mode & 0o7777) == "0o750"
    assert (scratch / "run/lock" / lock.name).is_file()


# ---- Prometheus ----------------------------------------------------------------------------------------------


def rules() -> list:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules_and_the_scrape_config():
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", RULES)
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked.stdout + checked.stderr
    config = run(promtool, "check", "config", SCRAPE)
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_every_alert():
    promtool = tool("promtool")
    result = run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert {rule["alert"] for rule in rules()} == ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert firing == ALERTS and quiet == ALERTS  # each alert: when it fires, and a case where it must not


def metric_names(expr: str) -> set:
    names = set(re.findall(r"\b(botify_[a-z_]+)", expr))
    return {re.sub(r"_bucket$", "", name) for name in names}


def test_the_rules_read_metrics_botify_exports(world, redis_url, tmp_path):  # noqa: F811 (world: the fixture)
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked")
    with live_server(config) as base:
        next_track(base, 3)
        ready_scrape = requests.get(base + "/metrics", timeout=10).text
    exported = {family.name for family in text_string_to_metric_families(ready_scrape)}
    wanted = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    served = {name for name in wanted if not name.startswith("botify_nightly_")}
    # the parser names a counter family without _total
    assert {re.sub(r"_total$", "", name) for name in served} <= exported, ready_scrape

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(ready_scrape) for s in family.samples}
    assert samples[("botify_ready", ())] == 1
    manifest = yaml.safe_load(Path(world.removeprefix("file://"), "recommendations", "v1", "_MANIFEST.json").read_text())
    published = dt.datetime.fromisoformat(manifest["created_at"]).timestamp()
    assert samples[("botify_served_version_published_timestamp_seconds", (("set", "default"),))] == published
    for trigger in ("start", "admin", "recovery"):  # exported before any rejection (at 0 in a fresh process)
        assert ("botify_reloads_total", (("outcome", "rejected"), ("trigger", trigger))) in samples

    nightly = tmp_path / "botify_nightly.prom"
    write_textfile(nightly, "2026-11-26", [{"step": "upload", "status": "succeeded", "seconds": "3"}])
    written = {family.name for family in text_string_to_metric_families(nightly.read_text())}
    assert wanted - served <= written


def test_not_ready_reads_0_and_publishes_no_time(world, redis_url, tmp_path):  # noqa: F811
    config = make_config(world, redis_url, tmp_path / "logs", "Ranked", artifacts__auto_load=False)
    with live_server(config, load=False) as base:
        scrape = requests.get(base + "/metrics", timeout=10).text
    samples = [s for family in text_string_to_metric_families(scrape) for s in family.samples]
    assert [s.value for s in samples if s.name == "botify_ready"] == [0]
    assert [s for s in samples if s.name == "botify_served_version_published_timestamp_seconds"] == []


# ---- the nightly's textfile metric ---------------------------------------------------------------------------

NIGHT = "2026-11-26"
MIDNIGHT = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc).timestamp()
HELD_STATUS = "held"  # pipeline.daily.HELD


def row(step: str, status: str, seconds: str = "-") -> dict:
    """A row as pipeline.daily.night_row builds it (the columns the textfile reads, and the others)."""
    return {"step": step, "status": status, "error": None, "seconds": seconds, "rows read": "-",
            "rows written": "-", "quarantined": "-", "run record": "-"}


def read_back(path: Path) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def test_a_good_night_then_a_failed_one_keeps_the_last_success(tmp_path):
    path = tmp_path / "botify_nightly.prom"
    good = [row("upload", "succeeded", "12"), row("stage_events", "succeeded", "1,234"), row("reload", HELD_STATUS)]
    write_textfile(path, NIGHT, good, finished_at=MIDNIGHT + 3 * 3600)
    first = read_back(path)
    assert first[("botify_nightly_last_success_timestamp_seconds", ())] == MIDNIGHT + 3 * 3600
    assert first[("botify_nightly_last_run_timestamp_seconds", ())] == MIDNIGHT + 3 * 3600
    assert first[("botify_nightly_date_timestamp_seconds", ())] == MIDNIGHT
    assert first[("botify_nightly_step_seconds", (("step", "stage_events"),))] == 1234
    assert ("botify_nightly_step_seconds", (("step", "reload"),)) not in first  # "-": no duration
    assert first[("botify_nightly_failed", (("step", "upload"),))] == 0
    assert first[("botify_nightly_held", ())] == 1

    failed = [row("upload", "succeeded", "10"), row("stage_events", "failed", "30"), row("reload", "not run"),
              row("train_multidae", "succeeded (earlier run)", "600")]
    next_day = dt.datetime.fromtimestamp(MIDNIGHT + 86400 + 4 * 3600, dt.timezone.utc)
    write_textfile(path, "2026-11-27", failed, finished_at=next_day)
    second = read_back(path)
    assert second[("botify_nightly_last_success_timestamp_seconds", ())] == MIDNIGHT + 3 * 3600  # kept
    assert second[("botify_nightly_last_run_timestamp_seconds", ())] == next_day.timestamp()
    assert second[("botify_nightly_date_timestamp_seconds", ())] == MIDNIGHT + 86400
    assert second[("botify_nightly_failed", (("step", "stage_events"),))] == 1
    assert second[("botify_nightly_failed", (("step", "reload"),))] == 0
    assert second[("botify_nightly_step_seconds", (("step", "train_multidae"),))] == 600
    assert second[("botify_nightly_held", ())] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["botify_nightly.prom"]  # no temporary file left

    write_textfile(path, "2026-11-28", [row("upload", "succeeded", "9")], finished_at=MIDNIGHT + 2 * 86400 + 7200)
    assert read_back(path)[("botify_nightly_last_success_timestamp_seconds", ())] == MIDNIGHT + 2 * 86400 + 7200



def test_a_first_night_that_fails_records_no_success_and_a_bad_old_file_is_replaced(tmp_path):
    path = tmp_path / "botify_nightly.prom"
    write_textfile(path, NIGHT, [row("upload", "failed", "1")], finished_at=MIDNIGHT + 60)
    assert read_back(path)[("botify_nightly_last_success_timestamp_seconds", ())] == 0
    path.write_text("this is not { the text format\n")
    write_textfile(path, NIGHT, [row("upload", "failed", "1")], finished_at=MIDNIGHT + 120)
    assert read_back(path)[("botify_nightly_last_success_timestamp_seconds", ())] == 0
    with pytest.raises(ValueError, match=r"\.prom"):
        write_textfile(tmp_path / "botify_nightly.txt", NIGHT, [])


def test_the_rows_daily_builds_are_what_the_textfile_reads(tmp_path):
    from pipeline.daily import HELD, held_row, night_row

    assert HELD == HELD_STATUS
    rows = [night_row("upload", {"status": "succeeded", "seconds": 4.2}, None),
            night_row("stage_events", {"status": "failed", "seconds": 30.0, "error": "boom"}, None),
            night_row("train_multidae", None, None), held_row("reload", {"since": "x", "reason": "y"})]
    path = tmp_path / "botify_nightly.prom"
    write_textfile(path, NIGHT, rows, finished_at=MIDNIGHT)
    values = read_back(path)
    assert values[("botify_nightly_failed", (("step", "stage_events"),))] == 1
    assert values[("botify_nightly_step_seconds", (("step", "upload"),))] == 4
    assert values[("botify_nightly_held", ())] == 1


# ---- the runbook ---------------------------------------------------------------------------------------------


def test_the_runbook_explains_every_alert_within_its_budget():
    page = REPO / "docs" / "deploy.md"
    assert page.stat().st_size <= 10_000
    text = page.read_text()
    assert [alert for alert in sorted(ALERTS) if f"`{alert}`" not in text] == []
    assert 'sed "s|@CHECKOUT@|$PWD|g" conf/systemd/botify.service.in > /etc/systemd/system/botify.service' in text
