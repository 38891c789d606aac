"""Retention: the planner over random histories (Hypothesis), and the I/O on a real file:// storage root.

The planner must never select a served, pinned, held or LATEST-named version (nor the model of one), anything
protected by name, anything inside an active window, or a name without a date; and it must select everything
else that is past its kind's policy. The second half builds the layout the jobs write with real directories
and files, then checks that a dry run deletes nothing and plans the same, that a real run deletes exactly the
plan, and that a local log goes only once uploaded with the same size.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import retention
from common.config import load_config, load_yaml
from common.retention import Entry, Policy, Protection, Window
from common.storage import FsspecStorage
from pipeline import retention as pipeline_retention

REPO = Path(__file__).resolve().parents[2]

# ---- the planner over random histories -------------------------------------------------------------

BASE = dt.date(2024, 6, 30)
SERIES = ("", "als-", "ease-")
GARBAGE = ("notes.txt", "best", "data.json", "v", "2024-02-30", "events-late.jsonl", "date=yesterday", "latest-model")


def dated_name(kind: str, day: dt.date, n: int, prefix: str, form: int, clock: int):
    """A name of ``kind`` carrying ``day``, as the jobs write them; returns (name, series)."""
    compact = day.strftime("%Y%m%d")
    if kind in (retention.RAW_LOGS, retention.LOCAL_LOGS):
        return f"events-{compact}T{clock:06d}{n:06d}-host-{n}-0.jsonl", ""
    if kind == retention.STAGED_EVENTS:
        return f"date={day.isoformat()}", ""
    if kind == retention.RUN_RECORDS:
        return f"{compact}T{clock:06d}Z-{['daily-x', 'a1b2c3', ''][form]}{n}.json", ""
    prefix = prefix if kind in retention.VERSION_KINDS else ""
    body = [day.isoformat(), f"{compact}T{clock:06d}Z", f"{day.isoformat()}-r{n}"][form]
    return f"{prefix}{body}", prefix


def policies():
    days = st.fixed_dictionaries({}, optional={k: st.integers(1, 120) for k in retention.DAY_KINDS})
    versions = st.fixed_dictionaries({}, optional={k: st.integers(1, 6) for k in retention.VERSION_KINDS})
    return st.builds(Policy, days=days, versions=versions)


def specs(kind: str, policy: Policy):
    """(days from today or None for a dateless name, group, series prefix, name form, time of day) per entry;
    dates right at the policy's edge come often, so an off-by-one cannot hide."""
    if kind in retention.VERSION_KINDS:
        offsets = st.integers(-20, 3)  # crowded: versions of one series compete
    elif kind in policy.days:
        edge = policy.days[kind]
        offsets = st.one_of(st.integers(-150, 3), st.sampled_from([-edge - 1, -edge, -edge + 1]))
    else:
        offsets = st.integers(-150, 3)
    return st.lists(st.tuples(st.one_of(offsets, st.none()), st.sampled_from("ab"), st.sampled_from(SERIES),
                              st.integers(0, 2), st.integers(0, 235959)), max_size=10)


@st.composite
def windows_around(draw, today: dt.date, dates):
    """A window of some kinds whose first and last days are often entries' own dates (edges are where bugs are)."""
    near = lambda: st.builds(lambda d: today - dt.timedelta(days=d), st.integers(-5, 160))  # noqa: E731
    first = draw(st.one_of(near(), st.sampled_from(dates)) if dates else near())
    later = [d for d in dates if d >= first]
    last = draw(st.one_of(st.builds(lambda k: first + dt.timedelta(days=k), st.integers(0, 60)),
                          *([st.sampled_from(later)] if later else [])))
    return Window(first, last, frozenset(draw(st.sets(st.sampled_from(retention.KINDS), min_size=1))), "a window")


