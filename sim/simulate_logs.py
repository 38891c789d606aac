"""simulate_logs: botify's training logs at volume without HTTP, as a Spark job (docs/sim.md "The fast path").

    ./spark-submit.sh simulate_logs --sessions 1300000 [--seed 31338] [--dataset train]

Plays ``--sessions`` sessions of the simulator's user model (``sim.env``)
against the recommenders botify serves in its active experiment (conf/botify.yml,
``BASELINE``: Random / TopPop / StickyArtist) and writes the event log botify
would have written, under ``<root>/logs/<dataset>/`` where ``botify-upload``
puts botify's own logs, so ``extract_interactions`` reads either the same way.

Faithful to the HTTP path by construction: episode *i* is ``sim.episodes.play_episode``
seeded by ``(seed, i)`` exactly as ``python -m sim.run`` plays it; the user's arm
comes from the course's hashing; the arm's recommender is botify's rule
(``common.recommender_rules``) fed what botify would have at that point — the
catalog and the same popular list (``--top-tracks auto`` looks where botify looks:
the served recommendations' ``top_tracks.json``, else the latest interactions
run's, else none, and TopPop then serves Random as botify does); every line is
botify's format (``common.event_line``); the first ``next`` of a session carries
``run_config.first_track_time``. What HTTP would add and a log cannot
reproduce: ``latency`` is 0.0 (no request was made) and time stamps are
synthetic (``--clock-ms`` + episode × (max_session_steps + 1) + request number), so
every session of a user lies after their earlier ones and the output does
not depend on how episodes were partitioned. ``tests/sim/test_simulate_logs.py``
compares this path with real traffic through botify.

With ``--start D --days N`` (or ``--date D``) each UTC day plays ``--sessions``
sessions of its own (``sim.days``: seed from the base seed and the date, the same
world) spread evenly over the day from midnight, still a full session apart,
into ``part-<date>-NNNNN.jsonl``.

Episodes are partitioned over Spark tasks; each Python worker loads the world
(broadcast from ``<root>/world/``) once. The output is replaced atomically
(``common.storage.atomic_output``: the same swap as ``botify-upload --cleanup``);
the same arguments write the same lines.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import posixpath
import tempfile
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from common import run_record
from common.config import ConfigError, load_config
from common.event_line import event, to_line
from common.manifest import sha256, write_manifest
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import SUCCESS, HadoopStorage, Storage, atomic_output, join, read_pointer
from sim.catalog import TrackCatalog, UserCatalog
from sim.days import DAY_MS, add_calendar_arguments, calendar_days, day_file_name, day_seed, day_start_ms
from sim.env import MusicEnv
from sim.episodes import play_episode
from sim.experiment_agent import ExperimentAgent
from sim.run import first_track_time, one_blas_thread
from sim.world import EMBEDDINGS_FILE, TRACKS_FILE, USERS_FILE

log = logging.getLogger(__name__)

WORLD_FILES = (TRACKS_FILE, EMBEDDINGS_FILE, USERS_FILE)
SESSIONS_PER_PARTITION = 50_000
CLOCK_MS = 1_700_000_000_000  # 2023-11-14: well before any botify run here, so real A/B logs come after


@dataclass(frozen=True)
class Plan:
    """Everything a task needs besides the world: small, shipped with the closure."""

    seed: int
    first_track_time: float
    max_steps: int
    experiments: Dict[str, dict]
    active: List[str]
    top_tracks: Optional[List[int]]
    top_k: int
    user_defaults: Dict[str, float] = field(default_factory=dict)
    clock_ms: int = CLOCK_MS
    spacing_ms: int = 0  # between episodes' first events; 0: back to back, one stride

    def stride(self) -> int:
        """The longest session's span: max_steps ``next`` and one ``last``, a millisecond each."""
        return self.max_steps + 1

    def first_stamp(self, episode: int) -> int:
        """Time stamp of the episode's first event. Episodes at least a stride apart never overlap, so a user's
        sessions never interleave, which the jobs' session rule (cut at ``last``) needs."""
        return self.clock_ms + episode * (self.spacing_ms or self.stride())

    def player_key(self) -> str:
        """What a worker's loaded world and agent depend on: not the seed or the clock, so days share them."""
        shared = {k: v for k, v in self.__dict__.items() if k not in ("seed", "clock_ms", "spacing_ms")}
        return sha256(json.dumps(shared, sort_keys=True).encode())


