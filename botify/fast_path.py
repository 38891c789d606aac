"""The two hot routes, ``POST /next/<user>`` and ``POST /last/<user>``, answered without Flask's machinery.

Flask's request context, routing and response objects cost about a fifth of
a /next's Python time (docs/benchmarks.md#botify). This WSGI middleware, in
front of the Flask app, answers the well-formed requests of the two routes
itself, with the same checks (``botify.validation``) and the same service
calls. Everything else - other routes and methods, a body that is too large
or not sized, a bad id or body, an unknown track - goes to the Flask app with
the body as it came, and Flask answers exactly as it always did: every error
message keeps one home (``botify.api`` and ``botify.app``).
"""
from __future__ import annotations

import io
import logging
import time

from botify.service import Service
from botify.validation import BadRequest, parse_id, parse_play

log = logging.getLogger(__name__)

_JSON = [("Content-Type", "application/json")]
_ROUTES = {"/next/": "next", "/last/": "last"}


class FastPath:
    def __init__(self, flask_wsgi_app, service: Service, max_body_bytes: int):
        self.flask = flask_wsgi_app
        self.service = service
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        route = _ROUTES.get(path[:6])
        if route is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask(environ, start_response)
        try:
            size = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            size = -1
        if not 0 <= size <= self.max_body_bytes:  # unsized, chunked or too large: Flask's 400 / 413
            return self.flask(environ, start_response)
        body = environ["wsgi.input"].read(size)
        try:
            user = parse_id(path[6:], "user")
            track, played = parse_play(body)
        except BadRequest:
            return self._to_flask(environ, start_response, body)
        if track not in self.service.catalog:
            return self._to_flask(environ, start_response, body)
        try:
            if route == "next":
                recommended, environ["botify.arm"] = self.service.next(user, track, played, start)
                payload = b'{"user":%d,"track":%d}\n' % (user, recommended)
            else:
                environ["botify.arm"] = self.service.last(user, track, played, start)
                payload = b'{"user":%d}\n' % user
        except Exception:  # a bug: answered like Flask's handler in botify.app does
            log.exception("unhandled error on POST %s", path)
            payload = b'{"error":"internal error"}\n'
            start_response("500 INTERNAL SERVER ERROR", _JSON + [("Content-Length", str(len(payload)))])
            return [payload]
        start_response("200 OK", _JSON + [("Content-Length", str(len(payload)))])
        return [payload]

    def _to_flask(self, environ, start_response, body: bytes):
        environ["wsgi.input"] = io.BytesIO(body)
        return self.flask(environ, start_response)