@st.composite
def histories(draw):
    today = BASE + dt.timedelta(days=draw(st.integers(-400, 400)))
    policy = draw(policies())
    found = {}  # uri -> (entry, date or None, series)
    for kind in retention.KINDS:
        for n, (offset, group, prefix, form, clock) in enumerate(draw(specs(kind, policy))):
            group = "" if kind in retention.VERSION_KINDS else group
            if offset is None:
                name, day, series = GARBAGE[clock % len(GARBAGE)], None, None
            else:
                day = today + dt.timedelta(days=offset)
                name, series = dated_name(kind, day, n, prefix, form, clock)
            uri = f"mem://{kind}/{group}/{name}"
            found.setdefault(uri, (Entry(kind, name, uri, group), day, series))
    entries = list(found.values())
    names = {kind: sorted({e.name for e, _, _ in entries if e.kind == kind}) for kind in retention.KINDS}
    some = lambda kind: draw(st.sets(st.sampled_from(names[kind] + ["not-there"])))  # noqa: E731
    recs = names[retention.RECOMMENDATIONS] + names[retention.MODELS] + ["2020-01-01"]
    windows = tuple(draw(windows_around(today, sorted({d for _, d, _ in entries if d}))) for _ in range(draw(st.integers(0, 3))))
    protection = Protection(
        served=frozenset(draw(st.sets(st.sampled_from(recs)))),
        held=frozenset(draw(st.sets(st.sampled_from(recs), max_size=2))),
        pinned={v: "set x" for v in draw(st.sets(st.sampled_from(recs), max_size=2))},
        pointed={kind: {n: "LATEST" for n in some(kind)} for kind in draw(st.sets(st.sampled_from(retention.KINDS)))},
        entries={(kind, n): "lineage" for kind in retention.KINDS
                 for n in draw(st.sets(st.sampled_from(names[kind] or ["x"]), max_size=2))},
        windows=windows,
        unknown={kind: "pointer unreadable" for kind in draw(st.sets(st.sampled_from(retention.KINDS), max_size=1))},
    )
    return today, entries, protection, policy


def protected(entry: Entry, day: dt.date, p: Protection) -> bool:
    """The rules as the module docstring states them, written out independently of the planner."""
    version_names = p.served | p.held | set(p.pinned) | set(p.pointed.get(retention.RECOMMENDATIONS, {}))
    return (entry.kind in p.unknown
            or (entry.kind == retention.MODELS and retention.RECOMMENDATIONS in p.unknown)
            or (entry.kind in retention.VERSION_KINDS and entry.name in version_names)
            or entry.name in p.pointed.get(entry.kind, {})
            or (entry.kind, entry.name) in p.entries
            or any(w.first <= day <= w.last and entry.kind in w.kinds for w in p.windows))


def past_policy(entry: Entry, day: dt.date, series: str, today: dt.date, entries, policy: Policy) -> bool:
    if entry.kind in policy.days:
        return (today - day).days > policy.days[entry.kind]
    if entry.kind in policy.versions:
        newer = [e for e, d, s in entries if d is not None and e.kind == entry.kind and e.group == entry.group
                 and s == series and (d, e.name) > (day, entry.name)]
        return len(newer) >= policy.versions[entry.kind]
    return False


FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(histories())
def test_never_selects_what_is_protected_dateless_or_in_a_window(history):
    today, entries, protection, policy = history
    plan = retention.plan([e for e, _, _ in entries], policy, today, protection)
    version_names = (protection.served | protection.held | set(protection.pinned)
                     | set(protection.pointed.get(retention.RECOMMENDATIONS, {})))
    for decision in plan.deletions:
        entry = decision.entry
        day = retention.entry_date(entry.kind, entry.name)
        assert day is not None
        assert not (entry.kind in retention.VERSION_KINDS and entry.name in version_names), decision
        assert entry.name not in protection.pointed.get(entry.kind, {}), decision
        assert (entry.kind, entry.name) not in protection.entries, decision
        assert not any(w.covers(entry.kind, day) for w in protection.windows), decision
        assert entry.kind not in protection.unknown


@FAST
@given(histories())
def test_selects_exactly_what_is_past_its_policy_and_unprotected(history):
    today, entries, protection, policy = history
    for entry, day, series in entries:  # the oracle below trusts the dates the names were written with
        assert retention.entry_date(entry.kind, entry.name) == day
        if day is not None and entry.kind in retention.VERSION_KINDS:
            assert retention.series(entry.name) == series
    plan = retention.plan([e for e, _, _ in entries], policy, today, protection)
    expected = {e.uri for e, day, series in entries
                if day is not None and not protected(e, day, protection) and past_policy(e, day, series, today, entries, policy)}
    assert {d.entry.uri for d in plan.deletions} == expected
    # every entry is decided exactly once
    decided = [d.entry.uri for d in plan.deletions + plan.kept]
    assert sorted(decided) == sorted(e.uri for e, _, _ in entries)