def day_plans(plan: Plan, days: Sequence[dt.date], sessions: int) -> List[Plan]:
    """A plan per day: the day's seed, and its sessions spread evenly from midnight UTC so the last one ends
    before the next midnight (it starts at least a stride before it)."""
    spacing = DAY_MS // sessions
    if spacing < plan.stride():
        raise ValueError(f"--sessions {sessions} does not fit in a day: at most {DAY_MS // plan.stride()} with "
                         f"max_session_steps {plan.max_steps} (a user's sessions must not overlap)")
    return [replace(plan, seed=day_seed(plan.seed, day), clock_ms=day_start_ms(day), spacing_ms=spacing)
            for day in days]


def load_world(files: Dict[str, bytes], user_defaults: Dict[str, float]):
    """Catalogs from the world files' bytes, with every interest's neighbours precomputed (one matrix pass)."""
    with tempfile.TemporaryDirectory(prefix="sim-world-") as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(data)
        tracks = TrackCatalog.load(os.path.join(tmp, TRACKS_FILE), os.path.join(tmp, EMBEDDINGS_FILE))
        users = UserCatalog.load(os.path.join(tmp, USERS_FILE), user_defaults, n_tracks=tracks.size())
    tracks.precompute_nearest([t for u in users.users for t in u.interests],
                              max(u.interest_neighbours for u in users.users))
    return tracks, users


def session_lines(env: MusicEnv, agent: ExperimentAgent, plan: Plan, episodes: Iterable[int]) -> Iterator[str]:
    """The event-log lines (without newline) of each episode, in episode order."""
    for episode in episodes:
        stats = play_episode(env, agent, plan.seed, episode, plan.first_track_time)
        treatments = agent.treatments(stats.user)
        clock = plan.first_stamp(episode)
        for i, (message, track, played, recommendation) in enumerate(agent.requests):
            yield to_line(event(message, clock + i, stats.user, int(track), float(played), 0.0,
                                recommendation, treatments))[:-1]


# One world per Python worker (workers are reused across tasks), keyed by the world's and the player's checksums.
_PLAYERS: Dict[str, tuple] = {}


def _player(world_key: str, world, plan: Plan):
    key = world_key + plan.player_key()
    if key not in _PLAYERS:
        tracks, users = load_world(world.value, plan.user_defaults)
        _PLAYERS.clear()
        _PLAYERS[key] = (MusicEnv(tracks, users, max_steps=plan.max_steps),
                         ExperimentAgent(plan.experiments, plan.active, plan.top_tracks, plan.top_k))
    return _PLAYERS[key]


def simulate(spark, world_files: Dict[str, bytes], plans: Sequence[Plan], sessions: int, partitions: int):
    """``(RDD of event-log lines, an accumulator counting them)``: for each plan, episodes 0..sessions-1 in
    ``partitions`` tasks; plan *k*'s are the RDD's partitions ``k * partitions`` onwards.

    The count is exact once the RDD was written: the write is the job's result
    stage, and Spark merges a result task's accumulator updates once per
    partition (a retried or speculative copy of the task does not add again).
    """
    sc = spark.sparkContext
    world = sc.broadcast(world_files)
    world_key = sha256(b"".join(world_files[name] for name in WORLD_FILES))
    events = sc.accumulator(0)

    def player(plan: Plan):
        def play(episodes: Iterator[int]) -> Iterator[str]:
            env, agent = _player(world_key, world, plan)
            count = 0
            with one_blas_thread():
                for line in session_lines(env, agent, plan, episodes):
                    count += 1
                    yield line
            events.add(count)
        return play

    # A union lists its inputs' partitions in order, which is what names each day's files.
    lines = [sc.range(0, sessions, numSlices=partitions).mapPartitions(player(plan)) for plan in plans]
    return (lines[0] if len(lines) == 1 else sc.union(lines)), events


