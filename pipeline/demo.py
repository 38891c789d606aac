"""botify-demo: the whole loop on this machine, from an empty folder to the A/B report.

generate the world -> start Redis + botify (BASELINE experiment) -> simulated
training traffic over HTTP -> upload logs (or, with ``--train-traffic fast``,
the seed scale's default: the same traffic's logs written by the
``simulate_logs`` Spark job, no botify) -> stage_events (the logs parsed once
into ``events/train``, as the daily run does) -> extract_interactions ->
train_multidae -> infer_recommendations -> botify hot-reloads the lists ->
botify switches to the AB experiment (C = StickyArtist, T1 = Ranked; with ``--experiment MODELS``
train_als first and T2 = Ranked over the ALS lists) ->
simulated A/B traffic -> upload -> stage_events (``events/ab``) -> analyze_ab
on the staged events (CUPED's pre-period: ``events/train``) -> the report.

Everything it starts (redis-server, botify's gunicorn, Spark) is stopped at
the end, on failure and on Ctrl-C. Each step's output goes to
``<workdir>/logs/<step>.log``; per-step wall times to ``<workdir>/timings.json``.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from common.hadoop_conf import default_fs
from common.redis_server import RedisServer, free_port, redact
from common.storage import FsspecStorage, join
from pipeline import processes
from pipeline.minicluster import MiniCluster
from pipeline.processes import PYTHON, REPO, Service, StepFailed, command

log = logging.getLogger("demo")

SCALES = {
    # name: world tracks, users, training sessions, A/B sessions, epochs, how training traffic is made.
    # The A/B always goes over HTTP; training traffic at the seed's volume through botify would take hours,
    # so there the fast path writes what botify would have logged (docs/sim.md "The fast path").
    "small": dict(tracks=2_000, users=400, train_sessions=2_000, ab_sessions=600, epochs=2, train_traffic="http"),
    "default": dict(tracks=50_000, users=10_000, train_sessions=40_000, ab_sessions=10_000, epochs=10,
                    train_traffic="http"),
    "seed": dict(tracks=50_000, users=10_000, train_sessions=1_300_000, ab_sessions=10_000, epochs=10,
                 train_traffic="fast"),
}
TRAIN_SEED_OFFSET = 1  # training sessions are seeded by world seed + 1 (the A/B by 31337), either path


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(args.workdir).resolve()
        self.root = self.workdir / "warehouse"
        self.world = self.root / "world"
        # --cluster yarn: every job on YARN, every artifact on HDFS; the world is generated here and uploaded.
        self.yarn = args.cluster == "yarn"
        self.cluster: Optional[MiniCluster] = None
        self.root_uri = str(self.root)
        if self.yarn:
            self.world = self.workdir / "world"
        self.logs = self.workdir / "logs"
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timings: Dict[str, float] = {}
        self.redis: Optional[RedisServer] = None
        self.botify: Optional[Service] = None
        self.run_id = "demo"

    # -- helpers ------------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[[], None]) -> None:
        print(f"[{len(self.timings) + 1:2d}] {name} ...", end="", flush=True)
        start = time.perf_counter()
        fn()
        self.timings[name] = round(time.perf_counter() - start, 1)
        print(f" {self.timings[name]:.1f}s", flush=True)

    def sh(self, name: str, argv: List[str], env: Optional[Dict[str, str]] = None) -> None:
        processes.run(argv, env=env, log_file=self.logs / f"{name}.log", cwd=REPO)

    def spark_job(self, job: str, *args: str, log_name: Optional[str] = None) -> None:
        cluster = ["--master", "yarn", "--profile", self.spark_profile] if self.yarn else []
        if self.cluster:
            # Its own mini cluster's only node is this host: the environment is installed there already, so
            # nothing is packed (3 GB) or unpacked. A cluster HADOOP_CONF_DIR names gets it shipped.
            cluster += ["--python", sys.executable]
        self.sh(log_name or job, [str(REPO / "spark-submit.sh"), job, *cluster, "--set", f"storage.root={self.root_uri}",
                                  *args])

    def stage(self, dataset: str) -> None:
        """logs/<dataset> -> events/<dataset>: parsed, validated and deduplicated once, as botify-daily does."""
        self.spark_job("stage_events", "--run", self.run_id, "--input", f"logs/{dataset}", "--dataset", dataset,
                       log_name=f"stage_events-{dataset}")

    def botify_dir(self, phase: str) -> Path:
        return self.workdir / "botify-logs" / phase

    # -- steps --------------------------------------------------------------------------------
    def generate_world_files(self) -> None:
        a = self.args
        self.sh("world", [PYTHON, "-m", "sim", "generate", "--seed", str(a.seed), "--out", str(self.world),
                          "--tracks", str(a.tracks), "--users", str(a.users)])

    def start_botify(self, experiment: str) -> None:
        self.stop_botify()
        phase = experiment.lower()
        argv = [command("botify"), "serve", "--port", str(self.port), "--workers", str(self.args.botify_workers),
                "--set", f"storage.root={self.root_uri}", "--set", f"event_log.dir={self.botify_dir(phase)}"]
        env = {"REDIS_URL": self.redis.url, "BOTIFY_ADMIN_TOKEN": self.token, "BOTIFY_EXPERIMENTS": experiment}
        self.botify = Service("botify", argv, env, self.logs / f"botify-{phase}.log")
        self.botify.start(self.url + "/readyz")  # 200 once Redis holds the catalog and every served set

    def stop_botify(self) -> None:
        if self.botify is not None:
            self.botify.stop()  # graceful: workers complete their log files
            self.botify = None

    def simulate(self, name: str, episodes: int, seed: int) -> None:
        self.sh(name, [PYTHON, "-m", "sim.run", "--episodes", str(episodes), "--recommender", "remote",
                       "--world", str(self.world), "--url", self.url, "--seed", str(seed),
                       "--processes", str(self.args.sim_processes), "--output", str(self.workdir / f"{name}.jsonl")])

    def upload(self, phase: str, dataset: str) -> None:
        self.sh(f"upload-{dataset}", [command("botify-upload"), dataset, "--cleanup", "--no-progress",
                                      "--log-dir", str(self.botify_dir(phase)), "--set", f"storage.root={self.root_uri}"])

    def reload(self) -> None:
        # The token goes by environment: in argv it shows in `ps`, and one starting with "-" (token_urlsafe
        # draws from A-Z a-z 0-9 - _) reads to argparse as an option, so 1 demo in 64 failed its reload.
        self.sh("reload", [command("botify"), "reload", "--url", self.url], env={"BOTIFY_ADMIN_TOKEN": self.token})

    def run(self) -> int:
        a = self.args
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.logs.mkdir(parents=True)
        print(f"botify demo in {self.workdir} (step logs in {self.logs})")
        if self.yarn:
            self.step("start HDFS + YARN" if "HADOOP_CONF_DIR" not in os.environ else "HDFS root", self.use_cluster)
        self.redis = RedisServer()
        self.redis.start()
        (self.workdir / "services.json").write_text(json.dumps({"redis": redact(self.redis.url), "botify": self.url}))
        try:
            self.step("generate world", self.generate_world)
            self.training_traffic()
            self.step("stage_events (train)", lambda: self.stage("train"))
            self.step("extract_interactions", lambda: self.spark_job(
                "extract_interactions", "--run", self.run_id, "--input", "events/train",
                "--set", f"extract.threshold={a.label_threshold}"))
            profile = ["--model-profile", a.model_profile] if a.model_profile else []
            self.step("train_multidae", lambda: self.spark_job(
                "train_multidae", "--version", self.run_id, "--epochs", str(a.epochs), "--num-processes", "2", *profile))
            self.step("infer_recommendations", lambda: self.spark_job(
                "infer_recommendations", "--model-version", self.run_id, "--version", self.run_id))
            if a.experiment == "MODELS":  # the ALS arm's lists, published beside the MultiDAE's (pointer LATEST-als)
                self.step("train_als", lambda: self.spark_job("train_als", "--version", f"als-{self.run_id}"))
            self.step(f"start botify ({a.experiment}), hot-reload recommendations", self.serve_ab)
            self.step(f"simulate {a.ab_sessions} A/B sessions", lambda: self.simulate("sim-ab", a.ab_sessions, 31337))
            self.step("stop botify, upload A/B logs",
                      lambda: (self.stop_botify(), self.upload(a.experiment.lower(), "ab")))
            self.step("stage_events (ab)", lambda: self.stage("ab"))
            cuped = ["--cuped", "--pre-input", "events/train"] if a.cuped else []
            self.step("analyze_ab", lambda: self.spark_job(
                "analyze_ab", "--experiment", a.experiment, "--control", "C", "--input", "events/ab",
                "--run", self.run_id, *cuped))
            if self.yarn:  # the report lives on HDFS, which stops with the demo's own cluster below
                self.fetch_report()
        finally:
            self.stop_botify()
            if self.redis is not None:
                self.redis.stop()
            if self.cluster is not None:
                self.cluster.stop()
            (self.workdir / "timings.json").write_text(json.dumps(self.timings, indent=2))
        self.show_report()
        return 0

    def use_cluster(self) -> None:
        """The mini cluster unless HADOOP_CONF_DIR names one; a fresh storage root on its file system."""
        if "HADOOP_CONF_DIR" not in os.environ:
            self.cluster = MiniCluster(self.workdir / "minicluster").start()
            os.environ.update(self.cluster.env())  # every child (spark-submit, botify, botify-upload) uses it
        self.spark_profile = self.args.spark_profile or ("minicluster" if self.cluster else "yarn")
        self.root_uri = self.args.root or join(default_fs(), "user", getpass.getuser(), "botify-demo")
        FsspecStorage().delete(self.root_uri)

    def generate_world(self) -> None:
        self.generate_world_files()
        if self.yarn:  # jobs and botify read the catalog from the storage root
            storage = FsspecStorage()
            for path in sorted(self.world.glob("*")):
                storage.write_bytes(join(self.root_uri, "world", path.name), path.read_bytes())

    def training_traffic(self) -> None:
        a = self.args
        seed = a.seed + TRAIN_SEED_OFFSET
        if a.train_traffic == "fast":
            self.step(f"simulate_logs: {a.train_sessions} training sessions without HTTP", lambda: self.spark_job(
                "simulate_logs", "--sessions", str(a.train_sessions), "--seed", str(seed),
                "--experiments", "BASELINE", "--dataset", "train"))
            return
        self.step("start botify (BASELINE)", lambda: self.start_botify("BASELINE"))
        self.step(f"simulate {a.train_sessions} training sessions", lambda: self.simulate("sim-train", a.train_sessions, seed))
        self.step("stop botify, upload training logs", lambda: (self.stop_botify(), self.upload("baseline", "train")))

    def serve_ab(self) -> None:
        # botify comes up with the AB experiment, then picks up the new lists without a
        # restart: the reload is the same call cron makes after infer_recommendations.
        self.start_botify(self.args.experiment)
        self.reload()

    def fetch_report(self) -> None:
        out = self.workdir / "report"
        out.mkdir(exist_ok=True)
        storage = FsspecStorage()
        for name in ("report.md", "ab_results.png"):
            (out / name).write_bytes(storage.read_bytes(join(self.root_uri, "ab", self.args.experiment, self.run_id,
                                                             name)))

    def show_report(self) -> None:
        out = self.workdir / "report" if self.yarn else self.root / "ab" / self.args.experiment / self.run_id
        print()
        print((out / "report.md").read_text())
        print(f"report:  {out / 'report.md'}")
        print(f"figure:  {out / 'ab_results.png'}")
        print(f"total:   {sum(self.timings.values()):.0f}s (per step: {self.workdir / 'timings.json'})")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="botify-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="small: a few minutes (tests); default: within 20 minutes on 2 cores; "
                             "seed: the seed's 1.3M training sessions, written by the fast path")
    parser.add_argument("--workdir", default=str(REPO / "build" / "demo"), help="wiped and recreated")
    parser.add_argument("--seed", type=int, default=31337, help="world seed")
    parser.add_argument("--experiment", choices=("AB", "MODELS"), default="AB",
                        help="AB: StickyArtist vs the MultiDAE's lists (the seed's experiment); MODELS: three arms, "
                             "StickyArtist vs MultiDAE vs ALS (adds the train_als step; conf/botify.yml)")
    parser.add_argument("--model-profile", help="train_multidae --model-profile (a key of multidae.profiles in "
                                                "conf/pipeline.yml, e.g. seed; default: the conf's own values)")
    parser.add_argument("--cuped", action="store_true",
                        help="analyze_ab also reports CUPED-adjusted effects, the covariate being each user's metric "
                             "in the training traffic")
    for key in ("tracks", "users", "train_sessions", "ab_sessions", "epochs"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, help="override the scale's value")
    parser.add_argument("--label-threshold", type=float, default=0.3,
                        help="implicit label max(time) > this (default 0.3: in the simulated world listening "
                             "times are lower than in the course's logs, and the seed's 0.8 leaves ~1%% of "
                             "user-track pairs positive at the default scale)")
    parser.add_argument("--train-traffic", choices=("http", "fast"),
                        help="training traffic through botify over HTTP, or its logs written by the simulate_logs "
                             "job (default: the scale's; the A/B always goes over HTTP)")
    parser.add_argument("--cluster", choices=("local", "yarn"), default="local",
                        help="local: local[*] Spark, a local folder as storage; yarn: every job submitted to YARN, "
                             "every artifact on HDFS (Hadoop's mini cluster on this host unless HADOOP_CONF_DIR is set)")
    parser.add_argument("--spark-profile", help="with --cluster yarn: the Spark profile (default: minicluster for "
                                                "the mini cluster, yarn for the cluster HADOOP_CONF_DIR names)")
    parser.add_argument("--root", help="with --cluster yarn: the storage root, wiped first "
                                       "(default: <fs.defaultFS>/user/<you>/botify-demo)")
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--botify-workers", type=int, default=2)
    args = parser.parse_args(argv)
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop every child.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return Demo(args).run()
    except StepFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted; everything it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