def test_a_model_of_a_protected_version_stays_and_a_rejected_version_ages_like_any():
    today = dt.date(2024, 6, 30)
    names = ["2024-06-01", "2024-06-02", "2024-06-28", "2024-06-29"]
    inventory = [Entry(kind, n, f"mem://{kind}/{n}") for kind in (retention.MODELS, retention.RECOMMENDATIONS) for n in names]
    plan = retention.plan(inventory, Policy(versions={retention.MODELS: 2, retention.RECOMMENDATIONS: 2}), today,
                          Protection(held=frozenset({"2024-06-01"})))
    assert sorted((d.entry.kind, d.entry.name) for d in plan.deletions) == [
        (retention.MODELS, "2024-06-02"), (retention.RECOMMENDATIONS, "2024-06-02")]
    assert {d.reason for d in plan.kept if d.entry.name == "2024-06-01"} == {
        "held (recommendations/HOLD)", "model of a held version"}


def test_policy_from_config_refuses_typos_and_zero():
    assert retention.policy_from_config({"raw_logs_days": 14, "models_versions": 3, "reports_days": None,
                                         "botify_url": None}) == Policy(days={"raw_logs": 14}, versions={"models": 3})
    for bad in ({"raw_log_days": 14}, {"models_days": 3}, {"quarantine_days": 0}, {"reports_days": "30"}):
        with pytest.raises(ValueError):
            retention.policy_from_config(bad)
    assert set(retention.policy_from_config(load_config("pipeline.yml")["retention"]).days) == set(retention.DAY_KINDS)


def test_staged_manifest_drops_deleted_dates_and_the_runs_serving_nothing_any_more():
    manifest = {"job": "stage_events",
                "dates": {"2024-01-01": {"events": 3, "run": "a"}, "2024-01-02": {"events": 4, "run": "b"},
                          "2024-01-03": {"events": 1, "run": "c"}},
                "runs": {"a": {"lines": 3}, "b": {"lines": 4}, "c": {"lines": 1}},
                "inputs": {"logs/x/f1.jsonl": {"size": 9, "run": "b"}, "logs/x/f0.jsonl": {"size": 5, "run": "c"}}}
    assert retention.staged_manifest_without(manifest, ["2024-01-01", "2024-01-03"], "now") == {
        "job": "stage_events", "updated_at": "now", "dates": {"2024-01-02": {"events": 4, "run": "b"}},
        "runs": {"b": {"lines": 4}, "c": {"lines": 1}}, "inputs": manifest["inputs"]}


# ---- I/O on a real file:// root ---------------------------------------------------------------------

TODAY = dt.date(2024, 6, 30)
SERVED = {"2024-06-26"}


def touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def version(folder: Path, name: str, manifest: dict = None) -> None:
    touch(folder / name / "_SUCCESS", "")
    touch(folder / name / "_MANIFEST.json", json.dumps(manifest or {}))


def log_name(day: str, n: int) -> str:
    return f"events-{day.replace('-', '')}T000000000000-host-1-{n}.jsonl"


