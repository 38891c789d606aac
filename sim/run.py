"""Run simulated sessions against a recommender and summarise them (the course's ``sim/run.py``).

    python -m sim.run --episodes 10000 --recommender remote --config conf/env.yml --seed 31337 [--processes N]

Recommenders: ``remote`` (botify over HTTP), ``random`` (alias ``dummy``, the
course's name), ``toppop``, ``sticky``, ``oracle`` (in-process) and
``console`` (you). Episode *i* is seeded from ``(seed, i)``, so a run is
reproducible whatever ``--processes`` is (against botify, up to what botify
itself does). Ends with a summary: episodes, mean ± standard error of session
time and session length.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
from typing import List, Optional, Sequence
from urllib.parse import urlsplit

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from common.config import ConfigError, add_config_arguments
from sim.catalog import CatalogError
from sim.console_agent import ConsoleAgent, QuitPlay
from sim.env import InvalidAction, MusicEnv
from sim.episodes import EpisodeStats, play_episode, play_episodes, summarize
from sim.policies import IN_PROCESS, make_agent
from sim.remote_agent import BotifyError, RemoteAgent
from sim.settings import DEFAULT_CONFIG, load_catalogs, load_env_config

log = logging.getLogger("sim.run")

RECOMMENDERS = ("remote", "console", "dummy") + IN_PROCESS
CHUNK = 50


def build(config: dict, recommender: str):
    tracks, users = load_catalogs(config)
    env = MusicEnv(tracks, users, max_steps=int(config.get("run_config", {}).get("max_session_steps", 1000)))
    if recommender == "remote":
        agent = RemoteAgent.from_config(config["remote_recommender_config"], n_tracks=tracks.size())
    elif recommender == "console":
        agent = ConsoleAgent()
    else:
        name = "random" if recommender == "dummy" else recommender
        agent = make_agent(name, users, int(config.get("run_config", {}).get("top_tracks", 100)))
    return env, agent


_worker = {}


def one_blas_thread():
    """Limit numpy's BLAS to one thread while sessions play.

    A step's math is vector-sized, so extra OpenBLAS threads only spin between
    calls: against botify on 2 cores they cost as much system time as the
    simulator's own work and took the CPU botify needed (3,000 sessions, 2
    processes: 26 s of system time and 42 s wall, 2 s and 32 s with one thread).
    Set after ``build``, which may precompute with large matrix products.
    """
    return threadpool_limits(limits=1, user_api="blas")


def first_track_time(config: dict) -> float:
    """``run_config.first_track_time``: the time reported for a session's first track (0.0 here, 1.0 in the course)."""
    value = config.get("run_config", {}).get("first_track_time", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"run_config.first_track_time must be a number in [0, 1], got {value!r}")
    return float(value)


def _init_worker(config: dict, recommender: str, seed: int) -> None:
    _worker["env"], _worker["agent"] = build(config, recommender)
    _worker["seed"] = seed
    _worker["first_track_time"] = first_track_time(config)
    _worker["blas"] = one_blas_thread()  # held for the worker's life


def _play_chunk(episodes: Sequence[int]) -> List[EpisodeStats]:
    return play_episodes(_worker["env"], _worker["agent"], _worker["seed"], episodes, _worker["first_track_time"])


def run(config: dict, recommender: str, episodes: int, seed: int, processes: int = 1,
        progress: bool = True) -> List[EpisodeStats]:
    if recommender not in RECOMMENDERS:
        raise ValueError(f"unknown recommender {recommender!r} (choose from {', '.join(RECOMMENDERS)})")
    if recommender == "console" and processes != 1:
        raise ValueError("the console recommender plays one session at a time: use --processes 1")
    first_time = first_track_time(config)
    bar = tqdm(total=episodes, unit="session", disable=not progress, desc=f"sim {recommender}")
    stats: List[EpisodeStats] = []
    try:
        if processes <= 1:
            env, agent = build(config, recommender)
            try:
                with one_blas_thread():
                    for episode in range(episodes):
                        stats.append(play_episode(env, agent, seed, episode, first_time))
                        bar.update(1)
            finally:
                agent.close()
        else:
            chunks = [range(i, min(i + CHUNK, episodes)) for i in range(0, episodes, CHUNK)]
            with multiprocessing.get_context("spawn").Pool(
                processes, initializer=_init_worker, initargs=(config, recommender, seed)
            ) as pool:
                for chunk_stats in pool.imap_unordered(_play_chunk, chunks):
                    stats.extend(chunk_stats)
                    bar.update(len(chunk_stats))
            stats.sort(key=lambda s: s.episode)
    finally:
        bar.close()
    return stats


def format_summary(recommender: str, summary: dict) -> str:
    return (
        "## Experiment results summary\n\n"
        "| recommender | episodes | session time (mean ± s.e.) | session length (mean ± s.e.) |\n"
        "|---|---:|---:|---:|\n"
        f"| {recommender} | {summary['episodes']} | {summary['time_mean']:.3f} ± {summary['time_sem']:.3f} "
        f"| {summary['length_mean']:.2f} ± {summary['length_sem']:.2f} |"
    )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sim.run", description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100, help="number of sessions (default 100)")
    parser.add_argument("--recommender", choices=RECOMMENDERS, default="random")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the run (default 42, as the course)")
    parser.add_argument("--processes", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--world", help="world directory from `python -m sim generate` (sets the three paths)")
    parser.add_argument("--url", help="botify base URL, e.g. http://127.0.0.1:5000 (sets host and port)")
    parser.add_argument("--output", help="also write per-session stats here (JSON lines)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    if args.episodes < 0 or args.processes < 1:
        parser.error("--episodes must be >= 0 and --processes >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = load_env_config(args.config, args.overrides, args.world)
        if args.url:
            parts = urlsplit(args.url)
            if parts.scheme != "http" or not parts.hostname:
                raise ConfigError(f"--url must look like http://HOST:PORT, got {args.url!r}")
            config["remote_recommender_config"]["host"] = parts.hostname
            config["remote_recommender_config"]["port"] = parts.port or 80
        stats = run(config, args.recommender, args.episodes, args.seed, args.processes, not args.no_progress)
    except QuitPlay:
        print("bye")
        return 0
    except (BotifyError, InvalidAction) as exc:
        log.error("%s", exc)
        return 3
    except (ConfigError, CatalogError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    summary = summarize(stats)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            for s in stats:
                fh.write(json.dumps(s.__dict__) + "\n")
    print(format_summary(args.recommender, summary))
    if summary["truncated"]:
        log.warning("%d sessions hit run_config.max_session_steps and were truncated", summary["truncated"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
