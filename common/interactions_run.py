"""Finding an interactions run (extract_interactions' output) and its dense track index."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from common.paths import resolve
from common.storage import join, read_pointer


def interactions_dir(storage, config: Dict, run: Optional[str]) -> Tuple[str, str]:
    """(run id, URI) of an interactions run; ``None`` or ``LATEST`` follows the pointer."""
    base = resolve(config, "interactions")
    if not run or run == "LATEST":
        run = read_pointer(storage, join(base, "LATEST"))
    uri = join(base, run)
    if not storage.exists(join(uri, "_SUCCESS")):
        raise FileNotFoundError(f"interactions run {uri} is missing or incomplete (no _SUCCESS)")
    return run, uri


def item_index(spark, run_uri: str) -> np.ndarray:
    """Track id per track_idx (position = track_idx); fails if the index is not dense 0..N-1."""
    rows = spark.read.parquet(join(run_uri, "tracks")).select("track", "track_idx").orderBy("track_idx").collect()
    idx = np.array([r["track_idx"] for r in rows], dtype=np.int64)
    if not np.array_equal(idx, np.arange(len(rows))):
        raise ValueError(f"{run_uri}/tracks: track_idx is not dense 0..{len(rows) - 1}")
    return np.array([r["track"] for r in rows], dtype=np.int64)
