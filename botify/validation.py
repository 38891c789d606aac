"""Request checks: anything wrong with a request is a ``BadRequest`` (a 400 with a message), never a 5xx.

Bounds come before parsing, so nothing a client sends reaches a parser limit
(recursion, integer digits, float overflow) that would surface as a 500: the
body's size is capped by Flask (``server.max_body_bytes`` -> 413), its nesting
depth and number lengths here. Whether a well-formed track exists is the
catalog's question, asked by the route.
"""
from __future__ import annotations

import json
import math
import re
from typing import Dict, Tuple

from botify.artifacts import valid_version_name
from botify.settings import DEFAULT_SET, SET_NAME

MAX_ID = 2**63 - 1  # ids are bigint in every table the jobs write
MAX_ID_DIGITS = len(str(MAX_ID))
# The API's bodies are flat objects; a little slack keeps type errors ("'track' must be an integer") readable.
MAX_DEPTH = 8
PLAY_FIELDS = {"track", "time"}

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BadRequest(ValueError):
    pass


def parse_id(text: str, what: str) -> int:
    """A path segment as an id in 0..MAX_ID; checked as text first, so no length reaches int()."""
    if not text.isascii() or not text.isdigit():
        raise BadRequest(f"{what} id must be a non-negative integer, got {text[:40]!r}")
    digits = text.lstrip("0") or "0"
    if len(digits) > MAX_ID_DIGITS or int(digits) > MAX_ID:
        raise BadRequest(f"{what} id {text[:40]} is out of range (0..{MAX_ID})")
    return int(digits)


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body``, brackets inside strings not counted."""
    depth = deepest = 0
    for bracket in _STRING.sub(b'""', body).translate(None, _NOT_BRACKETS):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_ID_DIGITS:
        raise BadRequest(f"number {text[:20]}... ({len(text)} digits) is out of range")
    return int(text)


def _no_constant(name: str):
    raise BadRequest(f"{name} is not a JSON number")


def load_json(body: bytes):
    """Parse a UTF-8 JSON body (size already capped) after bounding its nesting and number lengths."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 text: {exc}") from None
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise BadRequest(f"body nests arrays/objects {depth} deep (at most {MAX_DEPTH})")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except BadRequest:
        raise
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_play(body: bytes) -> tuple:
    """``(track, time)`` from a body ``{"track": int, "time": float in [0, 1]}``."""
    if not body:
        raise BadRequest('empty body: expected JSON {"track": int, "time": float}')
    data = load_json(body)
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object {"track": int, "time": float}')
    missing = PLAY_FIELDS - data.keys()
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(sorted(missing))}")
    extra = data.keys() - PLAY_FIELDS
    if extra:
        raise BadRequest(f"unexpected field(s): {', '.join(sorted(extra))[:200]}")
    track, time = data["track"], data["time"]
    if not _is_int(track) or not 0 <= track <= MAX_ID:
        raise BadRequest(f"'track' must be an integer in 0..{MAX_ID}, got {_short(track)}")
    if not isinstance(time, (int, float)) or isinstance(time, bool) or not math.isfinite(time):
        raise BadRequest(f"'time' must be a finite number, got {_short(time)}")
    if not 0.0 <= time <= 1.0:
        raise BadRequest(f"'time' must be within [0, 1], got {_short(time)}")
    return track, float(time)


def parse_reload(body: bytes) -> Tuple[Dict[str, str], bool]:
    """``(versions, force)`` from an admin reload body: empty (the configured versions) or
    ``{"version": "<name>", "sets": {"<set>": "<name>"}, "force": bool}``, every field optional.

    ``version`` pins the default recommendation set, ``sets`` named ones; ``versions`` maps set -> version.
    """
    if not body.strip():
        return {}, False
    data = load_json(body)
    if not isinstance(data, dict) or set(data) - {"version", "sets", "force"}:
        raise BadRequest('body must be empty or {"version": "<name>", "sets": {"<set>": "<name>"}, '
                         '"force": true|false}')
    sets, force = data.get("sets", {}), data.get("force", False)
    if not isinstance(sets, dict) or not all(isinstance(n, str) and SET_NAME.match(n) for n in sets):
        raise BadRequest(f"'sets' must map recommendation set names to version names, got {_short(sets)}")
    versions = {**sets, DEFAULT_SET: data["version"]} if data.get("version") is not None else dict(sets)
    for version in versions.values():
        if not isinstance(version, str) or not valid_version_name(version):
            raise BadRequest(f"invalid version name {_short(version)}")
    if not isinstance(force, bool):
        raise BadRequest(f"'force' must be true or false, got {_short(force)}")
    return versions, force


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
