"""The ``remote`` agent: asks botify over HTTP, exactly as the course's simulator client did.

``POST /next/<user>`` with ``{"track": <last track>, "time": <its listening time>}``
before each step (answer ``{"user", "track"}``), and ``POST /last/<user>`` with
the same body when the session ends. One persistent keep-alive connection per
process (``http.client``: no per-request connection setup). A connection
failure or timeout is retried ``retries`` times with doubling backoff on a
fresh connection — a keep-alive socket the server has closed fails that way
too; then :class:`BotifyUnreachable`. An HTTP error status or a malformed
answer is not retried: :class:`BotifyError` says what came back.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from typing import Any, Dict, Optional

from sim.policies import Agent

log = logging.getLogger(__name__)


class BotifyError(RuntimeError):
    """botify answered, but not with what the API promises."""


class BotifyUnreachable(BotifyError):
    """No answer from botify after the allowed retries."""


class RemoteAgent(Agent):
    name = "remote"

    def __init__(self, host: str = "127.0.0.1", port: int = 5000, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.2, n_tracks: Optional[int] = None):
        self.host = host
        self.port = int(port)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.n_tracks = n_tracks
        self._conn: Optional[http.client.HTTPConnection] = None
        self.requests = 0

    @classmethod
    def from_config(cls, remote_config: Dict[str, Any], n_tracks: Optional[int] = None) -> "RemoteAgent":
        return cls(
            host=remote_config.get("host", "127.0.0.1"),
            port=remote_config.get("port", 5000),
            timeout_s=remote_config.get("timeout_s", 10.0),
            retries=remote_config.get("retries", 3),
            backoff_s=remote_config.get("backoff_s", 0.2),
            n_tracks=n_tracks,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def recommend(self, observation, reward):
        answer = self._post(f"/next/{int(observation['user'])}", observation["track"], reward)
        track = answer.get("track")
        if isinstance(track, bool) or not isinstance(track, int):
            raise BotifyError(f"POST /next/{observation['user']}: answer has no integer 'track': {answer!r}")
        if self.n_tracks is not None and not 0 <= track < self.n_tracks:
            raise BotifyError(
                f"POST /next/{observation['user']}: track {track} is not in this world (0..{self.n_tracks - 1}); "
                "is botify serving the same catalog?"
            )
        return track

    def finish(self, observation, reward):
        self._post(f"/last/{int(observation['user'])}", observation["track"], reward)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, path: str, track: int, reward: float) -> Dict[str, Any]:
        body = json.dumps({"track": int(track), "time": float(reward)}).encode()
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        delay = self.backoff_s
        last_error: Optional[BaseException] = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                    self._conn.connect()
                    # Small request/response pairs: without this, Nagle + delayed ACK add ~40 ms per request.
                    self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._conn.request("POST", path, body=body, headers=headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException, socket.timeout) as exc:
                last_error = exc
                log.debug("POST %s%s failed (attempt %d): %r", self.base_url, path, attempt + 1, exc)
                self.close()
                continue
            self.requests += 1
            if response.will_close:
                self.close()
            if response.status != 200:
                raise BotifyError(
                    f"POST {self.base_url}{path} returned HTTP {response.status}: {payload[:200].decode(errors='replace')}"
                )
            try:
                answer = json.loads(payload)
            except ValueError:
                raise BotifyError(f"POST {self.base_url}{path} returned non-JSON: {payload[:200]!r}") from None
            if not isinstance(answer, dict):
                raise BotifyError(f"POST {self.base_url}{path} returned {answer!r}, expected a JSON object")
            return answer
        raise BotifyUnreachable(
            f"botify at {self.base_url} is unreachable: POST {path} failed {self.retries + 1} times "
            f"(last error: {last_error!r}); is it running? start it, or point --url / "
            "remote_recommender_config at it"
        )

    def __repr__(self) -> str:
        return f"remote({self.host}, {self.port})"
