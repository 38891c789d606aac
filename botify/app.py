"""The botify Flask app: ``create_app(config)``.

Endpoints (DESIGN.md, wire-compatible with the course's simulator client):
``GET /``, ``GET /track/<id>``, ``POST /next/<user>``, ``POST /last/<user>``,
plus token-protected ``POST /admin/reload`` and ``POST /admin/rotate-logs``.
"""
from __future__ import annotations

import hmac
import json
import logging
import time

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from botify.artifacts import valid_version_name
from botify.catalog import ArtifactError
from botify.event_log import request_rotation
from botify.service import Service
from botify.store import ReloadBusy
from botify.validation import BadRequest, check_id, parse_play

log = logging.getLogger(__name__)


def _parse_id(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise BadRequest(f"{what} id must be a non-negative integer, got {text!r}")
    return check_id(int(text), what)


def create_app(config: dict, service: Service = None) -> Flask:
    app = Flask("botify")
    app.config["MAX_CONTENT_LENGTH"] = int(config["server"]["max_body_bytes"])
    app.json.sort_keys = False
    service = service or Service(config)
    app.extensions["botify"] = service
    token = config["admin"]["token"]

    @app.errorhandler(BadRequest)
    def bad_request(exc):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def server_error(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal error"), 500

    @app.get("/")
    def health():
        return jsonify(status="alive", message="welcome to botify, the best toy music recommender",
                       **service.health())

    @app.get("/track/<track>")
    def track_info(track: str):
        info = service.track(_parse_id(track, "track"))
        if info is None:
            return jsonify(error=f"track {track} not found"), 404
        return jsonify(info)

    @app.post("/next/<user>")
    def next_track(user: str):
        start = time.perf_counter()
        user_id = _parse_id(user, "user")
        prev, played = parse_play(request.get_data(cache=False))
        recommendation = service.next(user_id, prev, played, start)
        return jsonify(user=user_id, track=recommendation)

    @app.post("/last/<user>")
    def last_track(user: str):
        start = time.perf_counter()
        user_id = _parse_id(user, "user")
        prev, played = parse_play(request.get_data(cache=False))
        service.last(user_id, prev, played, start)
        return jsonify(user=user_id)

    def authorized():
        if not token:
            return jsonify(error="admin endpoints are disabled: no admin token configured "
                                 "(set BOTIFY_ADMIN_TOKEN or admin.token)"), 403
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[len("Bearer "):].encode(), str(token).encode()
        ):
            return jsonify(error="missing or wrong admin token (Authorization: Bearer <token>)"), 401
        return None

    @app.post("/admin/reload")
    def admin_reload():
        denied = authorized()
        if denied:
            return denied
        body = request.get_data(cache=False)
        version = None
        if body.strip():
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                data = None
            if not isinstance(data, dict) or set(data) - {"version"}:
                raise BadRequest('body must be empty or {"version": "<name>"}')
            version = data.get("version")
            if version is not None and (not isinstance(version, str) or not valid_version_name(version)):
                raise BadRequest(f"invalid version name {version!r}")
        try:
            result = service.reload(version)
        except ArtifactError as exc:
            return jsonify(error=f"reload rejected, previous version still serving: {exc}"), 422
        except ReloadBusy as exc:
            return jsonify(error=str(exc)), 409
        except service.redis_errors as exc:
            return jsonify(error=f"Redis unavailable, nothing changed: {exc}"), 503
        return jsonify(status="reloaded", **result)

    @app.post("/admin/rotate-logs")
    def admin_rotate():
        denied = authorized()
        if denied:
            return denied
        try:
            completed = request_rotation(service.event_log.directory, timeout_s=service.rotate_timeout_s)
        except TimeoutError as exc:
            return jsonify(error=str(exc)), 504
        return jsonify(status="rotated", completed=completed)

    return app
