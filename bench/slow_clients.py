"""Benchmark: do slow or idle clients starve botify? Normal /next latency with 40 stalled connections held open.

For each gunicorn worker class (default: gevent, the shipped one, and gthread, the previous one) `botify
serve` is started with conf/botify.yml's settings; 8 client threads post /next on fresh connections
(--requests each, 5 s timeout, a client gives up after 2 timeouts in a row) - first alone (the baseline),
then while 40 sockets sit open having sent nothing, part of a request line, or headers without their end.
Prints one line: per worker class, answered/attempted, p50 and p99 (a timed-out request counts as
infinitely slow) in both phases, and the p99 ratio stalled/baseline.

    .venv/bin/python bench/slow_clients.py [--requests 25] [--idle 40] [--worker-classes gevent,gthread]
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.botify import botify_argv, start_server, stop_server  # noqa: E402


def normal_clients(port: int, clients: int, requests: int) -> dict:
    """Latencies of ``clients`` x ``requests`` /next calls; a timed-out or wrong answer counts as infinitely slow."""
    latencies, lock = [], threading.Lock()

    def client(c: int):
        mine, timeouts_in_a_row = [], 0
        for i in range(requests):
            if timeouts_in_a_row == 2:
                break
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            start = time.perf_counter()
            try:
                conn.request("POST", f"/next/{c * requests + i}", json.dumps({"track": 7, "time": 0.5}),
                             {"Content-Type": "application/json", "Connection": "close"})
                resp = conn.getresponse()
                ok = resp.status == 200 and json.loads(resp.read())["user"] == c * requests + i
                timeouts_in_a_row = 0
                mine.append(time.perf_counter() - start if ok else math.inf)
            except (socket.timeout, TimeoutError):
                timeouts_in_a_row += 1
                mine.append(math.inf)
            except (OSError, http.client.HTTPException):
                mine.append(math.inf)
            finally:
                conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else math.nan

    answered = sum(1 for t in latencies if t < math.inf)
    return {"answered": answered, "attempted": len(latencies), "p50": pct(0.5), "p99": pct(0.99)}


def fmt(r: dict) -> str:
    p50, p99 = (f"{v:.1f} ms" if v < math.inf else "timeout (5 s)" for v in (r["p50"], r["p99"]))
    return f"{r['answered']}/{r['attempted']} answered p50 {p50} p99 {p99}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=25, help="requests per client thread (8 threads)")
    parser.add_argument("--idle", type=int, default=40, help="stalled connections held open")
    parser.add_argument("--worker-classes", default="gevent,gthread")
    args = parser.parse_args(argv)

    from common.redis_server import RedisServer, free_port
    from botify.settings import load_settings
    from testkit.served import idle_connections
    from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

    parts = []
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp, RedisServer() as redis_url:
        root = "file://" + tmp + "/warehouse"
        write_catalog(root, catalog_rows(300, 30))
        write_recommendations(root, "bench", {u: list(range(u % 250, u % 250 + 50)) for u in range(200)},
                              list(range(100)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
        env.update(REDIS_URL=redis_url, BOTIFY_STORAGE_ROOT=root, BOTIFY_EXPERIMENTS="AB", PYTHONPATH=str(REPO))
        server = load_settings(env=env)["server"]
        for worker_class in args.worker_classes.split(","):
            port = free_port()
            proc = start_server(botify_argv(port, "--set", f"server.worker_class={worker_class}"), env, port,
                                Path(tmp) / f"{worker_class}.log", Path(tmp))
            try:
                base = normal_clients(port, 8, args.requests)
                with idle_connections("127.0.0.1", port, args.idle):
                    stalled = normal_clients(port, 8, args.requests)
            finally:
                stop_server(proc)
            ratio = stalled["p99"] / base["p99"]
            parts.append(f"{worker_class}: alone {fmt(base)} | with {args.idle} stalled {fmt(stalled)} | "
                         f"p99 ratio stalled/alone {ratio:.2f}x")
    print(f"botify /next, 8 clients x {args.requests} fresh connections, {server['workers']} workers "
          f"({server['threads']} threads for gthread), {os.cpu_count()} shared cores: " + " || ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
