"""A minimal botify stand-in on loopback: ``POST /next/<user>`` and ``POST /last/<user>`` only.

For the remote agent's tests and the HTTP benchmark while (or where) botify is
not running: a real HTTP/1.1 keep-alive server (stdlib ``http.server``) in a
background thread that answers each ``next`` with a random catalog track and
records what it received, so tests can check the wire traffic.
"""
from __future__ import annotations

import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional, Tuple


class StandInBotify:
    def __init__(self, n_tracks: int, seed: int = 0, drop_every: int = 0):
        """``drop_every=k`` closes the connection after every k-th answer (tests the client's reconnect)."""
        self.n_tracks = n_tracks
        self.random = random.Random(seed)
        self.drop_every = drop_every
        self.requests: List[Tuple[str, int, dict]] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "StandInBotify":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle + delayed ACK stall each answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with owner.lock:
                    owner.connections += 1

            def log_message(self, *args):  # keep test and bench output clean
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                parts = self.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if len(parts) != 2 or parts[0] not in ("next", "last") or not parts[1].isdigit():
                    return self._answer(404, {"error": f"no route {self.path}"})
                try:
                    body = json.loads(raw)
                    int(body["track"]), float(body["time"])
                except (ValueError, KeyError, TypeError):
                    return self._answer(400, {"error": "body must be {\"track\": int, \"time\": float}"})
                user = int(parts[1])
                with owner.lock:
                    owner.requests.append((parts[0], user, body))
                    count = len(owner.requests)
                    track = owner.random.randrange(owner.n_tracks)
                if parts[0] == "next":
                    self._answer(200, {"user": user, "track": track})
                else:
                    self._answer(200, {"user": user})
                if owner.drop_every and count % owner.drop_every == 0:
                    # Close without "Connection: close": the client learns on its next request.
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin-botify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StandInBotify":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
