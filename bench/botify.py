"""Benchmark botify's /next: gunicorn (the production server) against Flask's development server
and, when its directory is given, the course's botify.

For each concurrency (default 1, 8 and 64 keep-alive connections) wrk (when on
PATH; else a load generator of Python threads in two processes) posts /next for
random users and catalog tracks for --duration seconds over loopback, counting
errors and non-200 answers; then the baselines take the same load. botify and
its development server serve the AB experiment (StickyArtist / Ranked) from
the same real Redis and artifacts. Prints one line: req/s, p50, p99, errors and CPU
milliseconds per answered request (the server's processes + Redis: the figure a
busy machine distorts least; then the load generator's, which shares the cores)
per concurrency for each server, the req/s ratio to each baseline, and the load
average (the machine is shared). With several worker processes, ``conns`` is how
the open connections were shared between them halfway through the level: the
workers get the same CPU, so a fuller worker's connections wait longer.

    .venv/bin/python bench/botify.py [--duration 30] [--concurrency 1,8,64] [--set server.workers=2 ...]
        [--course DIR [--course-python PY]]

--course DIR: the course's botify (the directory holding its server.py and
config.json) is started as ``PY -m gunicorn --chdir DIR -k gevent server:app``
with as many workers as botify; its config.json must reach a running Redis
(the course's server loads its data at start). Its data differs from ours, so
its figures say what its request path costs, not what it recommends.

--mode open: latency as services are judged (``bench/http_load.py``). Each
server's saturation throughput is measured first (32 closed-loop connections),
then requests arrive open-loop (Poisson) at 25%, 50% and 75% of it, latency
counted from each request's due time; p50/p99/p99.9 per level, for botify and
the development server in the same run.

    .venv/bin/python bench/botify.py --mode open [--duration 20]

--mode paths: the same /next closed-loop at --concurrency (default 8) on
botify variants started side by side and measured in turns (--rounds), each
variant's median: as shipped (private-Redis unix socket, hiredis, metrics on,
connections balanced between workers) against metrics off, Redis over TCP,
redis-py's Python reply parser, and gunicorn's stock gevent worker.

    .venv/bin/python bench/botify.py --mode paths [--duration 10 --rounds 3 --variants ...]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.process_group import stop_group  # noqa: E402


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


WRK_SCRIPT = """
math.randomseed(%(seed)d)
request = function()
  local body = string.format('{"track": %%d, "time": %%.3f}', math.random(0, %(tracks)d - 1), math.random())
  return wrk.format("POST", "/next/" .. math.random(0, %(users)d - 1), {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_wrk(port: int, concurrency: int, duration: float, users: int, tracks: int, tmp: Path) -> dict:
    """wrk, one thread (it needs little CPU, and the 2 cores are the server's), ``concurrency`` connections."""
    script = tmp / "next.lua"
    script.write_text(WRK_SCRIPT % {"seed": 7, "users": users, "tracks": tracks})
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{duration:.0f}s", "--timeout", "10s", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    result = json.loads(out[out.index("WRK ") + 4:].splitlines()[0])
    # Every request counts: wrk's "errors" include non-2xx answers (status) besides socket errors.
    return {"rps": (result["requests"] - result["errors"]) / (result["duration_us"] / 1e6),
            "p50": result["p50_us"] / 1000, "p99": result["p99_us"] / 1000, "errors": result["errors"]}


def run_threads(port: int, concurrency: int, duration: float, users: int, tracks: int, tmp: Path) -> dict:
    """Without wrk: ``concurrency`` connections spread over load processes separate from the server."""
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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants (gunicorn's workers)."""
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, grew = {pid}, True
    while grew:
        children = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(cpu.get(p, 0.0) for p in tree)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def connections_per_worker(server_pid: int, port: int) -> list:
    """Established connections to ``port`` held by each child process of ``server_pid``, largest first."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = [line.split() for line in fh.readlines()[1:]]
        except OSError:
            continue
        established |= {row[9] for row in rows if row[3] == "01" and int(row[1].rsplit(":", 1)[1], 16) == port}
    counts = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if not entry.isdigit() or int(fh.read().rsplit(")", 1)[1].split()[1]) != server_pid:
                    continue
            fds = os.listdir(f"/proc/{entry}/fd")
            inodes = {os.readlink(f"/proc/{entry}/fd/{fd}")[8:-1] for fd in fds}
        except OSError:
            continue
        counts.append(len(inodes & established))
    return sorted((c for c in counts if c), reverse=True)


def measured(load, proc_pid: int, redis_pid: int, *args) -> dict:
    """``load(*args)`` plus the server's and Redis' CPU time per answered request, which a busy machine
    distorts far less than req/s, the load generator's, and how the server's workers shared the connections
    halfway through."""
    port, duration = args[0], args[2]
    share = []
    sampler = threading.Timer(duration / 2, lambda: share.extend(connections_per_worker(proc_pid, port)))
    sampler.start()
    before = tree_cpu_s(proc_pid), tree_cpu_s(redis_pid), children_cpu_s()
    result = load(*args)
    after = tree_cpu_s(proc_pid), tree_cpu_s(redis_pid), children_cpu_s()
    sampler.join()
    answered = max(result["rps"] * duration, 1)
    return {**result, "cpu_ms": (after[0] - before[0]) * 1000 / answered,
            "redis_cpu_ms": (after[1] - before[1]) * 1000 / answered,
            "load_cpu_ms": (after[2] - before[2]) * 1000 / answered, "share": share}


# botify's gevent workers log this once up; connections opened before a worker is up all go to the others
WORKER_UP = b"takes connections in turn"


def start_server(argv: list, env: dict, port: int, log_path: Path, cwd: Path, workers_up: int = 0,
                 ready_path: str = "/readyz") -> subprocess.Popen:
    """Start ``argv`` and wait until ``ready_path`` answers 200 on ``port`` (``None``: any answer, for the course's
    botify) and, with ``workers_up``, until that many workers logged ``WORKER_UP``."""
    import requests

    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    answered = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[:4]} exited ({proc.returncode}); see {log_path}")
        try:
            resp = requests.get(f"http://127.0.0.1:{port}{ready_path or '/'}", timeout=1)
            answered = answered or ready_path is None or resp.status_code == 200
        except requests.RequestException:
            pass
        if answered and log_path.read_bytes()[start:].count(WORKER_UP) >= workers_up:
            return proc
        time.sleep(0.3)
    stop_group(proc)
    raise RuntimeError(f"{argv[:4]} did not come up; see {log_path}")


def botify_argv(port: int, *args: str) -> list:
    return [sys.executable, "-m", "botify", "serve", "--port", str(port), *args]


def stop_server(proc: subprocess.Popen) -> None:
    stop_group(proc, timeout=60)


def fmt(r: dict) -> str:
    share = f" conns {'/'.join(map(str, r['share']))}" if len(r["share"]) > 1 else ""
    return (f"{r['rps']:,.0f} req/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms err {r['errors']} "
            f"cpu/req {r['cpu_ms']:.2f}+{r['redis_cpu_ms']:.2f} ms (load generator {r['load_cpu_ms']:.2f}){share}")


def redis_server_pid(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("server")["process_id"])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level (default 30)")
    parser.add_argument("--concurrency", default="1,8,64", help="comma list of connection counts")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="botify serve --set for the measured botify (e.g. server.worker_class=gthread)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--tracks", type=int, default=20000)
    parser.add_argument("--course", type=Path, help="the course's botify directory (server.py, config.json)")
    parser.add_argument("--course-python", default=sys.executable, help="python with the course's requirements")
    parser.add_argument("--no-dev", action="store_true", help="skip the development-server baseline")
    parser.add_argument("--mode", choices=("closed", "open", "paths"), default="closed",
                        help="closed: fixed connections (default); open: Poisson arrivals at 25/50/75%% of saturation;"
                             " paths: botify variants (metrics, Redis transport, parser, worker) in turns")
    parser.add_argument("--rounds", type=int, default=3, help="--mode paths: turns per variant (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="--mode paths: comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--load", nargs=5, metavar=("HOST:PORT", "N", "DURATION", "USERS", "TRACKS"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.load:
        host, port = args.load[0].rsplit(":", 1)
        result = load_worker(host, int(port), int(args.load[1]), float(args.load[2]), int(args.load[3]),
                             int(args.load[4]))
        json.dump(result, sys.stdout)
        return 0

    if args.mode != "closed":
        return bench_open(args) if args.mode == "open" else bench_paths(args)
    from common.redis_server import RedisServer, free_port
    from botify.settings import load_settings
    from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

    levels = [int(c) for c in args.concurrency.split(",")]
    load = run_wrk if shutil.which("wrk") else run_threads
    rng = random.Random(7)
    sets = [a for o in args.overrides for a in ("--set", o)]
    loadavg = []
    with tempfile.TemporaryDirectory(prefix="bench-botify-") as tmp, RedisServer() as redis_url:
        redis_pid = redis_server_pid(redis_url)
        tmp = Path(tmp)
        root = "file://" + str(tmp) + "/warehouse"
        write_catalog(root, catalog_rows(args.tracks, args.tracks // 20))
        pool = list(range(args.tracks))
        write_recommendations(root, "bench", {u: rng.sample(pool, 50) for u in range(args.users)}, pool[:100])
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
        env.update(REDIS_URL=redis_url, BOTIFY_STORAGE_ROOT=root, BOTIFY_EXPERIMENTS="AB",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        server = load_settings(args.overrides, env=env)["server"]
        label = f"botify {server['workers']}w {server['worker_class']}" + (
            f" x {server['threads']}t" if server["worker_class"] == "gthread" else "")
        servers = {label: lambda port: botify_argv(port, *sets)}
        if not args.no_dev:
            servers["flask dev server"] = lambda port: botify_argv(port, *sets, "--dev")
        if args.course:
            servers["course botify"] = lambda port: [
                args.course_python, "-m", "gunicorn", "--chdir", str(args.course), "-k", "gevent",
                "-w", str(server["workers"]), "-b", f"127.0.0.1:{port}", "server:app"]
        results = {}
        for name, make_argv in servers.items():
            port = free_port()
            balanced = name == label and server["worker_class"] == "gevent"
            proc = start_server(make_argv(port), env, port, tmp / f"{len(results)}.log", tmp,
                                workers_up=int(server["workers"]) if balanced else 0,
                                ready_path=None if name == "course botify" else "/readyz")
            try:
                for c in levels:
                    results[name, c] = measured(load, proc.pid, redis_pid, port, c, args.duration, args.users,
                                                args.tracks, tmp)
                    loadavg.append(os.getloadavg()[0])
            finally:
                stop_server(proc)
    parts = [f"{name}: " + " | ".join(f"c={c} {fmt(results[name, c])}" for c in levels) for name in servers]
    for base in list(servers)[1:]:
        parts.append(f"req/s ratio botify/{base}: " + " ".join(
            f"c={c} {results[label, c]['rps'] / max(results[base, c]['rps'], 1e-9):.2f}x" for c in levels))
    print(f"botify /next AB, {load.__name__[4:]} {args.duration:.0f}s/level, loopback, {os.cpu_count()} shared cores, "
          f"load average {min(loadavg):.1f}-{max(loadavg):.1f}: " + " || ".join(parts))
    return 0


# --mode paths: what each variant changes against botify as shipped
VARIANTS = {
    "shipped": {},
    "metrics-off": {"sets": ["metrics.enabled=false"]},
    "redis-tcp": {"redis": "tcp"},
    "python-parser": {"pythonpath": str(REPO / "bench" / "no_hiredis")},
    "stock-worker": {"argv0": str(REPO / "bench" / "botify_stock_worker.py")},
}


@contextlib.contextmanager
def bench_world(args):
    """A warehouse (20,000 tracks, 2,000 users' lists), a real Redis, and the environment botify runs in."""
    from common.redis_server import RedisServer
    from testkit.artifacts import catalog_rows, write_catalog, write_recommendations

    rng = random.Random(7)
    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-botify-") as tmp:
            tmp = Path(tmp)
            root = "file://" + str(tmp) + "/warehouse"
            write_catalog(root, catalog_rows(args.tracks, args.tracks // 20))
            pool = list(range(args.tracks))
            write_recommendations(root, "bench", {u: rng.sample(pool, 50) for u in range(args.users)}, pool[:100])
            env = {k: v for k, v in os.environ.items() if not k.startswith("BOTIFY_")}
            # as `botify serve` talks to its private Redis: over the unix socket
            env.update(REDIS_URL=server.unix_url, BOTIFY_STORAGE_ROOT=root, BOTIFY_EXPERIMENTS="AB",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
            yield tmp, env, server
    finally:
        server.stop()


def botify_label(args, env) -> tuple:
    from botify.settings import load_settings

    server = load_settings(args.overrides, env=env)["server"]
    return f"botify {server['workers']}w {server['worker_class']}", int(server["workers"])


def level_figures(result: dict, seconds: float) -> dict:
    from bench.http_load import percentile

    lat = result["latencies"]
    return {"rps": len(lat) / seconds, "errors": result["errors"],
            **{k: (percentile(lat, q) or float("nan")) * 1000 for k, q in (("p50", .5), ("p99", .99), ("p999", .999))}}


def bench_open(args) -> int:
    from bench.http_load import closed_loop, open_loop
    from common.redis_server import free_port

    sets = [a for o in args.overrides for a in ("--set", o)]
    fractions = (0.25, 0.5, 0.75)
    loadavg, lines, figures = [], [], {}
    with bench_world(args) as (tmp, env, redis_server):
        label, workers = botify_label(args, env)
        servers = {label: sets, "flask dev server": [*sets, "--dev"]}
        for name, extra in servers.items():
            port = free_port()
            proc = start_server(botify_argv(port, *extra), env, port, tmp / f"{len(figures)}.log", tmp,
                                workers_up=workers if name == label else 0)
            try:
                closed_loop("127.0.0.1", port, 8, 2.0, args.users, args.tracks)  # warm up every worker
                sat = closed_loop("127.0.0.1", port, 32, args.duration / 2, args.users, args.tracks)
                saturation = len(sat["latencies"]) / sat["duration"]
                parts = [f"saturation {saturation:,.0f} req/s (32 conns)"]
                for frac in fractions:
                    result = open_loop("127.0.0.1", port, frac * saturation, args.duration, args.users, args.tracks)
                    f = figures[name, frac] = level_figures(result, args.duration)
                    loadavg.append(os.getloadavg()[0])
                    parts.append(f"{frac:.0%} ({frac * saturation:,.0f} req/s offered, {f['rps']:,.0f} answered) "
                                 f"p50 {f['p50']:.2f} p99 {f['p99']:.2f} p99.9 {f['p999']:.2f} ms err {f['errors']} "
                                 f"conns {result['connections']}")
                figures[name, "sat"] = saturation
                lines.append(f"{name}: " + " | ".join(parts))
            finally:
                stop_server(proc)
    base = "flask dev server"
    ratio = (f"botify/{base}: saturation {figures[label, 'sat'] / figures[base, 'sat']:.2f}x, p99 at 50% "
             f"{figures[label, 0.5]['p99'] / figures[base, 0.5]['p99']:.2f}x; botify p99 at 50% "
             f"{figures[label, 0.5]['p99']:.2f} ms (target <= 10 ms)")
    print(f"botify /next AB open loop (Poisson arrivals, latency from the due time), {args.duration:.0f}s/level, "
          f"loopback, {os.cpu_count()} shared cores, load average {min(loadavg):.1f}-{max(loadavg):.1f}: "
          + " || ".join(lines) + " || " + ratio)
    return 0


def bench_paths(args) -> int:
    from bench.http_load import closed_loop
    from common.redis_server import free_port

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown or "shipped" not in names:
        raise SystemExit(f"--variants: known {', '.join(VARIANTS)}, 'shipped' included (got {args.variants})")
    levels = [int(c) for c in args.concurrency.split(",")] if args.concurrency != "1,8,64" else [8]
    sets = [a for o in args.overrides for a in ("--set", o)]
    runs = collections.defaultdict(list)
    loadavg = []
    with bench_world(args) as (tmp, env, redis_server):
        label, workers = botify_label(args, env)
        redis_pid = redis_server_pid(redis_server.url)
        procs = {}
        try:
            for name in names:
                v = VARIANTS[name]
                port = free_port()
                argv = [sys.executable, v.get("argv0", "-m"), *([] if "argv0" in v else ["botify"]), "serve",
                        "--port", str(port), *sets, *[a for o in v.get("sets", []) for a in ("--set", o)]]
                venv = dict(env)
                if v.get("redis") == "tcp":
                    venv["REDIS_URL"] = redis_server.url
                if v.get("pythonpath"):
                    venv["PYTHONPATH"] = v["pythonpath"] + os.pathsep + env["PYTHONPATH"]
                procs[name] = (start_server(argv, venv, port, tmp / f"{name}.log", tmp,
                                            workers_up=0 if name == "stock-worker" else workers), port)
                closed_loop("127.0.0.1", port, 8, 2.0, args.users, args.tracks)  # every worker up and warm
            for _ in range(args.rounds):
                for c in levels:
                    for name in names:
                        proc, port = procs[name]
                        before = tree_cpu_s(proc.pid) + tree_cpu_s(redis_pid)
                        result = closed_loop("127.0.0.1", port, c, args.duration, args.users, args.tracks)
                        cpu = tree_cpu_s(proc.pid) + tree_cpu_s(redis_pid) - before
                        f = level_figures(result, args.duration)
                        f["cpu_ms"] = cpu * 1000 / max(len(result["latencies"]), 1)
                        runs[name, c].append(f)
                        loadavg.append(os.getloadavg()[0])
        finally:
            for proc, _ in procs.values():
                stop_server(proc)

    def median(name, c, key):
        return statistics.median(r[key] for r in runs[name, c])

    parts = []
    for name in names:
        parts.append(f"{name}: " + " | ".join(
            f"c={c} {median(name, c, 'rps'):,.0f} req/s p50 {median(name, c, 'p50'):.2f} p99 {median(name, c, 'p99'):.2f}"
            f" ms cpu/req {median(name, c, 'cpu_ms'):.3f} ms err {sum(r['errors'] for r in runs[name, c])}"
            + ("" if name == "shipped" else f" ({median(name, c, 'rps') / median('shipped', c, 'rps'):.2f}x req/s, "
                                            f"{median(name, c, 'cpu_ms') / median('shipped', c, 'cpu_ms'):.2f}x cpu)")
            for c in levels))
    print(f"{label} /next AB paths, closed loop {args.duration:.0f}s x {args.rounds} rounds in turns (medians), "
          f"loopback, {os.cpu_count()} shared cores, load average {min(loadavg):.1f}-{max(loadavg):.1f}, ratios "
          f"against shipped (unix socket, hiredis, metrics on, balanced worker): " + " || ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
