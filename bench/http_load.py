"""A small, cheap HTTP/1.1 load generator for bench/botify.py: one process, non-blocking sockets, one epoll loop.

``open_loop``: requests are due at Poisson arrival times of a fixed offered
rate whether or not earlier ones were answered; a request's latency runs from
the time it was *due*, so a stall shows in the tail instead of quietly
slowing the sender (coordinated omission). A due request goes out on an idle
keep-alive connection, else on a new one (up to ``max_connections``), else it
waits in the client's queue, its clock already running.

``closed_loop``: ``connections`` clients that each send the next request as
soon as the last is answered (the saturation throughput, and the metrics-cost
comparison).
"""
from __future__ import annotations

import collections
import random
import selectors
import socket
import time
from typing import List, Optional


class _Conn:
    __slots__ = ("sock", "due", "buf", "reusable")

    def __init__(self, sock):
        self.sock, self.due, self.buf, self.reusable = sock, 0.0, b"", True


class _Client:
    def __init__(self, host: str, port: int, users: int, tracks: int, seed: int):
        self.host, self.port = host, port
        self.users, self.tracks = users, tracks
        self.rng = random.Random(seed)
        self.sel = selectors.DefaultSelector()
        self.conns: List[_Conn] = []
        self.latencies: List[float] = []
        self.errors = 0

    def connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        self.sel.register(sock, selectors.EVENT_READ, conn)
        self.conns.append(conn)
        return conn

    def send(self, conn: _Conn, due: float) -> None:
        body = b'{"track": %d, "time": %.3f}' % (self.rng.randrange(self.tracks), self.rng.random())
        request = (b"POST /next/%d HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (self.rng.randrange(self.users), len(body), body))
        conn.due, conn.buf = due, b""
        conn.sock.send(request)  # ~150 bytes into an empty loopback socket buffer: never partial

    def receive(self, conn: _Conn, now: float) -> bool:
        """Read what arrived; True when a whole answer is in (its latency recorded)."""
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise ConnectionError("server closed the connection")
        conn.buf += data
        head, sep, body = conn.buf.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = 0
        # an HTTP/1.0 answer (Flask's single-threaded development server) or "Connection: close" ends the connection
        conn.reusable = head.startswith(b"HTTP/1.1")
        for line in head.split(b"\r\n")[1:]:
            name = line[:15].lower()
            if name == b"content-length:":
                length = int(line[15:])
            elif name.startswith(b"connection:") and b"close" in line.lower():
                conn.reusable = False
        if len(body) < length:
            return False
        if head[9:12] == b"200":
            self.latencies.append(now - conn.due)
        else:
            self.errors += 1
        return True

    def drop(self, conn: _Conn, error: bool = True) -> None:
        self.errors += error
        self.sel.unregister(conn.sock)
        conn.sock.close()
        self.conns.remove(conn)

    def close(self) -> None:
        for conn in list(self.conns):
            conn.sock.close()
        self.sel.close()


def open_loop(host: str, port: int, rate: float, duration: float, users: int, tracks: int, seed: int = 7,
              max_connections: int = 256, drain_s: float = 10.0) -> dict:
    """Poisson arrivals at ``rate``/s for ``duration`` s. Latencies (s) from each request's due time."""
    client = _Client(host, port, users, tracks, seed)
    arrivals = random.Random(seed + 1)
    due, t = [], 0.0
    while True:
        t += arrivals.expovariate(rate)
        if t >= duration:
            break
        due.append(t)
    idle: List[_Conn] = []
    queued: collections.deque = collections.deque()
    busy = 0
    i, start = 0, time.perf_counter()
    deadline = duration + drain_s
    try:
        while i < len(due) or busy or queued:
            now = time.perf_counter() - start
            if now > deadline:
                client.errors += busy + len(queued) + len(due) - i  # never answered
                break
            while i < len(due) and due[i] <= now:
                if idle:
                    client.send(idle.pop(), due[i])
                    busy += 1
                elif len(client.conns) < max_connections:
                    client.send(client.connect(), due[i])
                    busy += 1
                else:
                    queued.append(due[i])
                i += 1
            wait = min(max(due[i] - now, 0.0), 0.05) if i < len(due) else 0.05
            for key, _ in client.sel.select(wait):
                conn: _Conn = key.data
                try:
                    done = client.receive(conn, time.perf_counter() - start)
                except (ConnectionError, OSError, ValueError):
                    if conn in idle:  # the server closed a keep-alive connection between requests: no request lost
                        idle.remove(conn)
                        client.drop(conn, error=False)
                    else:
                        client.drop(conn)
                        busy -= 1
                    continue
                if done:
                    if not conn.reusable:
                        client.drop(conn, error=False)
                        conn = client.connect() if queued else None
                    if queued:
                        client.send(conn, queued.popleft())
                    else:
                        if conn is not None:
                            idle.append(conn)
                        busy -= 1
        return {"latencies": client.latencies, "errors": client.errors, "sent": len(due),
                "connections": len(client.conns), "offered": rate}
    finally:
        client.close()


def closed_loop(host: str, port: int, connections: int, duration: float, users: int, tracks: int,
                seed: int = 7) -> dict:
    """``connections`` keep-alive clients, each sending its next request when the last was answered."""
    client = _Client(host, port, users, tracks, seed)
    start = time.perf_counter()
    try:
        for _ in range(connections):
            client.send(client.connect(), 0.0)
        for conn in client.conns:
            conn.due = time.perf_counter() - start
        while True:
            now = time.perf_counter() - start
            if now >= duration:
                break
            for key, _ in client.sel.select(0.05):
                conn = key.data
                now = time.perf_counter() - start
                try:
                    done = client.receive(conn, now)
                except (ConnectionError, OSError, ValueError):
                    client.drop(conn)
                    client.send(client.connect(), now)
                    continue
                if done and not conn.reusable:
                    client.drop(conn, error=False)
                    conn = client.connect()
                if done and now < duration:
                    client.send(conn, now)
        return {"latencies": client.latencies, "errors": client.errors, "duration": duration}
    finally:
        client.close()


def percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