def build_layout(tmp_path: Path) -> Path:
    """The layout the jobs write (paths from jobs/*.py), with one entry of each fate per kind."""
    root = tmp_path / "warehouse"
    for day, n in (("2024-05-01", 0), ("2024-06-10", 1), ("2024-06-25", 2)):
        touch(root / "logs/botify" / log_name(day, n), "raw")
    touch(root / "logs/botify/data.json")
    touch(root / "logs/botify" / log_name("2024-06-01", 10), "uploaded")       # its local copy remains
    touch(root / "logs/botify" / log_name("2024-06-02", 11), "other size")  # old, but its local copy remains
    touch(root / "logs/train" / log_name("2024-01-01", 0))                     # never staged: not raw_logs
    staged = root / "events/botify"
    for day in ("2024-01-01", "2024-03-01", "2024-06-29"):
        touch(staged / f"date={day}" / "part-0.parquet")
    touch(staged / "_STAGED.json", json.dumps({
        "job": "stage_events", "dates": {"2024-01-01": {"events": 1, "duplicates": 0, "run": "old"},
                                         "2024-03-01": {"events": 1, "duplicates": 0, "run": "new"},
                                         "2024-06-29": {"events": 1, "duplicates": 0, "run": "new"}},
        "runs": {"old": {"malformed": {}}, "new": {"malformed": {}}},
        "inputs": {"logs/botify/" + log_name("2024-06-25", 2): {"size": 3, "mtime_ms": 0, "run": "new"}}}))
    touch(root / "quarantine/stage_events/botify/2024-05-01/lines/part-0.json")
    touch(root / "quarantine/extract_interactions/2024-06-20/lines/part-0.json")
    touch(root / "quarantine/analyze_ab/AB/2024-04-01/pre/lines/part-0.json")
    touch(root / "quarantine/someone_elses/2024-01-01/x")
    for run in ("2024-06-01", "2024-06-02", "2024-06-12", "2024-06-20", "2024-06-29"):
        version(root / "interactions", run)
    touch(root / "interactions/LATEST", "2024-06-29\n")
    models = root / "models/multidae"
    for v in ("2024-06-01", "2024-06-25", "2024-06-26", "2024-06-27", "2024-06-28", "2024-06-29"):
        version(models, v, {"interactions_run": "2024-06-02" if v == "2024-06-01" else v})
    touch(models / "LATEST", "2024-06-29\n")
    touch(models / "_work/2024-06-30/last.pt")
    recs = root / "recommendations"
    for v in ("2024-06-01", "2024-06-25", "2024-06-26", "2024-06-27", "2024-06-28", "2024-06-29",
              "als-2024-06-10", "als-2024-06-20", "als-2024-06-21", "als-2024-06-22", "als-2024-06-23", "best-one"):
        version(recs, v, {"model_version": v})
    touch(recs / "LATEST", "2024-06-29\n")
    touch(recs / "LATEST-als", "als-2024-06-23\n")
    touch(recs / "HOLD", json.dumps({"version": "2024-06-01", "reason": "looking into it", "since": "2024-06-02"}))
    touch(recs / "REJECTED", json.dumps({"versions": {"2024-06-25": {"at": "2024-06-26", "reason": "bad"}}}))
    touch(root / "runs/extract_interactions/20240101T000000Z-daily-2024-01-01.json", "{}")
    touch(root / "runs/extract_interactions/20240620T000000Z-daily-2024-06-20.json", "{}")
    touch(root / "runs/extract_interactions/my-own-id.json", "{}")
    for run in ("2024-01-01", "2024-02-01", "2024-06-29"):
        touch(root / "ab/AB" / run / "ab_results.json")
    touch(root / "ab/AB/LATEST", "2024-02-01\n")
    local = tmp_path / "botify-logs"
    touch(local / log_name("2024-06-01", 10), "uploaded")        # same size on storage, old: goes
    touch(local / log_name("2024-06-02", 11), "different")       # another size on storage: stays
    touch(local / log_name("2024-06-03", 12), "not uploaded")    # stays
    touch(local / log_name("2024-06-29", 13), "recent")          # uploaded, but younger than 3 days: stays
    touch(root / "logs/botify" / log_name("2024-06-29", 13), "recent")
    touch(local / (log_name("2024-06-01", 14) + ".open"), "still written")
    touch(local / ".botify-upload.lock", "")
    return root


# What the layout above must lose on TODAY, with the reasons in build_layout's comments and these:
# models/recommendations keep 3 per series; 2024-06-26 is served, 2024-06-01 held (and its model and run kept),
# als-2024-06-10 pinned by botify.yml; staged 2024-03-01 is in experiment AB's window, interactions 2024-06-12 in
# the training window; ab/AB/2024-02-01 is named by ab/AB/LATEST.
EXPECTED = {
    "warehouse/logs/botify/" + log_name("2024-05-01", 0), "warehouse/logs/botify/" + log_name("2024-06-10", 1),
    "warehouse/events/botify/date=2024-01-01",
    "warehouse/quarantine/stage_events/botify/2024-05-01", "warehouse/quarantine/analyze_ab/AB/2024-04-01",
    "warehouse/interactions/2024-06-01",
    "warehouse/models/multidae/2024-06-25",
    "warehouse/recommendations/2024-06-25", "warehouse/recommendations/als-2024-06-20",
    "warehouse/runs/extract_interactions/20240101T000000Z-daily-2024-01-01.json",
    "warehouse/ab/AB/2024-01-01",
    "botify-logs/" + log_name("2024-06-01", 10),
}


def make_config(tmp_path: Path, root: Path) -> dict:
    botify = load_yaml("botify.yml")
    botify["artifacts"]["sets"] = {"als": {"pointer": "LATEST-als", "version": "als-2024-06-10"}}
    botify["experiments"]["AB"]["start"] = dt.date(2024, 2, 15)
    botify["experiments"]["AB"]["planned_days"] = 200  # still running on 2024-06-30
    (tmp_path / "botify.yml").write_text(yaml.safe_dump(botify))
    config = load_config("pipeline.yml", [
        f"storage.root=file://{root}", f"daily.botify_log_dir={tmp_path / 'botify-logs'}",
        f"daily.lock_file={tmp_path / 'daily.lock'}", f"retention.botify_config={tmp_path / 'botify.yml'}",
        "retention.models_versions=3", "retention.recommendations_versions=3", "retention.botify_url=http://127.0.0.1:9"])
    config["daily"]["train_window_days"] = 20  # the key botify-daily's training window will add
    return config


