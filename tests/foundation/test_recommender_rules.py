"""common/recommender_rules: the choice rules botify and the simulator share, on an in-memory source."""
from __future__ import annotations

import random

import pytest

from common import recommender_rules


class Source:
    def __init__(self, tracks, artist_of, top=None):
        self.tracks, self.artist_of, self.top = list(tracks), dict(artist_of), top
        self.rng = random.Random(3)

    def random_track(self):
        return self.rng.choice(self.tracks) if self.tracks else None

    def top_tracks(self):
        return self.top

    def artist_tracks(self, track):
        if track not in self.artist_of:
            return None
        return [t for t in self.tracks if self.artist_of[t] == self.artist_of[track]]


CATALOG = Source(range(10), {t: t // 5 for t in range(10)}, top=[9, 8, 7, 6])


def test_sticky_artist_stays_with_the_artist():
    rng = random.Random(1)
    picks = {recommender_rules.sticky_artist(CATALOG, rng.randrange, 2) for _ in range(200)}
    assert picks == {0, 1, 2, 3, 4}


def test_sticky_artist_falls_back_to_random_for_an_unknown_track():
    rng = random.Random(1)
    picks = {recommender_rules.sticky_artist(CATALOG, rng.randrange, 999) for _ in range(300)}
    assert picks == set(range(10))


def test_top_pop_draws_from_the_top_k_and_falls_back_to_random_without_a_list():
    rng = random.Random(2)
    assert {recommender_rules.top_pop(CATALOG, rng.randrange, 3) for _ in range(200)} == {9, 8, 7}
    no_list = Source(range(10), {}, top=None)
    assert {recommender_rules.top_pop(no_list, rng.randrange, 3) for _ in range(300)} == set(range(10))


def test_popular_skips_excluded_tracks_and_says_when_none_are_left():
    rng = random.Random(4)
    assert {recommender_rules.popular(CATALOG, rng.randrange, 3, exclude={9}) for _ in range(100)} == {8, 7}
    assert recommender_rules.popular(CATALOG, rng.randrange, 3, exclude={9, 8, 7}) is None


def test_an_empty_catalog_is_an_error_not_a_none_track():
    with pytest.raises(LookupError):
        recommender_rules.sticky_artist(Source([], {}), random.Random(0).randrange, 1)
