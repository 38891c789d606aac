"""The whole loop at a small scale, as a user runs it: `botify-demo --scale small --train-traffic fast --cuped`.

The training traffic comes from the fast path here (the seed scale's); botify's own BASELINE phase, the
default, is what the YARN demo runs (tests/yarn/test_demo_on_yarn.py), so the loop runs once per mode."""
import json
import socket
import subprocess
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import pytest

from testkit.procs import command_lines

REPO = Path(__file__).resolve().parents[2]
# The whole loop runs in the module fixture: minutes on an idle machine, far more on a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def read_jsonl(paths):
    for path in paths:
        with open(path) as fh:
            for line in fh:
                yield json.loads(line)


def listening(url):
    parsed = urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


def processes_mentioning(text):
    return [(str(pid), cmdline[:200]) for pid, cmdline in command_lines() if text in cmdline]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "run"
    result = subprocess.run([str(REPO / ".venv" / "bin" / "botify-demo"), "--scale", "small", "--workdir", str(workdir),
                             "--train-traffic", "fast", "--ab-sessions", "300", "--cuped"],
                            capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result.stdout


def test_report_exists_and_parses(demo):
    workdir, stdout = demo
    out = workdir / "warehouse" / "ab" / "AB" / "demo"
    report = (out / "report.md").read_text()
    assert "| T1 | mean_session_time |" in report
    assert "SRM" in report and "MDE" in report
    effects = json.loads((out / "effects.json").read_text())
    assert effects  # numbers, not text
    assert (out / "ab_results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report:" in stdout and str(out / "report.md") in stdout
    timings = json.loads((workdir / "timings.json").read_text())
    assert {"extract_interactions", "train_multidae", "infer_recommendations", "analyze_ab"} <= set(timings)


def test_treatment_requests_were_answered_from_ranked_lists(demo):
    workdir, _ = demo
    root = workdir / "warehouse"
    version = (root / "recommendations" / "LATEST").read_text().strip()
    lists = {r["user"]: r["tracks"] for r in read_jsonl(sorted((root / "recommendations" / version / "json").glob("*.json")))}
    events = list(read_jsonl(sorted((root / "logs" / "ab").glob("*.jsonl"))))
    assert events and all(set(e["experiments"]) == {"AB"} for e in events)
    by_arm = defaultdict(lambda: [0, 0])  # arm -> [next events of users with a list, answered from that list]
    first_of_session = defaultdict(lambda: [0, 0])
    starts = set()
    for e in sorted(events, key=lambda e: e["timestamp"]):
        arm, user = e["experiments"]["AB"], e["user"]
        if e["message"] == "last":
            starts.discard(user)
            continue
        if user not in lists:
            continue
        hit = e["recommendation"] in lists[user]
        by_arm[arm][0] += 1
        by_arm[arm][1] += hit
        if user not in starts:  # the first recommendation of a session: Ranked gives the list's head
            starts.add(user)
            first_of_session[arm][0] += 1
            first_of_session[arm][1] += e["recommendation"] == lists[user][0]
    t1_total, t1_hits = by_arm["T1"]
    c_total, c_hits = by_arm["C"]
    assert t1_total > 100 and c_total > 100
    # Ranked answers from the list until it runs out (50 steps): nearly every T1 request.
    assert t1_hits / t1_total > 0.95, by_arm
    assert first_of_session["T1"][1] / first_of_session["T1"][0] > 0.95, first_of_session
    # StickyArtist does not use the lists: the control arm shows what chance looks like.
    assert c_hits / c_total < 0.5, by_arm


def count_lines(paths):
    return sum(1 for path in paths for line in open(path) if line.strip())


def staged_events(dataset_dir):
    """(events, duplicates) stage_events recorded in ``_STAGED.json``; fails if the dataset was never staged."""
    dates = json.loads((dataset_dir / "_STAGED.json").read_text())["dates"]
    assert dates and all((dataset_dir / f"date={d}").is_dir() for d in dates)
    return sum(d["events"] for d in dates.values()), sum(d["duplicates"] for d in dates.values())


def test_jobs_read_the_staged_events_not_the_json_logs(demo):
    """Issue 18: the uploaded logs are parsed once by stage_events; extract_interactions and analyze_ab read
    events/<dataset> (the demo going back to logs/<dataset> fails every assertion on the jobs' manifests)."""
    workdir, _ = demo
    root = workdir / "warehouse"
    for dataset in ("train", "ab"):
        events, duplicates = staged_events(root / "events" / dataset)
        assert events + duplicates == count_lines(sorted((root / "logs" / dataset).glob("*.jsonl")))
    extract = json.loads((root / "interactions" / "demo" / "_MANIFEST.json").read_text())
    assert extract["staged"] is True and extract["input"].endswith("/events/train"), extract
    assert extract["events"] == staged_events(root / "events" / "train")[0]
    ab = json.loads((root / "ab" / "AB" / "demo" / "_MANIFEST.json").read_text())
    assert ab["input"].endswith("/events/ab"), ab
    assert "staged events" in (workdir / "logs" / "analyze_ab.log").read_text()
    timings = json.loads((workdir / "timings.json").read_text())
    assert {"stage_events (train)", "stage_events (ab)"} <= set(timings)


def test_everything_started_is_gone(demo):
    workdir, _ = demo
    services = json.loads((workdir / "services.json").read_text())
    assert not listening(services["botify"])
    assert not listening(services["redis"].replace("redis://", "http://"))
    assert processes_mentioning(str(workdir)) == []


def test_fast_training_traffic_feeds_the_same_loop(demo):
    """--train-traffic fast (the seed scale's path): the training logs come from simulate_logs, no botify
    BASELINE phase runs, stage_events stages them like botify's, and the loop still ends in an A/B report
    (with CUPED, whose pre-period is the staged training traffic)."""
    workdir, _ = demo
    train = workdir / "warehouse" / "logs" / "train"
    manifest = json.loads((train / "_MANIFEST.json").read_text())
    assert manifest["sessions"] == 2000 and manifest["experiments"] == ["BASELINE"]
    events = list(read_jsonl(sorted(train.glob("part-*.jsonl"))))
    assert len(events) == manifest["events"] and sum(e["message"] == "last" for e in events) == 2000
    assert not (workdir / "botify-logs" / "baseline").exists()
    timings = json.loads((workdir / "timings.json").read_text())
    assert "start botify (BASELINE)" not in timings and "extract_interactions" in timings
    assert staged_events(workdir / "warehouse" / "events" / "train") == (manifest["events"], 0)
    ab = json.loads((workdir / "warehouse" / "ab" / "AB" / "demo" / "_MANIFEST.json").read_text())
    assert ab["input"].endswith("/events/ab") and ab["cuped"]["pre_input"].endswith("/events/train"), ab
    assert "| T1 | mean_session_time |" in (workdir / "warehouse" / "ab" / "AB" / "demo" / "report.md").read_text()
