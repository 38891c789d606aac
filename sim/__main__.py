"""``botify-sim`` / ``python -m sim``: generate a world, run sessions, or write bulk logs.

    python -m sim generate --seed 31337 --out warehouse/world
    python -m sim run --episodes 1000 --recommender random --world warehouse/world
    python -m sim bulk --events 1000000 --out logs/bench
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Optional, Sequence

from common.config import ConfigError, add_config_arguments, get
from sim.settings import DEFAULT_CONFIG, load_env_config, world_params
from sim.world import generate_world, write_world

log = logging.getLogger("sim")


def generate_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim generate",
                                     description="Write a world: tracks.jsonl, tracks.npy, users.jsonl, world.json.")
    parser.add_argument("--seed", type=int, help="world seed (default: world_config.seed)")
    parser.add_argument("--out", help="output directory (default: world_config.out)")
    parser.add_argument("--tracks", type=int, help="number of tracks (world_config.tracks)")
    parser.add_argument("--users", type=int, help="number of users (world_config.users)")
    add_config_arguments(parser, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        config = load_env_config(args.config, args.overrides)
        params, seed = world_params(config)
        if args.tracks is not None:
            params.tracks = args.tracks
            params.artists = min(params.artists, max(1, args.tracks // 10))
        if args.users is not None:
            params.users = args.users
        params.validate()
        out = args.out or get(config, "world_config.out")
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    seed = args.seed if args.seed is not None else seed
    started = time.perf_counter()
    world = generate_world(params, seed)
    paths = write_world(world, out)
    print(json.dumps({"seed": seed, "tracks": params.tracks, "artists": params.artists, "users": params.users,
                      "dim": params.dim, "seconds": round(time.perf_counter() - started, 2), "files": paths}))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"generate": generate_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("generate", "run", "bulk"):
        print(__doc__.strip(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "run":
        from sim.run import main as run_main

        return run_main(argv[1:])
    if argv[0] == "bulk":
        from sim.bulk_logs import main as bulk_main

        return bulk_main(argv[1:])
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
