"""One event-log line (the docs/design.md contract), built in one place for every writer.

botify logs every request with it; the simulator's fast path
(``sim/simulate_logs.py``) logs what botify would have logged without HTTP,
and the bulk generator for scale tests (``sim/bulk_logs.py``) its own
sessions. All go through :func:`event` and :func:`to_line`, so the logs cannot
drift apart in field names, order or number formatting.
"""
from __future__ import annotations

import json
from typing import Dict, Optional


def event(message: str, timestamp: int, user: int, track: int, time: float, latency: float,
          recommendation: Optional[int], experiments: Dict[str, str]) -> dict:
    """``track``/``time``: what the client reported; ``recommendation``: the answer (``None`` for ``last``)."""
    return {
        "message": message,
        "timestamp": timestamp,
        "user": user,
        "track": track,
        "time": time,
        "latency": latency,
        "recommendation": recommendation,
        "experiments": experiments,
    }


# One encoder for every line: json.dumps with separators builds a new encoder per call (~25% of a line's cost).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def to_line(event: dict) -> str:
    """The event as one compact JSON line, newline included."""
    return _ENCODE(event) + "\n"
