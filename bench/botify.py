"""Benchmark botify's /next: gunicorn (the production server) against Flask's development server.

For each concurrency (default 1, 8 and 64 keep-alive connections) a load
generator in separate processes (threads with http.client keep-alive
connections) posts /next for random users for --duration seconds, counting
errors; then the same app under Flask's single-threaded development server
takes the same load. Both serve the AB experiment (StickyArtist / Ranked) from
the same real Redis and artifacts. Prints one line: req/s, p50, p99 and errors
per concurrency for both, and the req/s ratio gunicorn / development server.

    .venv/bin/python bench/botify.py [--duration 30] [--concurrency 1,8,64]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def load_worker(host: str, port: int, connections: int, duration: float, users: int, tracks: int) -> dict:
    """Run ``connections`` keep-alive clients for ``duration`` seconds; latencies in seconds."""
    deadline = time.monotonic() + duration
    latencies, errors, lock = [], [0], threading.Lock()

    def client(seed: int):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, port, timeout=60)
        mine, bad = [], 0
        while time.monotonic() < deadline:
            body = json.dumps({"track": rng.randrange(tracks), "time": rng.random()})
            start = time.perf_counter()
            try:
                if conn.sock is None:
                    # Like sim's client: small request/response pairs must not wait on Nagle + delayed ACK.
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request("POST", f"/next/{rng.randrange(users)}", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    bad += 1
                else:
                    mine.append(time.perf_counter() - start)
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(os.getpid() * 1000 + i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors[0]}


def run_load(port: int, concurrency: int, duration: float, users: int, tracks: int) -> dict:
    """Spread ``concurrency`` connections over load processes separate from the server."""
    procs = 1 if concurrency == 1 else 2
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--load", f"127.0.0.1:{port}", str(n), str(duration), str(users), str(tracks)],
            stdout=subprocess.PIPE,
        )
        for n in shares
    ]
    latencies, errors = [], 0
    for child in children:
        out, _ = child.communicate()
        result = json.loads(out)
        latencies += result["latencies"]
        errors += result["errors"]
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"rps": len(latencies) / duration, "p50": pct(0.50), "p99": pct(0.99), "errors": errors}


def start_server(args: list, env: dict, port: int, log_path: Path) -> subprocess.Popen:
    import requests

    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "botify", "serve", "--port", str(port), *args],
                                cwd=log_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"botify serve exited ({proc.returncode}); see {log_path}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"botify serve did not come up; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fmt(r: dict) -> str:
    return f"{r['rps']:.0f} req/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms err {r['errors']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level (default 30)")
    parser.add_argument("--concurrency", default="1,8,64", help="comma list of connection counts")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: conf/botify.yml)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--tracks", type=int, default=20000)
    parser.add_argument("--load", nargs=5, metavar=("HOST:PORT", "N", "DURATION", "USERS", "TRACKS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        host, port = args.load[0].rsplit(":", 1)
        result = load_worker(host, int(port), int(args.load[1]), float(args.load[2]), int(args.load[3]),
                             int(args.load[4]))
        json.dump(result, sys.stdout)
        return 0

    from common.redis_server import RedisServer, free_port
    from botify.settings import load_settings
    from tests.botify.warehouse import catalog_rows, write_catalog, write_recommendations

    levels = [int(c) for c in args.concurrency.split(",")]
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-botify-") as tmp, RedisServer() as redis_url:
        root = "file://" + tmp + "/warehouse"
        write_catalog(root, catalog_rows(args.tracks, args.tracks // 20))
        pool = list(range(args.tracks))
        write_recommendations(root, "bench", {u: rng.sample(pool, 50) for u in range(args.users)}, pool[:100])
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
        env.update(REDIS_URL=redis_url, BOTIFY_STORAGE_ROOT=root, BOTIFY_EXPERIMENTS="AB", PYTHONPATH=str(REPO))
        server = load_settings(env=env)["server"]
        workers = args.workers or server["workers"]
        results = {}
        for name, extra in (("gunicorn", ["--workers", str(workers)]), ("dev", ["--dev"])):
            port = free_port()
            proc = start_server(extra, env, port, Path(tmp) / f"{name}.log")
            try:
                for c in levels:
                    results[name, c] = run_load(port, c, args.duration, args.users, args.tracks)
            finally:
                stop_server(proc)
    gun = " | ".join(f"c={c} {fmt(results['gunicorn', c])}" for c in levels)
    dev = " | ".join(f"c={c} {fmt(results['dev', c])}" for c in levels)
    ratios = " ".join(f"c={c} {results['gunicorn', c]['rps'] / max(results['dev', c]['rps'], 1e-9):.2f}x"
                      for c in levels)
    print(f"botify /next AB {args.duration:.0f}s/level loopback, {os.cpu_count()} shared cores: "
          f"gunicorn {workers}w x {server['threads']}t {server['worker_class']}: {gun} || "
          f"flask dev server (baseline): {dev} || req/s ratio gunicorn/dev: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
