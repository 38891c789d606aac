"""One small simulated A/B dataset for the metric and calibration tests, analysed by Spark once."""
from __future__ import annotations

import json

import pytest

from common.experiments import assign
from sim.bulk_logs import generate


@pytest.fixture(scope="session")
def simulated(tmp_path_factory, spark):
    """bulk_logs events (2 files) plus a hand-made third file: duplicated lines and trailing sessions."""
    from common import event_log_reader
    from jobs import analyze_ab

    root = tmp_path_factory.mktemp("ab_sim")
    logs = root / "logs"
    generate(str(logs), events=30_000, users=1_500, tracks=2_000, seed=2024, files=2,
             experiments={"AB": 2}, progress=False)
    first = (logs / "part-00000.jsonl").read_text().splitlines()
    extra = first[:200]  # a re-uploaded slice: exact duplicates
    for user in range(0, 60, 3):  # listening cut off by the upload: events after the user's last `last`
        extra.append(json.dumps({"message": "next", "timestamp": 1_900_000_000_000 + user, "user": user,
                                 "track": 1, "time": 0.5, "latency": 0.01, "experiments": {"AB": assign(user, "AB", 2)}}))
    (logs / "extra.jsonl").write_text("\n".join(extra) + "\n")
    paths = sorted(logs.glob("*.jsonl"))
    parsed = event_log_reader.parse_lines(event_log_reader.read_lines(spark, "file://" + str(logs)))
    valid, _ = event_log_reader.split_valid(parsed)
    events = analyze_ab.with_treatment(valid, "AB")
    users = analyze_ab.user_metrics(analyze_ab.analysed_sessions(analyze_ab.sessionize(events), "drop")).cache()
    frame = users.toPandas().sort_values("user", ignore_index=True)
    summary = analyze_ab.summarize(users)
    users.unpersist()
    return {"paths": paths, "users": frame, "summary": summary}