def snapshot(tmp_path: Path) -> dict:
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def planned(plan, tmp_path: Path) -> set:
    return {str(Path(d.entry.uri[len("file://"):]).relative_to(tmp_path)) for d in plan.deletions}


def under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


@pytest.fixture
def layout(tmp_path, monkeypatch):
    monkeypatch.delenv("BOTIFY_RECOMMENDATIONS_VERSION", raising=False)
    root = build_layout(tmp_path)
    return tmp_path, make_config(tmp_path, root)


def test_dry_run_deletes_nothing_and_plans_what_a_real_run_deletes(layout):
    tmp_path, config = layout
    storage = FsspecStorage()
    before = snapshot(tmp_path)
    plan = pipeline_retention.plan_for(config, storage, TODAY, SERVED, environ={})
    assert planned(plan, tmp_path) == EXPECTED
    assert {d.entry.name for d in plan.kept if d.reason.startswith(retention.UNKNOWN_NAME)} == {
        "data.json", "someone_elses", "best-one", "my-own-id.json"}

    dry = pipeline_retention.apply(plan, storage, dry_run=True)
    assert snapshot(tmp_path) == before
    assert {k: c["deleted"] for k, c in dry.items()} == {k: c["delete"] for k, c in plan.counts().items()}
    assert dry["recommendations"]["bytes"] > 0
    again = pipeline_retention.plan_for(config, storage, TODAY, SERVED, environ={})
    assert again.deletions == plan.deletions

    done = pipeline_retention.apply(plan, storage, dry_run=False)
    assert done == dry
    after = snapshot(tmp_path)
    staged = "warehouse/events/botify/_STAGED.json"
    assert {p: b for p, b in after.items() if p != staged} == {
        p: b for p, b in before.items() if p != staged and not under(p, EXPECTED)}
    manifest = json.loads(after[staged])
    assert sorted(manifest["dates"]) == ["2024-03-01", "2024-06-29"] and sorted(manifest["runs"]) == ["new"]
    assert manifest["inputs"] == json.loads(before[staged])["inputs"]

    # The uploaded copy of the local log just deleted is no longer protected by it, and goes next.
    assert planned(pipeline_retention.plan_for(config, storage, TODAY, SERVED, environ={}), tmp_path) == {
        "warehouse/logs/botify/" + log_name("2024-06-01", 10)}


def test_local_logs_go_only_when_uploaded_with_the_same_size(layout):
    tmp_path, config = layout
    storage = FsspecStorage()
    plan = pipeline_retention.plan_for(config, storage, TODAY, SERVED, environ={})
    local = {d.entry.name: d.reason for d in plan.kept if d.entry.kind == retention.LOCAL_LOGS}
    assert "not uploaded" in local[log_name("2024-06-03", 12)]
    assert "holds 10 bytes, this file 9" in local[log_name("2024-06-02", 11)]
    assert local[log_name("2024-06-29", 13)] == "within 3 days"
    # The copy on storage changes after planning: the file is checked again and kept.
    (tmp_path / "warehouse/logs/botify" / log_name("2024-06-01", 10)).write_text("truncated upload")
    counts = pipeline_retention.apply(plan, storage, dry_run=False)
    assert (tmp_path / "botify-logs" / log_name("2024-06-01", 10)).exists()
    assert counts["local_logs"]["deleted"] == 0 and counts["local_logs"]["kept"] == 4


def test_unknown_served_versions_or_an_unreadable_hold_keep_every_version(layout):
    tmp_path, config = layout
    counts = pipeline_retention.run(config, "2024-06-30", dry_run=True)  # botify_url answers nothing
    assert counts["recommendations"]["deleted"] == counts["models"]["deleted"] == 0
    assert counts["interactions"]["deleted"] == 1
    hold = tmp_path / "warehouse/recommendations/HOLD"
    hold.write_text("{not json")
    plan = pipeline_retention.plan_for(config, FsspecStorage(), TODAY, SERVED, environ={})
    assert not [d for d in plan.deletions if d.entry.kind in retention.VERSION_KINDS]
    # A hold without a version (botify hold) only stops the pointers: versions age as usual, the held one goes.
    hold.write_text(json.dumps({"version": None, "reason": "looking", "since": "2024-06-29"}))
    plan = pipeline_retention.plan_for(config, FsspecStorage(), TODAY, SERVED, environ={})
    assert "warehouse/recommendations/2024-06-01" in planned(plan, tmp_path)


