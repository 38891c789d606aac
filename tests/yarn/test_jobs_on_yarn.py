"""An ML engineer moves the pipeline onto their Hadoop cluster: every job on YARN, storage on HDFS.

The story: botify's logs and the world go up to HDFS; stage_events and
extract_interactions run on YARN and give exactly what the same jobs give
locally on the same files; train_multidae runs TorchDistributor's barrier stage
on YARN executors reading petastorm's cache on HDFS; infer_recommendations,
train_als, evaluate_offline, tune_multidae and analyze_ab follow; botify serves
the lists straight from HDFS. Every application is judged by the
ResourceManager's REST API. Each step's inputs are a module fixture that runs
the steps before it once, so any test passes when run alone.
"""
import json
import subprocess
from pathlib import Path

import pytest

from common.storage import FsspecStorage, join
from tests.multidae.conftest import TINY
from tests.yarn.harness import simulated_logs, upload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
fs = FsspecStorage()
TINY_SETS = [a for item in TINY for a in ("--set", item)]


class Story:
    """What the story's steps hand each other: the two roots and the local inputs."""

    def __init__(self, yarn, workdir: Path):
        self.yarn = yarn
        self.workdir = workdir
        self.hdfs = yarn.new_root("story")
        self.local = "file://" + str(workdir / "local-root")

    def submit(self, job, *args, **kw):
        return self.yarn.assert_succeeded(self.yarn.submit(job, *args, root=self.hdfs, **kw))

    def local_job(self, job, *args):
        done = subprocess.run([str(REPO / "spark-submit.sh"), job, "--set", f"storage.root={self.local}", *args],
                              capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-4000:]

    def run_record(self, job, root=None):
        records = fs.list(join(root or self.hdfs, "runs", job))
        return json.loads(fs.read_text(records[-1]))


@pytest.fixture(scope="module")
def story(yarn, tmp_path_factory):
    """The world and botify's logs, uploaded to an HDFS root and to a local one."""
    story = Story(yarn, simulated_logs(tmp_path_factory.mktemp("story"), seed=5, users=300, events=15000, files=2))
    upload(story.workdir, story.hdfs, yarn.env())
    upload(story.workdir, story.local, yarn.env())
    return story


@pytest.fixture(scope="module")
def extracted(story):
    """Interactions run ``r1`` on HDFS, staged and extracted on YARN."""
    story.submit("stage_events", "--run", "r1", "--input", "logs/train", "--dataset", "train")
    story.submit("extract_interactions", "--run", "r1", "--input", "events/train")
    return story


@pytest.fixture(scope="module")
def extracted_locally(story):
    """The same two jobs on this host's Spark, into the local root: the reference."""
    story.local_job("stage_events", "--run", "r1", "--input", "logs/train", "--dataset", "train")
    story.local_job("extract_interactions", "--run", "r1", "--input", "events/train")
    return story


@pytest.fixture(scope="module")
def trained(extracted):
    """Model ``v1`` trained on YARN by two DDP ranks."""
    extracted.submit("train_multidae", "--interactions", "r1", "--version", "v1", "--local-mode", "false",
                     "--num-processes", "2", *TINY_SETS)
    return extracted


@pytest.fixture(scope="module")
def published(trained):
    """Recommendation lists ``v1`` (MultiDAE) and ``als1`` (ALS) on HDFS."""
    trained.submit("infer_recommendations", "--model-version", "v1", "--version", "v1", *TINY_SETS)
    trained.submit("train_als", "--interactions-run", "r1", "--version", "als1", *TINY_SETS)
    return trained


def table(spark, uri):
    return sorted(tuple(r) for r in spark.read.parquet(uri).collect())


def test_logs_and_world_go_up_to_hdfs_without_a_jvm(story):
    shipped = [p for p in fs.list(join(story.hdfs, "logs", "train")) if not p.endswith("_SUCCESS")]
    assert len(shipped) == 2 and fs.exists(join(story.hdfs, "world", "tracks.jsonl"))


