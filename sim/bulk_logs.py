"""Bulk event-log generator for scale tests: sessions written straight to DESIGN.md JSON lines.

No HTTP and no botify: users and tracks are drawn from skewed (Zipf-like)
popularity, sessions have geometric lengths, listening times are Beta
distributed, and every event carries the experiments' treatments computed with
the course's hashing. Fast enough for tens of millions of events.

    python -m sim.bulk_logs --events 13000000 --out logs/bench --catalog-out world/tracks.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
from tqdm import tqdm

from common.experiments import assign


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity weights over ``n`` items, shuffled so popularity is not the id order."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def write_catalog(path: str, tracks: int, artists: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    artist_of = rng.choice(artists, size=tracks, p=zipf_weights(artists, 1.0, rng))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for track, artist in enumerate(artist_of):
            fh.write(json.dumps({"track": track, "artist": f"Artist {artist}", "title": f"Track {track}"}) + "\n")


def generate(
    out_dir: str,
    events: int,
    users: int = 10_000,
    tracks: int = 50_000,
    seed: int = 31337,
    files: int = 8,
    experiments: Optional[Dict[str, int]] = None,
    mean_session_length: float = 10.0,
    progress: bool = True,
) -> int:
    """Write about ``events`` events in ``files`` JSON-lines files; return the exact count written."""
    experiments = experiments or {}
    rng = np.random.default_rng(seed)
    user_p = zipf_weights(users, 0.6, rng)
    track_p = zipf_weights(tracks, 1.0, rng)
    os.makedirs(out_dir, exist_ok=True)
    # Treatments depend only on the user: compute each user's JSON fragment once.
    fragments = [
        json.dumps({name: assign(u, name, split) for name, split in experiments.items()}, separators=(",", ":"))
        for u in range(users)
    ]
    written = 0
    per_file = -(-events // files)
    clock = 1_700_000_000_000
    bar = tqdm(total=events, unit="ev", unit_scale=True, disable=not progress, desc="bulk logs")
    for index in range(files):
        n = min(per_file, events - written)
        if n <= 0:
            break
        lengths = rng.geometric(1.0 / mean_session_length, size=n // 2 + 1)
        lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
        lengths[-1] -= lengths.sum() - n
        session_users = rng.choice(users, size=len(lengths), p=user_p)
        user_col = np.repeat(session_users, lengths)
        is_last = np.zeros(n, dtype=bool)
        is_last[np.cumsum(lengths) - 1] = True
        track_col = rng.choice(tracks, size=n, p=track_p)
        rec_col = rng.choice(tracks, size=n, p=track_p)
        time_col = np.round(rng.beta(0.9, 0.6, size=n), 2)
        latency_col = np.round(rng.exponential(0.002, size=n), 6)
        stamps = clock + np.cumsum(rng.integers(1, 2000, size=n))
        clock = int(stamps[-1])
        path = os.path.join(out_dir, f"part-{index:05d}.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            chunk = []
            for i in range(n):
                last = is_last[i]
                chunk.append(
                    '{"message":"%s","timestamp":%d,"user":%d,"track":%d,"time":%.2f,"latency":%.6f,'
                    '"recommendation":%s,"experiments":%s}\n'
                    % (
                        "last" if last else "next",
                        stamps[i],
                        user_col[i],
                        track_col[i],
                        time_col[i],
                        latency_col[i],
                        "null" if last else str(rec_col[i]),
                        fragments[user_col[i]],
                    )
                )
                if len(chunk) == 100_000:
                    fh.write("".join(chunk))
                    bar.update(len(chunk))
                    chunk = []
            fh.write("".join(chunk))
            bar.update(len(chunk))
        written += n
    bar.close()
    return written


def parse_experiments(specs: Sequence[str]) -> Dict[str, int]:
    result = {}
    for spec in specs:
        name, _, split = spec.partition(":")
        result[name] = int(split or 2)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bulk_logs", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=13_000_000)
    parser.add_argument("--out", required=True, help="output directory for part-*.jsonl")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--artists", type=int, default=5_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME:SPLIT",
                        help="fill the experiments field, e.g. --experiment AB:2 (repeatable)")
    parser.add_argument("--catalog-out", help="also write a tracks catalog (JSON lines) here")
    args = parser.parse_args(argv)
    if args.catalog_out:
        write_catalog(args.catalog_out, args.tracks, args.artists, args.seed)
    n = generate(args.out, args.events, args.users, args.tracks, args.seed, args.files,
                 parse_experiments(args.experiment))
    print(json.dumps({"events": n, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
