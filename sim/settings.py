"""conf/env.yml: loading with ``--set`` overrides, and building the world's catalogs from it."""
from __future__ import annotations

import os
from typing import Iterable, Optional, Tuple

from common.config import get, load_config
from sim.catalog import TrackCatalog, UserCatalog
from sim.world import EMBEDDINGS_FILE, TRACKS_FILE, USERS_FILE, WorldParams

DEFAULT_CONFIG = "env.yml"


def load_env_config(path: str = DEFAULT_CONFIG, overrides: Iterable[str] = (), world_dir: Optional[str] = None) -> dict:
    """Load the simulator config; ``world_dir`` points all three world paths at one directory."""
    config = load_config(path, list(overrides))
    if world_dir:
        config["track_catalog_config"]["track_meta_path"] = os.path.join(world_dir, TRACKS_FILE)
        config["track_catalog_config"]["track_embeddings_path"] = os.path.join(world_dir, EMBEDDINGS_FILE)
        config["user_catalog_config"]["user_catalog_path"] = os.path.join(world_dir, USERS_FILE)
    return config


def world_params(config: dict) -> Tuple[WorldParams, int]:
    values = dict(get(config, "world_config"))
    values.pop("out", None)
    seed = int(values.pop("seed", 31337))
    return WorldParams.from_mapping(values), seed


def load_catalogs(config: dict) -> Tuple[TrackCatalog, UserCatalog]:
    track_cfg = get(config, "track_catalog_config")
    user_cfg = dict(get(config, "user_catalog_config"))
    meta = track_cfg["track_meta_path"]
    embeddings = track_cfg["track_embeddings_path"]
    users_path = user_cfg["user_catalog_path"]
    missing = [p for p in (meta, embeddings, users_path) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            "world files not found: " + ", ".join(missing)
            + " (create a world with `python -m sim generate --out DIR` and pass --world DIR, or set the paths)"
        )
    tracks = TrackCatalog.load(meta, embeddings)
    defaults = {k[len("default_"):]: v for k, v in user_cfg.items() if k.startswith("default_")}
    users = UserCatalog.load(users_path, defaults, n_tracks=tracks.size())
    return tracks, users
