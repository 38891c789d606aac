"""What load balancers, orchestrators and Prometheus poll: ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

``/healthz`` says only that this process answers HTTP (restart it if not);
``/readyz`` that it can serve what it is configured to (send it traffic only
then): Redis answers and holds a namespace with the catalog and every served
recommendation set (``Service.readiness``). Neither needs the admin token: they
change nothing and tell nothing a client could not learn from ``GET /``.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from botify import metrics

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz():
    ready, detail = current_app.extensions["botify"].readiness()
    return jsonify(detail), 200 if ready else 503


@bp.get("/metrics")
def scrape():
    service = current_app.extensions["botify"]
    if not service.metrics.enabled:
        return jsonify(error="metrics are off (metrics.enabled: false)"), 404
    body, content_type = metrics.exposition(lambda: service.serving, service.readiness, service.store.meta)
    return Response(body, content_type=content_type)