def test_staging_and_extraction_on_yarn_equal_the_local_run(extracted, extracted_locally, spark):
    story = extracted
    for part in ("interactions", "users", "tracks"):
        on_hdfs = table(spark, join(story.hdfs, "interactions", "r1", part))
        assert on_hdfs and on_hdfs == table(spark, join(story.local, "interactions", "r1", part))
    assert fs.read_bytes(join(story.hdfs, "interactions", "r1", "top_tracks.json")) == \
        fs.read_bytes(join(story.local, "interactions", "r1", "top_tracks.json"))
    # The run record on HDFS counts what the job published.
    record = story.run_record("extract_interactions")
    assert record["status"] == "succeeded" and record["spark"]["master"] == "yarn"


def test_training_runs_torchdistributor_on_yarn_executors(trained):
    story = trained
    metrics = json.loads(fs.read_text(join(story.hdfs, "models", "multidae", "v1", "metrics.json")))
    # Both DDP ranks were barrier tasks in YARN containers, on the shipped environment, reading petastorm's
    # cache on HDFS through hdfs-native.
    assert metrics["world_size"] == 2
    assert "nm-local" in metrics["rank_process"]["cwd"] and "container_" in metrics["rank_process"]["cwd"]
    assert metrics["rank_process"]["executable"].endswith("environment/bin/python")
    assert all(e["users_seen"] >= metrics["train_users"] for e in metrics["epochs"])
    assert 0 < metrics["test"]["ndcg@100"] <= 1


def test_inference_and_the_baselines_on_yarn(published, spark):
    story = published
    users = spark.read.parquet(join(story.hdfs, "interactions", "r1", "users")).count()
    for version in ("v1", "als1"):
        manifest = json.loads(fs.read_text(join(story.hdfs, "recommendations", version, "_MANIFEST.json")))
        assert 0 < manifest["row_count"] <= users
        assert fs.exists(join(story.hdfs, "recommendations", version, "_SUCCESS"))
    grid = ["--set", "evaluate.als.grid={rank: [8], reg_param: [0.1], alpha: [10.0]}",
            "--set", "evaluate.ease.grid=[50.0]"]
    story.submit("evaluate_offline", "--model-version", "v1", *TINY_SETS, *grid)
    table_md = fs.read_text(join(story.hdfs, "evaluation", "v1", "metrics.md"))
    assert all(f"| {name} |" in table_md for name in ("TopPop", "ALS", "EASE", "MultiDAE"))


def test_a_small_sweep_on_yarn(extracted):
    story = extracted
    story.submit("tune_multidae", "--run", "t1", "--trials", "2", *TINY_SETS)
    rows = json.loads(fs.read_text(join(story.hdfs, "tuning", "multidae", "t1", "trials.json")))["trials"]
    assert len(rows) == 2 and all(0 < r["val ndcg@100"] <= 1 for r in rows)


def test_ab_analysis_on_yarn_equals_the_local_one(extracted, extracted_locally):
    story = extracted
    story.submit("analyze_ab", "--experiment", "AB", "--control", "C", "--input", "events/train", "--run", "r1")
    story.local_job("analyze_ab", "--experiment", "AB", "--control", "C", "--input", "events/train", "--run", "r1")
    on_hdfs = fs.read_text(join(story.hdfs, "ab", "AB", "r1", "report.md"))
    assert "| T" in on_hdfs and on_hdfs == fs.read_text(join(story.local, "ab", "AB", "r1", "report.md"))


def test_botify_serves_the_lists_straight_from_hdfs(published, tmp_path):
    story = published
    import requests

    from testkit.served import TOKEN, botify_serve

    # botify reads the catalog and fetches the version from HDFS with hdfs-native: no JVM in the service.
    with botify_serve(story.hdfs, tmp_path) as (base, _):
        reloaded = requests.post(base + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"version": "v1"}, timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        assert requests.get(base + "/readyz", timeout=10).status_code == 200
        served = requests.get(base + "/metrics", timeout=10).text
        assert 'version="v1"' in served
