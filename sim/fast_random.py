"""Uniform draws for the per-step hot loop, buffered: one numpy call per block instead of one per draw.

A scalar ``Generator.random()`` or ``integers()`` call costs microseconds, as
much as the rest of a simulated step; drawing in blocks keeps the stream
deterministic for a seed while taking that cost out of the loop. Blocks start
small and double, since most sessions need a few dozen draws and a long bulk
run needs millions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FIRST_BLOCK = 32
MAX_BLOCK = 8192


class FastUniform:
    __slots__ = ("generator", "_buffer", "_pos", "_block")

    def __init__(self, seed: Any = None):
        self.generator = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._block = FIRST_BLOCK
        self._buffer = self.generator.random(self._block).tolist()
        self._pos = 0

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        if self._pos == len(self._buffer):
            self._block = min(self._block * 2, MAX_BLOCK)
            self._buffer = self.generator.random(self._block).tolist()
            self._pos = 0
        value = self._buffer[self._pos]
        self._pos += 1
        return value

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)
