"""botify's configuration: ``conf/botify.yml``, then environment variables, then ``--set`` overrides.

Environment variables sit between the file and the flags so a deployment (or
the demo) can switch experiments or point at a cluster Redis without editing
YAML, while a flag typed for one run still wins.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Iterable, Mapping, Optional, Tuple

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
    "BOTIFY_ADMIN_TOKEN_FILE": "admin.token_file",
    "BOTIFY_LOG_DIR": "event_log.dir",
    "BOTIFY_RECOMMENDATIONS_VERSION": "artifacts.version",
}

RECOMMENDER_NAMES = ("Random", "TopPop", "StickyArtist", "Indexed", "Ranked")
# Recommenders that read a user's list, so an arm can say which recommendation set they read.
LIST_RECOMMENDERS = ("Indexed", "Ranked")
# The set `artifacts.version` names (recommendations/LATEST: the MultiDAE's); arms without `set` read it.
DEFAULT_SET = "default"
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# gevent first: one greenlet per connection, so slow clients cannot hold every worker thread
WORKER_CLASSES = ("gevent", "gthread", "sync")


def env_overrides(env: Mapping[str, str]) -> list:
    overrides = []
    for var, key in ENV_KEYS.items():
        value = env.get(var)
        if value:
            # Quoted so a token or URL is never re-typed by YAML (e.g. "0123" or "yes").
            quoted = value if var in ("BOTIFY_PORT", "BOTIFY_WORKERS") else yaml_string(value)
            overrides.append(f"{key}={quoted}")
    experiments = env.get("BOTIFY_EXPERIMENTS")
    if experiments:
        names = [n.strip() for n in experiments.split(",") if n.strip()]
        overrides.append("active_experiments=[" + ", ".join(yaml_string(n) for n in names) + "]")
    return overrides


def yaml_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_settings(
    overrides: Iterable[str] = (), env: Optional[Mapping[str, str]] = None, name: str = CONFIG_NAME
) -> dict:
    env = os.environ if env is None else env
    config = apply_overrides(load_yaml(name), [*env_overrides(env), *overrides])
    validate(config)
    read_token_file(config["admin"])
    return config


def read_token_file(admin: dict) -> None:
    """``admin.token`` from ``admin.token_file`` (its first line), so no token need be typed where ``ps`` shows it."""
    path = admin.get("token_file")
    if not path:
        return
    if admin.get("token"):
        raise ConfigError("admin.token and admin.token_file are both set (BOTIFY_ADMIN_TOKEN / BOTIFY_ADMIN_TOKEN_FILE):"
                          " keep one")
    try:
        with open(os.path.expanduser(str(path)), encoding="utf-8") as fh:
            token = fh.readline().strip()
    except OSError as exc:
        raise ConfigError(f"admin.token_file: cannot read {path}: {exc.strerror}") from exc
    if not token:
        raise ConfigError(f"admin.token_file: {path} is empty")
    admin["token"] = token


def recommendation_sets(config: dict) -> Dict[str, dict]:
    """Every recommendation set botify serves: ``{name: {"pointer", "version"}}``, the default set first.

    The default set is ``recommendations/LATEST`` at ``artifacts.version``
    (so a configuration without ``artifacts.sets`` serves exactly one set, as
    before); ``artifacts.sets`` adds named ones, each with its own pointer file
    in the same directory (default ``LATEST-<name>``) and version (default ``latest``).
    """
    artifacts = config["artifacts"]
    sets = {DEFAULT_SET: {"pointer": "LATEST", "version": str(artifacts["version"])}}
    for name, spec in (artifacts.get("sets") or {}).items():
        spec = spec or {}
        sets[name] = {"pointer": str(spec.get("pointer", f"LATEST-{name}")), "version": str(spec.get("version", "latest"))}
    return sets


def served_sets(config: dict) -> Dict[str, dict]:
    """The sets botify loads: the default one and those the routing experiment's arms read.

    A set no arm reads is not loaded, so defining ``als`` costs nothing while BASELINE or AB routes.
    """
    routing = config["experiments"][config["active_experiments"][0]]
    used = {arm(spec)[1] for spec in routing["treatments"].values()}
    return {name: spec for name, spec in recommendation_sets(config).items() if name == DEFAULT_SET or name in used}


def arm(spec) -> Tuple[str, str]:
    """``(recommender, set)`` of one treatment: ``Ranked`` or ``{recommender: Ranked, set: als}``."""
    if isinstance(spec, dict):
        return spec.get("recommender"), spec.get("set", DEFAULT_SET)
    return spec, DEFAULT_SET


def _validate_sets(config: dict) -> None:
    sets = config["artifacts"].get("sets") or {}
    if not isinstance(sets, dict):
        raise ConfigError("artifacts.sets must map set names to {pointer, version}")
    for name, spec in sets.items():
        where = f"artifacts.sets.{name}"
        if not isinstance(name, str) or not SET_NAME.match(name) or name == DEFAULT_SET:
            raise ConfigError(f"{where}: a set name is letters, digits, '-' and '_' (and not {DEFAULT_SET!r})")
        if spec is not None and (not isinstance(spec, dict) or set(spec) - {"pointer", "version"}):
            raise ConfigError(f"{where} takes only 'pointer' and 'version'")
    for name, spec in recommendation_sets(config).items():
        for key in ("pointer", "version"):
            value = spec[key]
            if not value or "/" in value or value.startswith((".", "_")):
                raise ConfigError(f"recommendation set {name!r}: {key} {value!r} must be a file name in "
                                  f"artifacts.recommendations (no '/', not starting with '.' or '_')")


def _validate_arm(where: str, spec, sets: Dict[str, dict]) -> None:
    if isinstance(spec, dict) and set(spec) - {"recommender", "set"}:
        raise ConfigError(f"{where} takes only 'recommender' and 'set', got {sorted(spec)}")
    recommender, recs_set = arm(spec)
    if recommender not in RECOMMENDER_NAMES:
        raise ConfigError(f"{where}: unknown recommender {recommender!r} (known: {', '.join(RECOMMENDER_NAMES)})")
    if recs_set not in sets:
        raise ConfigError(f"{where}: unknown recommendation set {recs_set!r} (artifacts.sets defines: "
                          f"{', '.join(s for s in sets if s != DEFAULT_SET) or 'none'})")
    if recs_set != DEFAULT_SET and recommender not in LIST_RECOMMENDERS:
        raise ConfigError(f"{where}: {recommender} reads no user lists, so it takes no set "
                          f"(only {', '.join(LIST_RECOMMENDERS)} do)")


def validate(config: dict) -> None:
    """Fail at startup, naming the key, rather than on the first request."""
    _validate_sets(config)
    sets = recommendation_sets(config)
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
        for arm_name, treatment in treatments.items():
            _validate_arm(f"experiments.{name}.treatments.{arm_name}", treatment, sets)
    for key in ("port", "workers", "threads", "max_body_bytes"):
        value = config["server"][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "port" else 1):
            raise ConfigError(f"server.{key} must be a positive integer, got {value!r}")
    if config["server"]["worker_class"] not in WORKER_CLASSES:
        raise ConfigError(f"server.worker_class must be one of {', '.join(WORKER_CLASSES)}, "
                          f"got {config['server']['worker_class']!r}")
    max_bytes = config["artifacts"]["max_bytes"]
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ConfigError(f"artifacts.max_bytes must be a positive integer, got {max_bytes!r}")
    if not isinstance(config["metrics"]["enabled"], bool):
        raise ConfigError(f"metrics.enabled must be true or false, got {config['metrics']['enabled']!r}")
    for key in ("top_k", "history_ttl_s"):
        if int(config["recommenders"][key]) <= 0:
            raise ConfigError(f"recommenders.{key} must be positive")
