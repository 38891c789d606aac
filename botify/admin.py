"""The operator's blueprint: ``POST /admin/reload`` and ``POST /admin/rotate-logs``, each behind ``require_token``."""
from __future__ import annotations

import functools
import hmac

from flask import Blueprint, current_app, jsonify, request

from botify.catalog import ArtifactError, StorageUnavailable
from botify.event_log_writer import request_rotation
from botify.store import ReloadBusy
from botify.validation import parse_reload

bp = Blueprint("admin", __name__, url_prefix="/admin")


def require_token(view):
    """403 when no admin token is configured (admin routes are off), 401 unless ``Authorization: Bearer <token>``."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        token = current_app.config["ADMIN_TOKEN"]
        if not token:
            return jsonify(error="admin endpoints are disabled: no admin token configured "
                                 "(set BOTIFY_ADMIN_TOKEN or admin.token)"), 403
        given = request.headers.get("Authorization", "")
        # compare_digest: the time taken must not tell how much of a guessed token was right
        if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[len("Bearer "):].encode(), str(token).encode()
        ):
            return jsonify(error="missing or wrong admin token (Authorization: Bearer <token>)"), 401
        return view(*args, **kwargs)

    return guarded


@bp.post("/reload")
@require_token
def reload():
    service = current_app.extensions["botify"]
    versions, force = parse_reload(request.get_data(cache=False))
    try:
        result = service.reload(versions, force=force)
    except StorageUnavailable as exc:
        return jsonify(error=f"reload refused, previous version still serving: {exc}"), 503
    except ArtifactError as exc:
        return jsonify(error=f"reload rejected, previous version still serving: {exc}"), 422
    except ReloadBusy as exc:
        return jsonify(error=str(exc)), 409
    except service.redis_errors as exc:
        return jsonify(error=f"Redis unavailable, nothing changed: {exc}"), 503
    return jsonify(status="reloaded", **result)


@bp.post("/rotate-logs")
@require_token
def rotate_logs():
    service = current_app.extensions["botify"]
    try:
        completed = request_rotation(service.event_log.directory, timeout_s=service.rotate_timeout_s)
    except TimeoutError as exc:
        return jsonify(error=str(exc)), 504
    return jsonify(status="rotated", completed=completed)
