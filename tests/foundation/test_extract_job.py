"""extract_interactions on tiny logs written to disk: unknown tracks, a failed error ratio, duplicates (real Spark, real files)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import load_config
from common.event_log_reader import TooManyMalformed
from jobs import extract_interactions

# Each test runs the whole job (several Spark jobs): seconds each.
pytestmark = pytest.mark.slow

TRACKS = 20


def write_logs(root: Path, unknown: int, bad: int) -> Path:
    """100 events of 10 users over tracks 0..19 (plus ``unknown`` on tracks past the catalog, ``bad`` junk lines)."""
    catalog = root / "world" / "tracks.jsonl"
    catalog.parent.mkdir(parents=True)
    catalog.write_text("".join(json.dumps({"track": t, "artist": "a", "title": str(t)}) + "\n" for t in range(TRACKS)))
    lines = []
    for i in range(100 - unknown - bad):
        user, step = divmod(i, 10)
        lines.append({"message": "last" if step == 9 else "next", "timestamp": 1000 + i, "user": user,
                      "track": (user + step) % TRACKS, "time": 0.9, "latency": 0.001, "recommendation": step,
                      "experiments": {}})
    lines += [{"message": "next", "timestamp": 5000 + i, "user": 50 + i, "track": 1000 + i, "time": 0.9}
              for i in range(unknown)]
    logs = root / "logs" / "train"
    logs.mkdir(parents=True)
    text = [json.dumps(e) for e in lines] + ["\x00\x01 junk"] * bad
    (logs / "part-0.jsonl").write_text("\n".join(text) + "\n")
    return logs


def run(spark, root: Path, run_id: str):
    config = load_config("pipeline.yml", [f"storage.root=file://{root}"])
    return extract_interactions.run(spark, config, f"file://{root}/logs/train", run_id, f"file://{root}/world/tracks.jsonl")


def quarantined(root: Path, run_id: str):
    folder = root / "quarantine" / "extract_interactions" / run_id / "lines"
    return [json.loads(line) for f in folder.glob("*.json") for line in f.read_text().splitlines()]


def test_unknown_tracks_are_quarantined_and_counted_but_do_not_fail_the_run(spark, tmp_path):
    write_logs(tmp_path, unknown=5, bad=0)
    manifest = run(spark, tmp_path, "r1")  # default max_error_ratio 1%: 5% unknown tracks must not count against it
    assert manifest["lines"] == 100 and manifest["malformed"] == {} and manifest["unknown_tracks"] == 5
    assert manifest["events"] == 95 and manifest["duplicates_dropped"] == 0
    assert sorted(q["reason"] for q in quarantined(tmp_path, "r1")) == ["unknown_track"] * 5
    assert manifest["quarantine"].endswith("quarantine/extract_interactions/r1")
    assert (tmp_path / "interactions" / "LATEST").read_text().strip() == "r1"


def test_a_failed_error_ratio_writes_nothing(spark, tmp_path):
    write_logs(tmp_path, unknown=0, bad=2)
    with pytest.raises(TooManyMalformed, match="2 of 100 lines malformed.*not_utf8_text=2"):
        run(spark, tmp_path, "r1")
    assert not (tmp_path / "quarantine").exists()
    assert not (tmp_path / "interactions").exists()
