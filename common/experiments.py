"""A/B treatment assignment, identical to the course's botify so old and new logs agree.

The course ran mmh3 3.0, which wrapped a negative seed (``mmh3.hash("AB")`` is
negative) to unsigned 32 bits; current mmh3 rejects negative seeds, so the mask
reproduces the old behaviour explicitly.
"""
from __future__ import annotations

import mmh3


def treatment_names(split: int) -> list:
    if split < 2:
        raise ValueError(f"an experiment needs a split of at least 2, got {split}")
    return ["C"] + [f"T{i}" for i in range(1, split)]


def assign(user: int, name: str, split: int) -> str:
    """Treatment of ``user`` in experiment ``name`` with ``split`` arms: ``C``, ``T1``, ..."""
    seed = mmh3.hash(name) & 0xFFFFFFFF
    bucket = mmh3.hash(str(user), seed, signed=False) % split
    return treatment_names(split)[bucket]
