"""The ``console`` agent: you are the recommender (manual play, as in the course).

It shows the last track (artist and title from the world's catalog) and its
listening time, and reads a track id from the terminal; ``a`` lists a few
tracks by the same artist, ``q`` ends the run.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, TextIO

from sim.policies import Agent


class QuitPlay(Exception):
    """The player asked to stop."""


class ConsoleAgent(Agent):
    name = "console"

    def __init__(self, input_fn: Callable[[str], str] = input, out: Optional[TextIO] = None):
        self.input_fn = input_fn
        self.out = out or sys.stdout

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _describe(self, track: int) -> str:
        info = self.env.tracks.info(track)
        return f"{info['track']}: '{info['title']}' by '{info['artist']}'"

    def recommend(self, observation, reward):
        tracks = self.env.tracks
        self._say(f"user {observation['user']} just played {self._describe(observation['track'])}; time {reward:.2f}")
        while True:
            text = self.input_fn(f"track id (0..{tracks.size() - 1}), a = same artist, q = quit> ").strip()
            if text == "q":
                raise QuitPlay()
            if text == "a":
                same = tracks.tracks_by_artist[tracks.artist_list[observation["track"]]][:10]
                for track in same:
                    self._say("  " + self._describe(int(track)))
                continue
            try:
                track = int(text)
            except ValueError:
                self._say(f"not a track id: {text!r}")
                continue
            if not 0 <= track < tracks.size():
                self._say(f"no track {track} in this world")
                continue
            return track

    def finish(self, observation, reward):
        self._say(f"session over: last track {self._describe(observation['track'])}; time {reward:.2f}")
