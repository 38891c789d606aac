"""botify's configuration: ``conf/botify.yml``, then environment variables, then ``--set`` overrides.

Environment variables sit between the file and the flags so a deployment (or
the demo) can switch experiments or point at a cluster Redis without editing
YAML, while a flag typed for one run still wins.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional

from common.config import ConfigError, apply_overrides, load_yaml
from common.experiments import treatment_names

CONFIG_NAME = "botify.yml"

# environment variable -> config key
ENV_KEYS = {
    "REDIS_URL": "redis.url",
    "BOTIFY_STORAGE_ROOT": "storage.root",
    "BOTIFY_HOST": "server.host",
    "BOTIFY_PORT": "server.port",
    "BOTIFY_WORKERS": "server.workers",
    "BOTIFY_ADMIN_TOKEN": "admin.token",
    "BOTIFY_LOG_DIR": "event_log.dir",
    "BOTIFY_RECOMMENDATIONS_VERSION": "artifacts.version",
}

RECOMMENDER_NAMES = ("Random", "TopPop", "StickyArtist", "Indexed", "Ranked")
# gevent first: one greenlet per connection, so slow clients cannot hold every worker thread
WORKER_CLASSES = ("gevent", "gthread", "sync")


def env_overrides(env: Mapping[str, str]) -> list:
    overrides = []
    for var, key in ENV_KEYS.items():
        value = env.get(var)
        if value:
            # Quoted so a token or URL is never re-typed by YAML (e.g. "0123" or "yes").
            quoted = value if var in ("BOTIFY_PORT", "BOTIFY_WORKERS") else _yaml_string(value)
            overrides.append(f"{key}={quoted}")
    experiments = env.get("BOTIFY_EXPERIMENTS")
    if experiments:
        names = [n.strip() for n in experiments.split(",") if n.strip()]
        overrides.append("active_experiments=[" + ", ".join(_yaml_string(n) for n in names) + "]")
    return overrides


def _yaml_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_settings(
    overrides: Iterable[str] = (), env: Optional[Mapping[str, str]] = None, name: str = CONFIG_NAME
) -> dict:
    env = os.environ if env is None else env
    config = apply_overrides(load_yaml(name), [*env_overrides(env), *overrides])
    validate(config)
    return config


def validate(config: dict) -> None:
    """Fail at startup, naming the key, rather than on the first request."""
    active = config.get("active_experiments")
    if not isinstance(active, list) or not active:
        raise ConfigError("active_experiments must be a non-empty list of experiment names")
    experiments = config.get("experiments") or {}
    for name in active:
        if name not in experiments:
            raise ConfigError(
                f"active experiment {name!r} is not defined under experiments (defined: {sorted(experiments)})"
            )
    for name, spec in experiments.items():
        if not isinstance(spec, dict) or "split" not in spec or "treatments" not in spec:
            raise ConfigError(f"experiments.{name} needs 'split' and 'treatments'")
        try:
            arms = treatment_names(int(spec["split"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"experiments.{name}.split: {exc}") from exc
        treatments = spec["treatments"] or {}
        if sorted(treatments) != sorted(arms):
            raise ConfigError(
                f"experiments.{name}.treatments must map exactly {arms} to recommenders, got {sorted(treatments)}"
            )
        for arm, recommender in treatments.items():
            if recommender not in RECOMMENDER_NAMES:
                raise ConfigError(
                    f"experiments.{name}.treatments.{arm}: unknown recommender {recommender!r} "
                    f"(known: {', '.join(RECOMMENDER_NAMES)})"
                )
    for key in ("port", "workers", "threads", "max_body_bytes"):
        value = config["server"][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "port" else 1):
            raise ConfigError(f"server.{key} must be a positive integer, got {value!r}")
    if config["server"]["worker_class"] not in WORKER_CLASSES:
        raise ConfigError(f"server.worker_class must be one of {', '.join(WORKER_CLASSES)}, "
                          f"got {config['server']['worker_class']!r}")
    for key in ("top_k", "history_ttl_s"):
        if int(config["recommenders"][key]) <= 0:
            raise ConfigError(f"recommenders.{key} must be positive")
