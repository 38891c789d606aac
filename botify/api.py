"""The public API blueprint (docs/design.md "HTTP API", wire-compatible with the course's simulator client):
``GET /``, ``GET /track/<id>``, ``POST /next/<user>``, ``POST /last/<user>``."""
from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, jsonify, request

from botify.service import Service
from botify.validation import parse_id, parse_play

bp = Blueprint("api", __name__)


def service() -> Service:
    return current_app.extensions["botify"]


def _play(user: str) -> tuple:
    """``(user, track, time)`` of a /next or /last request."""
    user_id = parse_id(user, "user")
    track, played = parse_play(request.get_data(cache=False))
    if track not in service().catalog:
        # Refused, not logged: the nightly extract counts unknown tracks as malformed lines.
        abort(422, f"track {track} is not in the catalog ({len(service().catalog)} tracks)")
    return user_id, track, played


@bp.get("/")
def health():
    return jsonify(status="alive", message="welcome to botify, the best toy music recommender", **service().health())


@bp.get("/track/<track>")
def track_info(track: str):
    info = service().track(parse_id(track, "track"))
    if info is None:
        return jsonify(error=f"track {track} not found"), 404
    return jsonify(info)


@bp.post("/next/<user>")
def next_track(user: str):
    start = time.perf_counter()
    user_id, track, played = _play(user)
    recommendation, request.environ["botify.arm"] = service().next(user_id, track, played, start)
    return jsonify(user=user_id, track=recommendation)


@bp.post("/last/<user>")
def last_track(user: str):
    start = time.perf_counter()
    user_id, track, played = _play(user)
    request.environ["botify.arm"] = service().last(user_id, track, played, start)
    return jsonify(user=user_id)
