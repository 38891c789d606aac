"""Each recommender over real HTTP against a real Redis; the simulator's policies share botify's rules."""
import logging
import random

import numpy as np
import pytest
import redis
import requests

from botify.recommenders import TopCache, View
from botify.recommenders.sticky_artist import StickyArtist
from botify.recommenders.top_pop import TopPop
from botify.service import load_or_keep
from botify.store import Store
from sim.catalog import TrackCatalog, UserCatalog
from sim.env import MusicEnv
from sim.policies import make_agent
from tests.botify.conftest import TOP, TRACKS, make_config, next_track, post_next, v1_list
from testkit.artifacts import write_recommendations


def test_ranked_walks_the_list_best_first_without_repeats_then_top_then_resets_at_last(serve, redis_url):
    base, config = serve("Ranked")
    with requests.Session() as s:
        first = [next_track(base, 3, session=s) for _ in range(50)]
        assert first == v1_list(3)
        fallback = [next_track(base, 3, session=s) for _ in range(100)]
        assert set(fallback) == set(TOP)  # all 100 popular, none repeated
        beyond = next_track(base, 3, session=s)  # list and popular exhausted: any catalog track
        assert 0 <= beyond < TRACKS
        # another user's session is independent
        assert next_track(base, 4, session=s) == v1_list(4)[0]
        ttl = redis.Redis.from_url(redis_url).ttl("botify:history:3")
        assert 0 < ttl <= config["recommenders"]["history_ttl_s"]
        assert s.post(f"{base}/last/3", json={"track": 3, "time": 0.9}, timeout=10).status_code == 200
        assert [next_track(base, 3, session=s) for _ in range(3)] == v1_list(3)[:3]


def test_ranked_users_without_a_list_get_unrepeated_top_tracks(serve):
    base, _ = serve("Ranked")
    got = [next_track(base, 1000) for _ in range(100)]
    assert sorted(got) == TOP


def test_indexed_picks_from_the_users_list_and_falls_back_to_top(serve):
    base, _ = serve("Indexed")
    assert {next_track(base, 5) for _ in range(40)} <= set(v1_list(5))
    assert {next_track(base, 777) for _ in range(40)} <= set(TOP)


def test_top_pop_picks_from_the_top_k(serve):
    base, _ = serve("TopPop", recommenders__top_k=10)
    got = {next_track(base, 1) for _ in range(60)}
    assert got <= set(TOP[:10]) and len(got) > 1


def test_top_pop_without_top_tracks_serves_random_and_says_so(serve, world, caplog):
    from common.storage import FsspecStorage, join

    FsspecStorage().delete(join(world, "recommendations"))  # catalog only: no model, no interactions
    caplog.set_level(logging.WARNING)
    base, _ = serve("TopPop")
    got = {next_track(base, 1) for _ in range(60)}
    assert got <= set(range(TRACKS)) and not got <= set(TOP)
    assert any("no top tracks" in r.getMessage() for r in caplog.records)


def test_sticky_artist_stays_with_the_artist(serve):
    base, _ = serve("StickyArtist")
    # the catalog's artist of track t is t % 30
    assert {next_track(base, 1, track=37) % 30 for _ in range(30)} == {7}
    # a track outside the catalog never reaches a recommender: refused (test_validation) and not logged
    assert post_next(base, 1, track=5000).status_code == 422


def test_random_covers_the_catalog(serve):
    base, _ = serve("Random")
    got = {next_track(base, 1) for _ in range(100)}
    assert got <= set(range(TRACKS)) and len(got) > 20


def test_top_pop_before_any_model_uses_the_latest_interactions_run(serve, world):
    from common.storage import FsspecStorage, join, write_pointer

    storage = FsspecStorage()
    storage.delete(join(world, "recommendations"))
    run = join(world, "interactions", "run-1")
    storage.write_bytes(join(run, "top_tracks.json"), b"[11, 12, 13]")
    storage.write_bytes(join(run, "_SUCCESS"), b"")
    write_pointer(storage, join(world, "interactions", "LATEST"), "run-1")
    base, _ = serve("TopPop")
    assert {next_track(base, 1) for _ in range(30)} == {11, 12, 13}


class ScriptedPicks:
    """The same uniform index stream for botify (``randrange``) and the simulator (``below``)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def below(self, n: int) -> int:
        return int(self.rng.random() * n)

    randrange = below


def _sim_world():
    """The botify test catalog as a simulator world: same track ids, same artists (artist = track % 30)."""
    embeddings = np.random.default_rng(0).normal(size=(TRACKS, 4))
    tracks = TrackCatalog(embeddings, [f"artist-{t % 30}" for t in range(TRACKS)], [f"song {t}" for t in range(TRACKS)])
    users = UserCatalog.from_records([{"user": 0, "interests": [0]}], n_tracks=TRACKS)
    return MusicEnv(tracks, users)


@pytest.mark.parametrize("botify_cls,sim_name,prev_tracks,top", [
    (TopPop, "toppop", [1] * 200, TOP),
    (TopPop, "toppop", [1] * 50, []),  # no popular list: both fall back to Random
    (StickyArtist, "sticky", [t % TRACKS for t in range(0, 2000, 7)], TOP),
])
def test_sim_policies_pick_what_botify_picks_on_the_same_data(world, redis_url, tmp_path,
                                                              botify_cls, sim_name, prev_tracks, top):
    if not top:
        write_recommendations(world, "v1", {u: v1_list(u) for u in range(20)}, top)
    config = make_config(world, redis_url, tmp_path / "logs")
    store = Store.from_config(config)
    load_or_keep(config, store)
    botify = botify_cls(config["recommenders"] | {"top_k": 10}, rng=ScriptedPicks(3))
    top_cache = TopCache()

    def botify_pick(prev_track):
        view = View(store, botify.reads, 0, prev_track, botify.recs_set, 60, top_cache)
        return botify.recommend(view, 0, prev_track, 1.0)

    # botify's Random fallback draws from Redis (SRANDMEMBER); the simulator's from its own stream.
    botify_picks = [botify_pick(t) for t in prev_tracks]

    env = _sim_world()
    agent = make_agent(sim_name, top_n=10, top_tracks=top)
    agent.start(env, ScriptedPicks(3))
    sim_picks = [agent.recommend({"user": 0, "track": t}, 1.0) for t in prev_tracks]
    if top or sim_name == "sticky":
        assert sim_picks == botify_picks
        assert len(set(sim_picks)) > 5
    else:
        assert set(sim_picks) | set(botify_picks) <= set(range(TRACKS))
        assert len(set(sim_picks)) > 10 and len(set(botify_picks)) > 10
    if sim_name == "toppop" and top:
        assert set(sim_picks) <= set(TOP[:10])
