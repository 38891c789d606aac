"""Request checks for ``/next`` and ``/last``: anything wrong is a 400 with a message, never a 5xx."""
from __future__ import annotations

import json
import math

MAX_ID = 2**63 - 1  # ids are bigint in every table the jobs write
FIELDS = {"track", "time"}


class BadRequest(ValueError):
    pass


def check_id(value: int, what: str) -> int:
    if value > MAX_ID:
        raise BadRequest(f"{what} id {value} is out of range (0..{MAX_ID})")
    return value


def parse_play(body: bytes) -> tuple:
    """``(track, time)`` from a body ``{"track": int, "time": float in [0, 1]}``."""
    if not body:
        raise BadRequest('empty body: expected JSON {"track": int, "time": float}')
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object {"track": int, "time": float}')
    missing = FIELDS - data.keys()
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(sorted(missing))}")
    extra = data.keys() - FIELDS
    if extra:
        raise BadRequest(f"unexpected field(s): {', '.join(sorted(extra))}")
    track, time = data["track"], data["time"]
    if not isinstance(track, int) or isinstance(track, bool) or track < 0:
        raise BadRequest(f"'track' must be a non-negative integer, got {track!r}")
    check_id(track, "track")
    if not isinstance(time, (int, float)) or isinstance(time, bool) or not math.isfinite(time):
        raise BadRequest(f"'time' must be a number, got {time!r}")
    if not 0.0 <= time <= 1.0:
        raise BadRequest(f"'time' must be within [0, 1], got {time!r}")
    return track, float(time)
