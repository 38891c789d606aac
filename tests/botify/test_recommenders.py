"""Each recommender over real HTTP against a real Redis."""
import logging

import redis
import requests

from tests.botify.conftest import TOP, TRACKS, next_track, v1_list


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


def test_sticky_artist_stays_with_the_artist_and_falls_back_to_random(serve):
    base, _ = serve("StickyArtist")
    # the catalog's artist of track t is t % 30
    assert {next_track(base, 1, track=37) % 30 for _ in range(30)} == {7}
    unknown = {next_track(base, 1, track=5000) for _ in range(30)}
    assert unknown <= set(range(TRACKS)) and len({t % 30 for t in unknown}) > 1


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
