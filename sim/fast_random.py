"""Uniform draws for the per-step hot loop, buffered: one numpy call per 4,096 draws instead of one per draw.

A scalar ``Generator.random()`` or ``integers()`` call costs microseconds, as
much as the rest of a simulated step; drawing in blocks keeps the stream
deterministic for a seed while taking that cost out of the loop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

BLOCK = 4096


class FastUniform:
    __slots__ = ("generator", "_buffer", "_pos")

    def __init__(self, seed: Any = None):
        self.generator = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._buffer = self.generator.random(BLOCK).tolist()
        self._pos = 0

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        if self._pos == BLOCK:
            self._buffer = self.generator.random(BLOCK).tolist()
            self._pos = 0
        value = self._buffer[self._pos]
        self._pos += 1
        return value

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)
