"""World generator: determinism, file formats (the course's), and the structure users' tastes rest on."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.catalog import CatalogError, TrackCatalog, UserCatalog
from sim.world import WorldParams, generate_world, write_world

REPO = Path(__file__).resolve().parents[2]
SMALL = WorldParams(tracks=3000, artists=300, genres=12, users=400)


@pytest.fixture(scope="module")
def world():
    return generate_world(SMALL, seed=5)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate_world(SMALL, seed=5)
    other = generate_world(SMALL, seed=6)
    assert np.array_equal(world.embeddings, again.embeddings)
    assert np.array_equal(world.artist_of, again.artist_of) and world.users == again.users
    assert world.titles == again.titles and world.artist_names == again.artist_names
    assert not np.array_equal(world.embeddings, other.embeddings) and world.users != other.users


def test_artist_sizes_and_popularity_are_skewed(world):
    sizes = np.bincount(world.artist_of, minlength=SMALL.artists)
    assert sizes.min() >= 1 and sizes.sum() == SMALL.tracks
    assert sizes.max() >= 10 * np.median(sizes)
    interest_counts = np.bincount([t for u in world.users for t in u["interests"]], minlength=SMALL.tracks)
    top = np.sort(interest_counts)[::-1]
    # Interests follow popularity: the top 1% of tracks hold over ten times their uniform share.
    assert top[: SMALL.tracks // 100].sum() > 0.1 * top.sum()


def test_embedding_space_has_genre_artist_track_clusters(world):
    e = world.embeddings.astype(np.float64)
    genre = world.genre_of_artist[world.artist_of]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, SMALL.tracks, size=(2, 20000))
    dots = (e[a] * e[b]).sum(axis=1)
    same_artist = world.artist_of[a] == world.artist_of[b]
    same_genre = (genre[a] == genre[b]) & ~same_artist
    other = genre[a] != genre[b]
    # Pairs of one artist: enumerate them (random pairs rarely hit the same artist).
    by_artist = [np.flatnonzero(world.artist_of == art) for art in range(20)]
    artist_dots = [float(e[i] @ e[j]) for members in by_artist for i in members for j in members if i < j]
    assert np.mean(artist_dots) > dots[same_genre].mean() + 0.1
    assert dots[same_genre].mean() > dots[other].mean() + 0.1
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_user_interests_concentrate_in_a_home_genre(world):
    genre = world.genre_of_artist[world.artist_of]
    same = [len({int(genre[t]) for t in u["interests"]}) < len(u["interests"]) for u in world.users]
    # With 12 genres, three independent popularity draws share a genre far less often.
    shuffled = np.random.default_rng(1).permutation([t for u in world.users for t in u["interests"]]).reshape(-1, 3)
    baseline = [len({int(genre[t]) for t in row}) < 3 for row in shuffled]
    assert np.mean(same) > np.mean(baseline) + 0.2


def test_written_files_use_the_course_formats(world, tmp_path):
    paths = write_world(world, str(tmp_path))
    lines = Path(paths["tracks"]).read_text().splitlines()
    assert len(lines) == SMALL.tracks
    first = json.loads(lines[0])
    assert set(first) == {"track", "artist", "title"} and first["track"] == 0
    emb = np.load(paths["embeddings"])
    assert emb.dtype == np.float32 and emb.shape == (SMALL.tracks, SMALL.dim)
    user = json.loads(Path(paths["users"]).read_text().splitlines()[0])
    assert set(user) >= {"user", "interests", "consume_bias", "consume_sharpness", "session_budget",
                         "artist_discount_gamma"}
    assert len(user["interests"]) == 3
    tracks = TrackCatalog.load(paths["tracks"], paths["embeddings"])
    users = UserCatalog.load(paths["users"], n_tracks=tracks.size())
    assert tracks.size() == SMALL.tracks and users.size() == SMALL.users
    assert tracks.artist_name(5) == world.artist_names[world.artist_of[5]]


def test_course_user_records_without_taste_fields_get_the_defaults(tmp_path):
    path = tmp_path / "users.json"
    path.write_text('{"user": 0, "interests": [1, 2]}\n{"user": 1, "interests": [3], "consume_bias": 0.5}\n')
    users = UserCatalog.load(str(path), {"consume_sharpness": 2.0}, n_tracks=10)
    assert users.users[0].consume_bias == 5.0 and users.users[0].session_budget == 5
    assert users.users[0].artist_discount_gamma == 0.8 and users.users[0].interest_neighbours == 10
    assert users.users[0].consume_sharpness == 2.0 and users.users[1].consume_bias == 0.5


def test_malformed_world_files_name_file_and_line(tmp_path):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user": 0, "interests": [1]}\n{"user": 1, "interests": [99]}\n')
    with pytest.raises(CatalogError, match=r"users.jsonl:2: .*outside the catalog"):
        UserCatalog.load(str(users), n_tracks=10)
    users.write_text('{"user": 0, "interests": [1]}\nnot json\n')
    with pytest.raises(CatalogError, match=r"users.jsonl:2: not valid JSON"):
        UserCatalog.load(str(users), n_tracks=10)
    tracks = tmp_path / "tracks.jsonl"
    tracks.write_text('{"track": 0, "artist": "a"}\n{"track": 2, "artist": "b"}\n')
    np.save(tmp_path / "e.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(CatalogError, match="0..1"):
        TrackCatalog.load(str(tracks), str(tmp_path / "e.npy"))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown world parameter"):
        WorldParams.from_mapping({"trakcs": 10})
    with pytest.raises(ValueError, match="artists"):
        WorldParams.from_mapping({"tracks": 10, "artists": 20})


def test_generate_command_writes_a_loadable_world(tmp_path):
    out = tmp_path / "world"
    result = subprocess.run(
        [sys.executable, "-m", "sim", "generate", "--seed", "3", "--out", str(out), "--tracks", "1500",
         "--users", "200"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seed"] == 3 and summary["tracks"] == 1500 and summary["users"] == 200
    assert sorted(p.name for p in out.iterdir()) == ["tracks.jsonl", "tracks.npy", "users.jsonl", "world.json"]
    params = json.loads((out / "world.json").read_text())
    regenerated = generate_world(WorldParams.from_mapping(params), params["seed"])
    assert np.array_equal(np.load(out / "tracks.npy"), regenerated.embeddings)
