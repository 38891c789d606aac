"""World generator: a synthetic music catalog and user base, determined entirely by a seed.

The generative story (docs/sim.md tells it in prose):

1. **Genres.** ``genres`` unit vectors in ``dim`` dimensions. Each is a shared
   "mainstream" direction (weight ``mainstream``) plus a genre-specific random
   direction, so tracks of unrelated genres are mildly, not exactly, orthogonal.
   Genre popularity is Zipf-like (exponent ``genre_popularity_exponent``).
2. **Artists.** Each artist belongs to a genre drawn by genre popularity; its
   vector is the genre vector plus Gaussian noise (``artist_spread``),
   renormalised. Artist popularity is Zipf-like (``artist_popularity_exponent``)
   over a random order, so popularity is not the id order.
3. **Tracks.** Artist sizes (tracks per artist) are Zipf-like
   (``artist_size_exponent``), correlated with popularity (popular artists
   release more). A track's vector is its artist's plus noise
   (``track_spread``), renormalised: genre → artist → track clusters in
   embedding space. Within an artist, track popularity is Zipf-like
   (``track_popularity_exponent``); a track's popularity is its artist's
   popularity times its share within the artist.
4. **Users.** Each user has a home genre (by genre popularity) and three
   interest tracks, each drawn by track popularity, from the home genre with
   probability ``user_genre_focus`` and from the whole catalog otherwise. Taste
   parameters are per user: ``consume_bias`` (normal), ``consume_sharpness``
   (uniform), ``session_budget`` (1 + Poisson) and ``artist_discount_gamma``
   (uniform).

Outputs: ``tracks.jsonl`` (``{"track", "artist", "title"}``), ``tracks.npy``
(float32 N×D), ``users.jsonl`` and ``world.json`` (the parameters and seed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

import numpy as np

log = logging.getLogger(__name__)

TRACKS_FILE = "tracks.jsonl"
EMBEDDINGS_FILE = "tracks.npy"
USERS_FILE = "users.jsonl"
PARAMS_FILE = "world.json"

_SYLLABLES = (
    "ba be bo da de do ka ke ko la le lo ma me mo na ne no ra re ro sa se so ta te to "
    "va ve vo za ze zo lu mi ni ri si vi xa xo yu"
).split()
_WORDS = (
    "night river echo gold blue fire dream road heart rain shadow light city wild "
    "silver storm glass winter summer ocean stone velvet neon ghost paper satellite "
    "honey thunder mirror garden"
).split()


@dataclass
class WorldParams:
    """Generative parameters (conf/env.yml ``world_config``). Calibrated defaults: see bench/sim.py."""

    tracks: int = 50_000
    artists: int = 5_000
    genres: int = 40
    users: int = 10_000
    dim: int = 32
    mainstream: float = 0.3
    artist_spread: float = 0.7
    track_spread: float = 1.02
    genre_popularity_exponent: float = 0.5
    artist_popularity_exponent: float = 1.0
    artist_size_exponent: float = 0.8
    track_popularity_exponent: float = 1.0
    user_genre_focus: float = 0.7
    interests: int = 3
    consume_bias_mean: float = 0.35
    consume_bias_sd: float = 0.1
    consume_sharpness_low: float = 4.0
    consume_sharpness_high: float = 15.0
    session_budget_mean: float = 5.1
    artist_discount_gamma_low: float = 0.7
    artist_discount_gamma_high: float = 0.9

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "WorldParams":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"seed"})
        if unknown:
            raise ValueError(f"unknown world parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        params = cls(**{k: v for k, v in values.items() if k in known})
        params.validate()
        return params

    def validate(self) -> None:
        if self.tracks < 1 or self.artists < 1 or self.genres < 1 or self.users < 1 or self.dim < 2:
            raise ValueError("tracks, artists, genres, users must be >= 1 and dim >= 2")
        if self.artists > self.tracks:
            raise ValueError(f"artists ({self.artists}) cannot exceed tracks ({self.tracks})")
        if not 0.0 <= self.user_genre_focus <= 1.0:
            raise ValueError("user_genre_focus must be within [0, 1]")
        if not 0.0 < self.artist_discount_gamma_low <= self.artist_discount_gamma_high <= 1.0:
            raise ValueError("artist_discount_gamma bounds must satisfy 0 < low <= high <= 1")
        if self.interests < 1:
            raise ValueError("users need at least one interest")


@dataclass
class World:
    params: WorldParams
    seed: int
    embeddings: np.ndarray  # float32 (tracks, dim), unit rows
    artist_of: np.ndarray  # int (tracks,)
    genre_of_artist: np.ndarray  # int (artists,)
    track_popularity: np.ndarray  # float64 (tracks,), sums to 1
    artist_names: List[str]
    titles: List[str]
    users: List[Dict[str, Any]] = field(default_factory=list)


def zipf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _names(rng: np.random.Generator, n: int, parts: int) -> List[str]:
    syllables = np.asarray(_SYLLABLES)
    picks = rng.integers(0, len(syllables), size=(n, parts * 2))
    names = []
    for i, row in enumerate(picks):
        words = ["".join(syllables[row[2 * j : 2 * j + 2]]).capitalize() for j in range(parts)]
        names.append(" ".join(words))
    # Syllable names can collide; a suffix keeps artists distinct because artist is matched by name.
    seen: Dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            names[i] = f"{name} {i}"
        seen[names[i]] = i
    return names


def generate_world(params: WorldParams, seed: int) -> World:
    params.validate()
    root = np.random.SeedSequence(seed)
    rng_genre, rng_artist, rng_track, rng_user, rng_names = (np.random.default_rng(s) for s in root.spawn(5))
    d = params.dim

    mainstream = np.zeros(d)
    mainstream[0] = 1.0
    genre_vec = _unit_rows(params.mainstream * mainstream + rng_genre.standard_normal((params.genres, d)) / np.sqrt(d))
    genre_pop = zipf(params.genres, params.genre_popularity_exponent)
    rng_genre.shuffle(genre_pop)

    genre_of_artist = rng_artist.choice(params.genres, size=params.artists, p=genre_pop)
    artist_vec = _unit_rows(
        genre_vec[genre_of_artist] + params.artist_spread * rng_artist.standard_normal((params.artists, d)) / np.sqrt(d)
    )
    # Popularity rank order is random; artist sizes follow the same order so popular artists are bigger.
    order = rng_artist.permutation(params.artists)
    artist_pop = np.empty(params.artists)
    artist_pop[order] = zipf(params.artists, params.artist_popularity_exponent)
    size_share = np.empty(params.artists)
    size_share[order] = zipf(params.artists, params.artist_size_exponent)
    sizes = 1 + rng_artist.multinomial(params.tracks - params.artists, size_share)

    artist_of = np.repeat(np.arange(params.artists), sizes)
    rng_track.shuffle(artist_of)  # tracks of one artist are not contiguous ids
    track_vec = _unit_rows(
        artist_vec[artist_of] + params.track_spread * rng_track.standard_normal((params.tracks, d)) / np.sqrt(d)
    )
    # Within-artist popularity: Zipf over each artist's tracks in a random order.
    within = np.empty(params.tracks)
    by_artist = np.argsort(artist_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for artist, (start, size) in enumerate(zip(starts, sizes)):
        members = by_artist[start : start + size]
        within[members] = rng_track.permutation(zipf(size, params.track_popularity_exponent))
    track_pop = artist_pop[artist_of] * within
    track_pop /= track_pop.sum()

    artist_names = _names(rng_names, params.artists, 2)
    words = np.asarray(_WORDS)
    title_words = rng_names.integers(0, len(words), size=(params.tracks, 2))
    titles = [f"{words[a].capitalize()} {words[b].capitalize()}" for a, b in title_words]

    world = World(params, seed, track_vec.astype(np.float32), artist_of, genre_of_artist, track_pop, artist_names, titles)
    world.users = _generate_users(params, rng_user, artist_of, genre_of_artist, genre_pop, track_pop)
    return world


def _generate_users(params, rng, artist_of, genre_of_artist, genre_pop, track_pop) -> List[Dict[str, Any]]:
    track_genre = genre_of_artist[artist_of]
    n = params.users
    home = rng.choice(params.genres, size=n, p=genre_pop)
    focused = rng.random((n, params.interests)) < params.user_genre_focus
    # Everyone's unfocused interests in one vectorised draw; focused ones per genre below.
    interests = rng.choice(params.tracks, size=(n, params.interests), p=track_pop)
    for genre in range(params.genres):
        members = np.flatnonzero(track_genre == genre)
        mask = focused & (home == genre)[:, None]
        count = int(mask.sum())
        if count == 0 or members.size == 0:
            continue
        p = track_pop[members] / track_pop[members].sum()
        interests[mask] = members[rng.choice(members.size, size=count, p=p)]
    bias = rng.normal(params.consume_bias_mean, params.consume_bias_sd, size=n)
    sharpness = rng.uniform(params.consume_sharpness_low, params.consume_sharpness_high, size=n)
    budget = 1 + rng.poisson(max(params.session_budget_mean - 1.0, 0.0), size=n)
    gamma = rng.uniform(params.artist_discount_gamma_low, params.artist_discount_gamma_high, size=n)
    return [
        {
            "user": u,
            "interests": [int(t) for t in interests[u]],
            "consume_bias": round(float(bias[u]), 4),
            "consume_sharpness": round(float(sharpness[u]), 4),
            "session_budget": int(budget[u]),
            "artist_discount_gamma": round(float(gamma[u]), 4),
        }
        for u in range(n)
    ]


def write_world(world: World, out_dir: str) -> Dict[str, str]:
    """Write the world's files into ``out_dir`` (created); each file is replaced atomically."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "tracks": os.path.join(out_dir, TRACKS_FILE),
        "embeddings": os.path.join(out_dir, EMBEDDINGS_FILE),
        "users": os.path.join(out_dir, USERS_FILE),
        "params": os.path.join(out_dir, PARAMS_FILE),
    }
    names = world.artist_names
    _write_text(
        paths["tracks"],
        "".join(
            json.dumps({"track": t, "artist": names[a], "title": title}) + "\n"
            for t, (a, title) in enumerate(zip(world.artist_of.tolist(), world.titles))
        ),
    )
    tmp = paths["embeddings"] + ".tmp.npy"
    np.save(tmp, world.embeddings)
    os.replace(tmp, paths["embeddings"])
    _write_text(paths["users"], "".join(json.dumps(u) + "\n" for u in world.users))
    _write_text(paths["params"], json.dumps({"seed": world.seed, **dataclasses.asdict(world.params)}, indent=2) + "\n")
    return paths


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
