"""Bulk event-log generator for scale tests: simulated sessions written straight to event-log JSON lines (docs/design.md).

No HTTP and no botify: sessions come from the user model (sim.user_model)
answering an in-process policy (``--policy``, default ``sticky``), in a world
generated from the seed (or read from ``--world DIR``), and every event
carries the experiments' treatments computed with the course's hashing. A
session of *n* recommendations is *n + 1* events, as botify logs it:
``next`` events carry the track just played, its time and the next
recommendation; the closing ``last`` event has ``recommendation: null``. The
first track of a session is logged with ``--first-track-time`` (default 0.0, the
simulator's default; the course's client sends 1.0: see docs/sim.md).
With ``--start D --days N`` (or ``--date D``) each UTC day gets ``--events``
events of its own sessions in the same world, in ``part-<date>-NNNNN.jsonl``
(``sim.days``).

    python -m sim.bulk_logs --events 13000000 --out logs/bench --catalog-out world/tracks.jsonl
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from common.event_line import event, to_line
from common.experiments import assign
from sim.catalog import TrackCatalog, UserCatalog
from sim.days import DAY_MS, add_calendar_arguments, calendar_days, day_file_name, day_seed, day_start_ms
from sim.env import MusicEnv
from sim.fast_random import FastUniform
from sim.policies import IN_PROCESS, make_agent
from sim.user_model import consume
from sim.world import World, WorldParams, generate_world

CHUNK_EVENTS = 100_000
CLOCK_MS = 1_700_000_000_000  # the first time stamp without a calendar
MAX_GAP_MS = 1999  # between events without a calendar


def default_artists(tracks: int) -> int:
    return max(1, tracks // 10)


def bulk_world(tracks: int, users: int, seed: int, artists: Optional[int] = None) -> World:
    """The world bulk logs simulate by default: WorldParams defaults at the requested size."""
    params = WorldParams(tracks=tracks, users=users, artists=artists or default_artists(tracks))
    params.genres = min(params.genres, params.artists)
    return generate_world(params, seed)


def write_catalog(path: str, tracks: int, artists: int, seed: int) -> None:
    """Write the tracks catalog of the world that ``generate`` with the same size and seed simulates.

    The catalog does not depend on the number of users (users draw from their own seed stream).
    """
    world = bulk_world(tracks, 1, seed, artists)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for track, (artist, title) in enumerate(zip(world.artist_of.tolist(), world.titles)):
            fh.write(json.dumps({"track": track, "artist": world.artist_names[artist], "title": title}) + "\n")
    os.replace(tmp, path)


def _catalogs(world: Optional[str], tracks: int, users: int, seed: int, artists: Optional[int]):
    if world:
        track_catalog = TrackCatalog.load(os.path.join(world, "tracks.jsonl"), os.path.join(world, "tracks.npy"))
        return track_catalog, UserCatalog.load(os.path.join(world, "users.jsonl"), n_tracks=track_catalog.size())
    w = bulk_world(tracks, users, seed, artists)
    track_catalog = TrackCatalog(w.embeddings, [w.artist_names[a] for a in w.artist_of.tolist()], w.titles)
    return track_catalog, UserCatalog.from_records(w.users, n_tracks=track_catalog.size())


def generate(
    out_dir: str,
    events: int,
    users: int = 10_000,
    tracks: int = 50_000,
    seed: int = 31337,
    files: int = 8,
    experiments: Optional[Dict[str, int]] = None,
    progress: bool = True,
    policy: str = "sticky",
    world: Optional[str] = None,
    artists: Optional[int] = None,
    max_session_steps: int = 200,
    first_track_time: float = 0.0,
    days: Optional[Sequence[dt.date]] = None,
) -> int:
    """Write ``events`` events in ``files`` JSON-lines files ``part-NNNNN.jsonl``; return the exact count written.

    ``world`` (a directory from ``python -m sim generate``) replaces the generated
    world; then ``users``/``tracks`` are those of the files. ``days``: ``events``
    events for each day instead, in ``part-<date>-NNNNN.jsonl``, sessions seeded
    per day (``sim.days.day_seed``) in the world of ``seed``.
    """
    experiments = experiments or {}
    track_catalog, user_catalog = _catalogs(world, tracks, users, seed, artists)
    # Session starts need each interest's neighbours: batch them up front (matrix products, not one by one).
    track_catalog.precompute_nearest([t for u in user_catalog.users for t in u.interests],
                                     max(u.interest_neighbours for u in user_catalog.users))
    env = MusicEnv(track_catalog, user_catalog, max_steps=max_session_steps)
    agent = make_agent(policy, user_catalog)
    os.makedirs(out_dir, exist_ok=True)
    # Treatments depend only on the user: assign them once per user.
    treatments = {u.user: {name: assign(u.user, name, split) for name, split in experiments.items()}
                  for u in user_catalog.users}
    writer = _FileWriter(env, agent, track_catalog, treatments, first_track_time)
    bar = tqdm(total=events * (len(days) if days else 1), unit="ev", unit_scale=True, disable=not progress,
               desc=f"bulk logs ({policy})")
    if days:
        written = 0
        for day in days:
            writer.start_day(day, events)
            paths = [os.path.join(out_dir, day_file_name(day, index)) for index in range(max(files, 0))]
            written += _write_parts(writer, paths, events, day_seed(seed, day), bar.update)
    else:
        paths = [os.path.join(out_dir, f"part-{index:05d}.jsonl") for index in range(max(files, 0))]
        written = _write_parts(writer, paths, events, seed, bar.update)
    bar.close()
    return written


def _write_parts(writer: "_FileWriter", paths: List[str], events: int, seed: int, progress) -> int:
    """``events`` events spread over ``paths`` in order, file *i* drawing from child *i* of ``seed``'s SeedSequence."""
    written = 0
    per_file = -(-events // len(paths)) if paths else 0
    for path, file_seq in zip(paths, np.random.SeedSequence(seed).spawn(len(paths))):
        n = min(per_file, events - written)
        if n <= 0:
            break
        written += writer.write(path, n, np.random.default_rng(file_seq), progress)
    return written


class _FileWriter:
    """Plays sessions into one file after another; the clock runs on across files, as one botify's would."""

    def __init__(self, env: MusicEnv, agent, track_catalog: TrackCatalog, treatments: Dict[int, Dict[str, str]],
                 first_track_time: float):
        self.env, self.agent, self.track_catalog = env, agent, track_catalog
        self.treatments = treatments
        self.first_track_time = first_track_time
        self.clock = CLOCK_MS
        self.max_gap_ms = MAX_GAP_MS

    def start_day(self, day: dt.date, events: int) -> None:
        """Stamp the next ``events`` events inside ``day``: from its midnight, gaps small enough that even all at
        their largest end before the next one (timestamps still rise strictly, so a user's sessions never mix)."""
        if events >= DAY_MS:
            raise ValueError(f"{events} events do not fit in a day (one per millisecond at most)")
        self.clock = day_start_ms(day)
        self.max_gap_ms = (DAY_MS - 1) // max(events, 1)

    def write(self, path: str, n: int, generator: np.random.Generator, progress) -> int:
        """Exactly ``n`` events into ``path`` (written to a temporary name, then renamed)."""
        gaps = generator.integers(1, self.max_gap_ms + 1, size=n).tolist()
        latencies = np.round(generator.exponential(0.002, size=n), 6).tolist()
        rng = FastUniform(generator)
        self.env.rng = rng
        tmp = path + ".tmp"
        count = 0
        with open(tmp, "w", encoding="utf-8") as fh:
            chunk: list = []
            while count < n:
                count = self._session(chunk, count, n, gaps, latencies, rng)
                if len(chunk) >= CHUNK_EVENTS:
                    fh.write("".join(chunk))
                    progress(len(chunk))
                    chunk = []
            fh.write("".join(chunk))
            progress(len(chunk))
        os.replace(tmp, path)
        return count

    def _session(self, chunk: list, count: int, n: int, gaps: list, latencies: list, rng: FastUniform) -> int:
        """Append one session's events to ``chunk``; return the file's event count after it."""
        env, agent = self.env, self.agent
        observation, _ = env.reset()
        agent.start(env, rng)
        session = env.session
        user = observation["user"]
        treatments = self.treatments[user]
        reward = self.first_track_time
        while True:
            track = observation["track"]
            self.clock += gaps[count]
            # The session's last event: budget spent, step guard hit, or this file is full.
            closing = session.finished or session.truncated or count == n - 1
            nxt = None if closing else int(agent.recommend(observation, reward))
            # Times to the centisecond keep 13M-event logs small; the line itself is botify's (common.event_line).
            message = "last" if closing else "next"
            chunk.append(to_line(event(message, self.clock, user, int(track), round(float(reward), 2), latencies[count],
                                       nxt, treatments)))
            count += 1
            if closing:
                return count
            reward = consume(session, nxt, self.track_catalog, rng, env.max_steps)
            observation = {"user": user, "track": nxt}


def parse_experiments(specs: Sequence[str]) -> Dict[str, int]:
    result = {}
    for spec in specs:
        name, _, split = spec.partition(":")
        result[name] = int(split or 2)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bulk_logs", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=13_000_000, help="events to write (per day with a calendar)")
    parser.add_argument("--out", required=True, help="output directory for part-*.jsonl")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--artists", type=int, default=5_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--policy", choices=IN_PROCESS, default="sticky",
                        help="in-process recommender the simulated users answer (default: sticky)")
    parser.add_argument("--world", help="simulate this world directory (from `python -m sim generate`) instead")
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME:SPLIT",
                        help="fill the experiments field, e.g. --experiment AB:2 (repeatable)")
    parser.add_argument("--first-track-time", type=float, default=0.0,
                        help="time logged for a session's first track (default 0.0; the course's client sends 1.0)")
    parser.add_argument("--catalog-out", help="also write the world's tracks catalog (JSON lines) here")
    add_calendar_arguments(parser)
    args = parser.parse_args(argv)
    days = calendar_days(parser, args)
    if args.catalog_out:
        if args.world:
            parser.error("--catalog-out writes the generated world's catalog; with --world use its tracks.jsonl")
        write_catalog(args.catalog_out, args.tracks, args.artists, args.seed)
    n = generate(args.out, args.events, args.users, args.tracks, args.seed, args.files,
                 parse_experiments(args.experiment), policy=args.policy, world=args.world, artists=args.artists,
                 first_track_time=args.first_track_time, days=days)
    print(json.dumps({"events": n, "out": args.out, "policy": args.policy}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