def part_names(days: Optional[Sequence[dt.date]], partitions: int) -> Callable[[int], str]:
    """The published name of the RDD's ``index``-th partition: ``part-NNNNN.jsonl``, or with days (``partitions``
    each, in order) the day's ``part-<date>-NNNNN.jsonl``."""
    if not days:
        return lambda index: f"part-{index:05d}.jsonl"
    return lambda index: day_file_name(days[index // partitions], index % partitions)


def read_world(storage: Storage, world_uri: str) -> Dict[str, bytes]:
    missing = [name for name in WORLD_FILES if not storage.exists(join(world_uri, name))]
    if missing:
        raise FileNotFoundError(f"world files not found under {world_uri}: {', '.join(missing)} "
                                "(create them with `python -m sim generate --out <root>/world`)")
    return {name: storage.read_bytes(join(world_uri, name)) for name in WORLD_FILES}


def served_top_tracks(storage: Storage, botify: dict, n_tracks: int) -> tuple:
    """``(list or None, its URI or None)``: the popular list botify would load now (botify/artifacts.py load_bundle).

    The served recommendations version's ``top_tracks.json`` (``artifacts.version``,
    ``latest`` following ``recommendations/LATEST``), else the latest interactions
    run's, else none.
    """
    artifacts = botify["artifacts"]
    recs_root = resolve(botify, artifacts["recommendations"])
    version = str(artifacts["version"])
    if version == "latest":
        pointer = join(recs_root, "LATEST")
        version = read_pointer(storage, pointer) if storage.exists(pointer) else None
    candidates = [join(recs_root, version)] if version else []
    interactions = resolve(botify, artifacts["interactions"])
    if storage.exists(join(interactions, "LATEST")):
        candidates.append(join(interactions, read_pointer(storage, join(interactions, "LATEST"))))
    for run in candidates:
        uri = join(run, "top_tracks.json")
        if storage.exists(join(run, SUCCESS)) and storage.exists(uri):
            return parse_top_tracks(storage.read_bytes(uri), uri, n_tracks), uri
    return None, None


def parse_top_tracks(data: bytes, where: str, n_tracks: int) -> List[int]:
    try:
        top = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(top, list) or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n_tracks
                                            for t in top):
        raise ValueError(f"{where}: must be a JSON list of track ids of this world (0..{n_tracks - 1})")
    return top


def make_plan(args: argparse.Namespace, botify: dict, env_config: dict, top_tracks: Optional[List[int]]) -> Plan:
    active = list(args.experiments.split(",")) if args.experiments else list(botify["active_experiments"])
    run_config = env_config.get("run_config", {})
    user_config = env_config.get("user_catalog_config", {})
    return Plan(
        seed=args.seed,
        first_track_time=first_track_time(env_config),
        max_steps=int(run_config.get("max_session_steps", 1000)),
        experiments={name: botify["experiments"][name] for name in active if name in botify["experiments"]},
        active=active,
        top_tracks=top_tracks,
        top_k=int(botify["recommenders"]["top_k"]),
        user_defaults={k[len("default_"):]: v for k, v in user_config.items() if k.startswith("default_")},
        clock_ms=args.clock_ms,
    )


def publish(storage: Storage, simulated, final_uri: str, manifest: dict,
            part_name: Callable[[int], str] = part_names(None, 0)) -> dict:
    """Write the lines as files named ``part_name(partition)`` in a fresh copy of ``final_uri`` and swap it in."""
    lines, events = simulated
    with atomic_output(storage, final_uri) as tmp:
        lines.saveAsTextFile(tmp)
        for uri in storage.list(tmp):
            name = posixpath.basename(uri)
            if name.startswith("part-"):
                storage.rename(uri, join(tmp, part_name(int(name[len("part-"):]))))
            elif name.startswith((".", "_")):
                storage.delete(uri)  # Spark's own _SUCCESS and .crc files; atomic_output writes _SUCCESS last
        manifest = write_manifest(storage, tmp, {**manifest, "events": events.value})
    return manifest


def run(spark, config: dict, args: argparse.Namespace) -> dict:
    storage = HadoopStorage(spark)
    botify = load_config(args.botify_config)
    botify["storage"]["root"] = config["storage"]["root"]  # one root for the job and the botify it stands in for
    env_config = load_config(args.sim_config)
    world_uri = resolve(config, args.world)
    world_files = read_world(storage, world_uri)
    n_tracks = sum(1 for line in world_files[TRACKS_FILE].splitlines() if line.strip())
    if args.top_tracks == "auto":
        top, top_uri = served_top_tracks(storage, botify, n_tracks)
    elif args.top_tracks == "none":
        top, top_uri = None, None
    else:
        top_uri = resolve(config, args.top_tracks)
        top = parse_top_tracks(storage.read_bytes(top_uri), top_uri, n_tracks)
    plan = make_plan(args, botify, env_config, top)
    ExperimentAgent(plan.experiments, plan.active, plan.top_tracks, plan.top_k)  # a bad experiment fails here, not in a task
    plans = day_plans(plan, args.calendar, args.sessions) if args.calendar else [plan]
    partitions = args.partitions or max(spark.sparkContext.defaultParallelism,
                                        math.ceil(args.sessions / SESSIONS_PER_PARTITION))
    log.info("simulating %d sessions in %d tasks%s (experiments %s, TopPop list: %s)", args.sessions, partitions,
             f", each of {len(plans)} days" if args.calendar else "", ",".join(plan.active),
             top_uri or "none, TopPop serves Random")
    final = resolve(config, join("logs", args.dataset))
    facts = {
        "sessions": args.sessions, "seed": args.seed, "experiments": plan.active, "top_tracks": top_uri,
        "first_track_time": plan.first_track_time, "max_session_steps": plan.max_steps, "world": world_uri,
        "world_sha256": sha256(b"".join(world_files[name] for name in WORLD_FILES)), "partitions": partitions,
    }
    if args.calendar:
        facts["days"] = [day.isoformat() for day in args.calendar]  # sessions and partitions are per day
    with run_record.stage("simulate and publish"):
        manifest = publish(storage, simulate(spark, world_files, plans, args.sessions, partitions), final, facts,
                           part_names(args.calendar, partitions))
    run_record.read("world tracks", world_uri, n_tracks)
    run_record.wrote("event log lines", final, manifest["events"])
    return manifest


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simulate_logs", description=__doc__.split("\n")[0])
    add_job_arguments(parser)
    parser.add_argument("--sessions", type=int, required=True, help="sessions to simulate (per day with a calendar)")
    parser.add_argument("--seed", type=int, default=42, help="episode i is seeded by (seed, i), as in sim.run (default 42)")
    parser.add_argument("--dataset", default="train", help="write <root>/logs/<dataset>/ (default train)")
    parser.add_argument("--world", default="world", help="world directory, relative to the root (default world)")
    parser.add_argument("--experiments", help="active experiments, comma-separated, the first routes "
                                              "(default: botify.yml active_experiments)")
    parser.add_argument("--top-tracks", default="auto",
                        help="TopPop's popular list: auto (what botify would load), none (Random), or a top_tracks.json")
    parser.add_argument("--partitions", type=int, default=0,
                        help=f"Spark tasks (default: the cores, or one per {SESSIONS_PER_PARTITION} sessions)")
    add_calendar_arguments(parser).add_argument("--clock-ms", type=int, default=CLOCK_MS,
                                                help="time stamp of episode 0's first event (no calendar)")
    parser.add_argument("--botify-config", default="botify.yml", help="botify's configuration (experiments, top_k)")
    parser.add_argument("--sim-config", default="env.yml", help="the simulator's configuration (run_config)")
    args = parser.parse_args(argv)
    args.calendar = calendar_days(parser, args)
    if args.sessions < 1 or args.partitions < 0:
        parser.error("--sessions must be >= 1 and --partitions >= 0")
    if "/" in args.dataset or args.dataset.startswith((".", "_")) or not args.dataset:
        parser.error(f"--dataset must be a plain name, got {args.dataset!r}")
    return args


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    spark = get_session("simulate_logs", args.profile)
    try:
        manifest = run(spark, config, args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(json.dumps({k: manifest[k] for k in ("sessions", "events", "experiments", "top_tracks")}))
    return 0
