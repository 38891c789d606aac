"""Tiny hand-made worlds for the simulator tests."""
from __future__ import annotations

import numpy as np
import pytest

from sim.catalog import TrackCatalog, UserCatalog
from sim.env import MusicEnv


def unit(*v):
    x = np.asarray(v, dtype=np.float32)
    return x / np.linalg.norm(x)


@pytest.fixture
def tiny_tracks():
    """Six tracks in 2-D: tracks 0-2 point east (artists A, A, B), 3-5 point north (artists C, C, D)."""
    emb = np.stack([unit(1, 0), unit(1, 0.1), unit(1, 0.2), unit(0, 1), unit(0.1, 1), unit(0.2, 1)])
    return TrackCatalog(emb, ["A", "A", "B", "C", "C", "D"], [f"t{i}" for i in range(6)])


def make_user(user=0, interests=(0,), bias=0.0, sharpness=1.0, budget=3, gamma=0.5, neighbours=1):
    return {"user": user, "interests": list(interests), "consume_bias": bias, "consume_sharpness": sharpness,
            "session_budget": budget, "artist_discount_gamma": gamma, "interest_neighbours": neighbours}


def make_env(tracks, *users, max_steps=1000, seed=0):
    return MusicEnv(tracks, UserCatalog.from_records(list(users), n_tracks=tracks.size()), seed=seed,
                    max_steps=max_steps)


@pytest.fixture(scope="session")
def small_world():
    """A generated world small enough for fast tests (same generator as the default world)."""
    from sim.world import WorldParams, generate_world

    world = generate_world(WorldParams(tracks=2000, artists=200, genres=10, users=300), seed=11)
    tracks = TrackCatalog(world.embeddings, [world.artist_names[a] for a in world.artist_of.tolist()], world.titles)
    return tracks, UserCatalog.from_records(world.users, n_tracks=tracks.size())


def make_env_from_world(small_world, max_steps=1000):
    tracks, users = small_world
    return MusicEnv(tracks, users, max_steps=max_steps)
