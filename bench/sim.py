"""Simulator benchmark: steps/s in-process and over HTTP, and the calibration table against the course.

    python bench/sim.py [--episodes 10000] [--http-episodes 500] [--url http://127.0.0.1:5000] [--table-out FILE]

Calibration: on the default world (conf/env.yml ``world_config``), mean time
per session under Random, TopPop, StickyArtist and an oracle (nearest unplayed
track to the hidden session embedding), each arm with its own seed as in an
A/B split, and the effect vs Random with a 95% bootstrap CI of the ratio of
means. The course's published A/B table (its simulator on the Million Song
Dataset world) is the target: Random ≈ 0.98, StickyArtist +67% (CI +50…+84%),
TopPop −8% (CI −25…+9%). The table goes to stderr (and ``--table-out``);
stdout gets one line of figures with the HTTP / in-process ratio.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence
from urllib.parse import urlsplit

import numpy as np
from scipy import stats as sstats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import add_config_arguments  # noqa: E402
from sim.catalog import TrackCatalog, UserCatalog  # noqa: E402
from sim.env import MusicEnv  # noqa: E402
from sim.episodes import play_episodes  # noqa: E402
from sim.policies import make_agent  # noqa: E402
from sim.remote_agent import RemoteAgent  # noqa: E402
from sim.settings import DEFAULT_CONFIG, load_catalogs, load_env_config, world_params  # noqa: E402
from sim.standin_server import StandInBotify  # noqa: E402
from sim.world import generate_world  # noqa: E402

log = logging.getLogger("bench.sim")

# The course's A/B results, effect vs a Random control: (point, CI low, CI high); None = no published figure.
COURSE = {
    "random": (0.0, None, None),
    "toppop": (-0.08, -0.25, 0.09),
    "sticky": (0.67, 0.50, 0.84),
    "oracle": (None, None, None),
}
COURSE_RANDOM_TIME = 0.98
LABELS = {"random": "Random", "toppop": "TopPop", "sticky": "StickyArtist", "oracle": "oracle (nearest unplayed)"}


def relative_effect(treatment: np.ndarray, control: np.ndarray, seed: int) -> tuple:
    """Effect mean(T)/mean(C) - 1 and its 95% bootstrap CI (independent samples, percentile method)."""
    result = sstats.bootstrap(
        (treatment, control), lambda t, c, axis: t.mean(axis=axis) / c.mean(axis=axis) - 1.0,
        vectorized=True, paired=False, n_resamples=2000, confidence_level=0.95, method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return treatment.mean() / control.mean() - 1.0, result.confidence_interval.low, result.confidence_interval.high


def world_from_config(config: dict, world_dir: Optional[str]):
    if world_dir:
        return load_catalogs(config)
    params, seed = world_params(config)
    world = generate_world(params, seed)
    tracks = TrackCatalog(world.embeddings, [world.artist_names[a] for a in world.artist_of.tolist()], world.titles)
    defaults = {k[len("default_"):]: v for k, v in config["user_catalog_config"].items() if k.startswith("default_")}
    return tracks, UserCatalog.from_records(world.users, defaults, n_tracks=tracks.size())


def calibrate(env: MusicEnv, users: UserCatalog, episodes: int, seed: int, top_n: int) -> tuple:
    rows: List[Dict] = []
    samples: Dict[str, np.ndarray] = {}
    timing = {}
    for arm, name in enumerate(("random", "toppop", "sticky", "oracle")):
        started = time.perf_counter()
        result = play_episodes(env, make_agent(name, users, top_n), seed + arm, range(episodes))
        elapsed = time.perf_counter() - started
        times = np.array([s.time for s in result])
        samples[name] = times
        timing[name] = (sum(s.steps for s in result), elapsed)
        rows.append({"policy": name, "mean": times.mean(), "sem": times.std(ddof=1) / np.sqrt(times.size),
                     "length": np.mean([s.steps for s in result])})
    for row in rows:
        if row["policy"] == "random":
            row["effect"] = (0.0, 0.0, 0.0)
        else:
            row["effect"] = relative_effect(samples[row["policy"]], samples["random"], seed)
    return rows, timing


def format_table(rows: List[Dict], episodes: int) -> str:
    lines = [
        f"| policy | mean time per session ± s.e. (n={episodes}) | mean length | effect vs Random [95% CI] "
        "| course effect [95% CI] | within course CI |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        name = row["policy"]
        point, low, high = row["effect"]
        course = COURSE[name]
        if name == "random":
            ours, theirs = "—", f"— (time ≈ {COURSE_RANDOM_TIME})"
            inside = "yes" if abs(row["mean"] - COURSE_RANDOM_TIME) / COURSE_RANDOM_TIME < 0.1 else "no"
        else:
            ours = f"{point:+.0%} [{low:+.0%} … {high:+.0%}]"
            if course[0] is None:
                theirs, inside = "(reference only)", "—"
            else:
                theirs = f"{course[0]:+.0%} [{course[1]:+.0%} … {course[2]:+.0%}]"
                inside = "yes" if course[1] <= point <= course[2] else "no"
        lines.append(f"| {LABELS[name]} | {row['mean']:.3f} ± {row['sem']:.3f} | {row['length']:.2f} | {ours} "
                     f"| {theirs} | {inside} |")
    return "\n".join(lines)


def http_steps(env: MusicEnv, agent: RemoteAgent, episodes: int, seed: int) -> float:
    started = time.perf_counter()
    result = play_episodes(env, agent, seed, range(episodes))
    elapsed = time.perf_counter() - started
    agent.close()
    return sum(s.steps for s in result) / elapsed


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000, help="sessions per policy (default 10000)")
    parser.add_argument("--http-episodes", type=int, default=500, help="sessions over HTTP (default 500)")
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--world", help="use this world directory instead of generating world_config's")
    parser.add_argument("--url", help="also measure against botify at this URL (e.g. http://127.0.0.1:5000)")
    parser.add_argument("--table-out", help="write the calibration table (markdown) here too")
    add_config_arguments(parser, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)

    config = load_env_config(args.config, args.overrides, args.world)
    tracks, users = world_from_config(config, args.world)
    env = MusicEnv(tracks, users, max_steps=int(config["run_config"]["max_session_steps"]))
    log.info("world: %d tracks, %d users; %d sessions per policy", tracks.size(), users.size(), args.episodes)

    started = time.perf_counter()
    # Session starts need each interest's nearest tracks; batch them once so the rates below are warm.
    tracks.precompute_nearest([t for u in users.users for t in u.interests],
                              max(u.interest_neighbours for u in users.users))
    precompute_s = time.perf_counter() - started
    rows, timing = calibrate(env, users, args.episodes, args.seed, int(config["run_config"]["top_tracks"]))
    table = format_table(rows, args.episodes)
    print(table, file=sys.stderr)
    if args.table_out:
        with open(args.table_out, "w", encoding="utf-8") as fh:
            fh.write(table + "\n")

    steps, elapsed = timing["random"]
    in_process = steps / elapsed
    sticky_steps, sticky_elapsed = timing["sticky"]
    with StandInBotify(tracks.size(), seed=args.seed) as server:
        remote = RemoteAgent("127.0.0.1", server.port, n_tracks=tracks.size())
        http = http_steps(env, remote, args.http_episodes, args.seed)
    figures = (f"sim: in-process {in_process:,.0f} steps/s (random; sticky {sticky_steps / sticky_elapsed:,.0f}; "
               f"neighbour precompute {precompute_s:.1f} s); "
               f"HTTP loopback stand-in {http:,.0f} steps/s; ratio HTTP/in-process {http / in_process:.4f}")
    if args.url:
        url = urlsplit(args.url)
        remote = RemoteAgent(url.hostname or "127.0.0.1", url.port or 80, n_tracks=tracks.size())
        botify = http_steps(env, remote, args.http_episodes, args.seed)
        figures += f"; botify {botify:,.0f} steps/s (ratio botify/in-process {botify / in_process:.4f})"
    effects = {r["policy"]: r["effect"] for r in rows}
    random_mean = rows[0]["mean"]
    figures += (f"; calibration: Random {random_mean:.3f}/session, TopPop {effects['toppop'][0]:+.0%}, "
                f"StickyArtist {effects['sticky'][0]:+.0%}, oracle {effects['oracle'][0]:+.0%} vs Random")
    print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