def test_the_command_prints_counts_per_kind(layout, capsys):
    tmp_path, config = layout
    before = snapshot(tmp_path)
    code = pipeline_retention.main([
        "--date", "2024-06-30", "--dry-run", "--served", "2024-06-26", "--set", f"storage.root={config['storage']['root']}",
        "--set", f"daily.botify_log_dir={config['daily']['botify_log_dir']}",
        "--set", f"daily.lock_file={tmp_path / 'daily.lock'}",
        "--set", f"retention.botify_config={tmp_path / 'botify.yml'}", "--set", "retention.recommendations_versions=3"])
    assert code == 0 and {k: v for k, v in snapshot(tmp_path).items() if k != "daily.lock"} == before
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "retention 2024-06-30 (dry run: nothing deleted)"
    assert lines[1].split() == ["kind", "to", "delete", "kept", "failed", "bytes"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert set(rows) == set(retention.KINDS)
    assert rows["recommendations"][:3] == ["2", "10", "0"] and rows["reports"][:2] == ["1", "2"]
    assert os.path.exists(tmp_path / "daily.lock")


def test_the_command_runs_under_no_lock_but_its_parent_daily_runs(layout):
    """botify-daily runs this command as its retention step while it holds daily.lock_file with its pid in it:
    the step runs; any other holder makes the command refuse."""
    tmp_path, config = layout
    lock_file = tmp_path / "daily.lock"
    argv = ["--date", "2024-06-30", "--dry-run", "--served", "2024-06-26",
            "--set", f"storage.root={config['storage']['root']}", "--set", f"daily.lock_file={lock_file}", "--set", f"retention.botify_config={tmp_path / 'botify.yml'}"]
    with open(lock_file, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        step = subprocess.run([sys.executable, "-m", "pipeline.retention", *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert step.returncode == 0, step.stderr[-2000:]
        assert step.stdout.startswith("retention 2024-06-30 (dry run: nothing deleted)")
        held.seek(0)
        held.truncate()
        held.write("1\n")  # another run's pid
        held.flush()
        assert pipeline_retention.main(argv) == 1


def test_an_experiment_without_a_start_is_windowed_from_its_first_look_or_keeps_every_staged_date(layout):
    tmp_path, config = layout
    botify = yaml.safe_load((tmp_path / "botify.yml").read_text())
    del botify["experiments"]["AB"]["start"]
    (tmp_path / "botify.yml").write_text(yaml.safe_dump(botify))
    staged = {"warehouse/events/botify/date=2024-01-01", "warehouse/events/botify/date=2024-03-01"}
    # no start and no look yet: its window begins at its first event, which only the staged dates know
    plan = pipeline_retention.plan_for(config, FsspecStorage(), TODAY, SERVED, environ={})
    assert not planned(plan, tmp_path) & staged
    history = {"T1": {"schema": 1, "design": {"start": "2024-02-20"}, "looks": []}}
    touch(tmp_path / "warehouse/ab/AB/_SEQUENTIAL.json", json.dumps(history))
    plan = pipeline_retention.plan_for(config, FsspecStorage(), TODAY, SERVED, environ={})
    assert planned(plan, tmp_path) & staged == {"warehouse/events/botify/date=2024-01-01"}


def test_an_experiment_past_its_planned_days_protects_nothing_any_more(layout):
    tmp_path, config = layout
    botify = yaml.safe_load((tmp_path / "botify.yml").read_text())
    root = config["storage"]["root"]
    botify["experiments"]["AB"]["planned_days"] = 14  # 2024-02-15 .. 2024-02-28: over by TODAY
    assert pipeline_retention.experiment_windows(botify, FsspecStorage(), root, "AB", TODAY) == []
    botify["experiments"]["AB"]["planned_days"] = 200  # still running: from its start to today
    [window] = pipeline_retention.experiment_windows(botify, FsspecStorage(), root, "AB", TODAY)
    assert (window.first, window.last) == (dt.date(2024, 2, 15), TODAY)
