"""analyze_ab on a 3-arm experiment: the planned arms come from the experiment's definition (conf/botify.yml),
every arm is compared to control under one Holm family, and --cuped adds the adjusted effects (real Spark, files)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from common.config import ConfigError, load_yaml
from jobs import analyze_ab


def test_planned_arms_come_from_the_experiment_definition():
    settings = {"split": None, "weights": None, "definitions": "botify.yml"}
    models = load_yaml("botify.yml")["experiments"]["MODELS"]
    shares = analyze_ab.expected_shares(settings, "MODELS")
    assert list(shares) == ["C", "T1", "T2"][: models["split"]] and len(shares) == models["split"] == 3
    assert list(analyze_ab.expected_shares(settings, "AB")) == ["C", "T1"]
    assert list(analyze_ab.expected_shares(dict(settings, split=4), "MODELS")) == ["C", "T1", "T2", "T3"]
    with pytest.raises(ConfigError, match="NOPE.*not defined.*ab.split"):
        analyze_ab.expected_shares(settings, "NOPE")


@pytest.mark.slow
def test_three_arms_with_cuped_end_to_end(tmp_path, warehouse):
    from sim.bulk_logs import generate
    from sim.world import WorldParams, generate_world, write_world

    root = Path(warehouse[len("file://"):])
    world = tmp_path / "world"
    write_world(generate_world(WorldParams(tracks=1500, artists=150, genres=10, users=400), seed=8), str(world))
    for dataset, seed in (("train", 1), ("ab", 2)):  # the pre-period and the experiment, same users
        generate(str(root / "logs" / dataset), events=8_000, seed=seed, files=1, experiments={"MODELS": 3},
                 progress=False, policy="random", world=str(world))
    assert analyze_ab.main(["--set", f"storage.root={warehouse}", "--experiment", "MODELS", "--run", "r1",
                            "--cuped"]) == 0
    run_dir = root / "ab" / "MODELS" / "r1"
    data = json.loads((run_dir / "effects.json").read_text())
    assert list(data["srm"]["expected"]) == ["C", "T1", "T2"] and not data["srm"]["mismatch"]
    effects = pd.read_csv(run_dir / "effects.csv")
    assert sorted(effects["treatment"].unique()) == ["T1", "T2"] and len(effects) == 8
    # one Holm family over every arm x metric: the smallest p-value is multiplied by the number of tests
    smallest = effects.loc[effects["p_value"].idxmin()]
    assert smallest["p_holm"] == pytest.approx(min(1.0, smallest["p_value"] * effects["p_value"].notna().sum()))

    cuped = pd.read_csv(run_dir / "effects_cuped.csv")
    assert len(cuped) == 8
    merged = effects.merge(cuped, on=["treatment", "metric"], suffixes=("", "_cuped"))
    assert (merged["control_n"] == merged["control_n_cuped"]).all()  # users without pre-period data stay in
    variance = {v["metric"]: v for v in data["cuped"]["variance"]}
    assert variance["mean_session_length"]["variance_reduction"] > 0.3
    assert 0 < variance["mean_session_length"]["users_with_pre"] < variance["mean_session_length"]["users"]
    length = merged.set_index(["treatment", "metric"]).loc[("T1", "mean_session_length")]
    assert length["abs_upper_cuped"] - length["abs_lower_cuped"] < length["abs_upper"] - length["abs_lower"]
    manifest = json.loads((run_dir / "_MANIFEST.json").read_text())
    assert manifest["cuped"]["variance_reduction"]["mean_session_length"] > 0.3
    assert "## CUPED" in (run_dir / "report.md").read_text()
