"""The botify Flask app: ``create_app(config)`` wires the service, the blueprints and the error handlers.

Routes live in ``botify.api`` (the public API) and ``botify.admin`` (token-protected operator calls);
the well-formed requests of the two hot ones are answered in front of Flask by ``botify.fast_path``;
``botify.probes`` answers health, readiness and metrics, and ``botify.metrics.Instrumented``, outermost,
counts every request;
every error, ours or werkzeug's, leaves as JSON ``{"error": ...}`` with a 4xx status, and a 500 only for a bug.
"""
from __future__ import annotations

import logging
from typing import Optional

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from botify import admin, api, probes
from botify.fast_path import FastPath
from botify.metrics import Instrumented
from botify.service import Service
from botify.validation import BadRequest

log = logging.getLogger(__name__)


def create_app(config: dict, service: Optional[Service] = None) -> Flask:
    app = Flask("botify")
    app.config["MAX_CONTENT_LENGTH"] = int(config["server"]["max_body_bytes"])
    app.config["ADMIN_TOKEN"] = config["admin"]["token"]
    app.json.sort_keys = False
    app.extensions["botify"] = service or Service(config)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(probes.bp)
    app.register_error_handler(BadRequest, lambda exc: (jsonify(error=str(exc)), 400))
    app.register_error_handler(HTTPException, lambda exc: (jsonify(error=exc.description or exc.name), exc.code))
    app.register_error_handler(Exception, _server_error)
    service = app.extensions["botify"]
    app.wsgi_app = FastPath(app.wsgi_app, service, app.config["MAX_CONTENT_LENGTH"])
    if service.metrics.enabled:
        app.wsgi_app = Instrumented(app.wsgi_app, service.metrics)
    return app


def _server_error(exc):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return jsonify(error="internal error"), 500
