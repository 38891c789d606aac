"""Configuration: YAML files in ``conf/`` with per-run ``--set key.path=value`` overrides.

One loader for jobs, botify and sim so that a value means the same thing everywhere.
Where ``conf/`` is looked up matters on a cluster: in YARN cluster mode the driver
runs in a container whose working directory holds the files shipped with
``--files``, so a bare file name there wins over the repo's ``conf/``.
"""
from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

REPO_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A configuration file is missing or a value is malformed."""


def conf_dir() -> Path:
    return Path(os.environ.get("BOTIFY_CONF_DIR", REPO_CONF_DIR))


def find_conf_file(name: str) -> Path:
    """Locate ``name`` (e.g. ``pipeline.yml`` or ``spark/local.yml``).

    Search order: an existing path as given; the working directory (files shipped
    by spark-submit ``--files`` land there, flattened); ``$BOTIFY_CONF_DIR`` or
    the repo's ``conf/``.
    """
    given = Path(name)
    candidates = [given, Path.cwd() / given.name, conf_dir() / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"configuration file {name!r} not found (looked in: "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def parse_value(text: str) -> Any:
    """Parse an override value with YAML rules, so ``0.9``, ``true`` and ``[1, 2]`` get their types."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse override value {text!r}: {exc}") from exc


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict:
    """Return a copy of ``config`` with ``key.path=value`` overrides applied.

    A key that does not exist yet is an error unless its parent is a mapping
    meant for free-form keys (``spark.conf``), so a typo cannot silently do nothing.
    """
    result = copy.deepcopy(dict(config))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = result
        for i, part in enumerate(parts[:-1]):
            if part not in node or not isinstance(node[part], dict):
                if part == "conf" or (i > 0 and parts[i - 1] == "conf"):
                    node[part] = node.get(part) or {}
                else:
                    raise ConfigError(f"unknown configuration key {key!r} (no section {part!r})")
            node = node[part]
            if part == "conf":
                # Spark conf keys contain dots themselves: take the rest verbatim.
                node[".".join(parts[i + 1 :])] = parse_value(raw)
                break
        else:
            if parts[-1] not in node:
                raise ConfigError(f"unknown configuration key {key!r}")
            node[parts[-1]] = parse_value(raw)
    return result


def load_yaml(name: str) -> dict:
    path = find_conf_file(name)
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(name: str = "pipeline.yml", overrides: Iterable[str] = ()) -> dict:
    return apply_overrides(load_yaml(name), overrides)


def get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"configuration key {dotted!r} is missing")
        node = node[part]
    return node


def add_config_arguments(parser: argparse.ArgumentParser, default: str = "pipeline.yml") -> None:
    """The flags every job and command shares."""
    parser.add_argument("--config", default=default, help=f"YAML config (default: {default})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set storage.root=hdfs:///user/me/botify (repeatable)",
    )
