"""tune_multidae on tiny data: trials run as Spark tasks, the table and the winner are written, a re-run is idempotent."""
import json

import pytest

from common.storage import FsspecStorage, join
from common.training import Knobs
from jobs import tune_multidae
from tests.multidae.conftest import tiny_config

fs = FsspecStorage()
SPACE = ["multidae.tune.space={variant: [dae, vae], dims: [[16, 4]], lr: [0.01, 0.03], weight_decay: [0.0],"
         " batch_size: [16], epochs: [2], patience: [0], dropout: [0.5]}"]


def test_trials_are_a_prefix_of_one_seeded_order():
    base = {"dims": [8, 4], "epochs": 3}
    space = {"variant": ["dae", "vae"], "lr": [0.1, 0.2, 0.3]}
    three, six = tune_multidae.trial_knobs(base, space, 3, 7), tune_multidae.trial_knobs(base, space, 10, 7)
    assert len(six) == 6 and three == six[:3] and len(set(map(tune_multidae.key, six))) == 6
    assert all(k.dims == (8, 4) and k.epochs == 3 for k in six)
    assert tune_multidae.trial_knobs(base, space, 6, 8) != six  # another seed, another order


@pytest.mark.slow  # trains models in Spark tasks
def test_sweep_writes_table_and_winner_and_reruns_idempotently(spark, interactions_root):
    config = tiny_config(interactions_root, *SPACE)
    first = tune_multidae.run(spark, config, "t1", trials=3)
    out = join(interactions_root, "tuning", "multidae", "t1")
    rows = json.loads(fs.read_text(join(out, "trials.json")))["trials"]
    assert len(rows) == 3 and fs.exists(join(out, "_SUCCESS"))
    assert {r["knobs"]["variant"] for r in rows} <= {"dae", "vae"}
    for r in rows:
        assert 0 < r["val ndcg@100"] <= 1 and 1 <= r["best_epoch"] <= r["epochs_run"] == 2 and r["epoch_seconds"] > 0
    winner = json.loads(fs.read_text(join(out, "winner.json")))
    assert winner["val ndcg@100"] == max(r["val ndcg@100"] for r in rows) and winner == first["winner"]
    assert fs.read_text(join(out, "table.md")).count("\n|") == 2 + 3  # header, rule, one line per trial

    # Same run id again: every trial is reused as it was (epoch times included), nothing is appended.
    again = tune_multidae.run(spark, config, "t1", trials=3)
    assert json.loads(fs.read_text(join(out, "trials.json")))["trials"] == rows and again["winner"] == winner
    assert not fs.exists(join(interactions_root, "tuning", "multidae", "_work", "t1"))
    # A killed sweep keeps the trials it finished: a leftover row is reused, not retrained.
    leftover = dict(rows[0], epoch_seconds=-1.0)
    fs.write_bytes(tune_multidae.trial_file(join(interactions_root, "tuning", "multidae", "_work", "t2"),
                                            Knobs.from_settings(rows[0]["knobs"])), json.dumps(leftover).encode())
    resumed = tune_multidae.run(spark, config, "t2", trials=1)["report"]["trials"]
    assert resumed == [leftover]
    # A longer sweep extends the shorter one: the first three rows are the same trials.
    longer = tune_multidae.run(spark, config, "t1", trials=4)["report"]["trials"]
    assert len(longer) == 4 and longer[:3] == rows
    assert Knobs.from_settings(longer[3]["knobs"]) not in [Knobs.from_settings(r["knobs"]) for r in rows]
