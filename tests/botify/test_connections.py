"""How `botify serve` shares connections between its workers: a listening socket per worker (the kernel
spreads new connections over them), a replaced worker listening too, and the port still refused to a second
server."""
import collections
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.botify.served import botify_serve, serve_env

pytestmark = pytest.mark.slow  # four `botify serve` processes (gunicorn, redis-server): ~15 s


def post_next(conn: http.client.HTTPConnection, user: int) -> http.client.HTTPResponse:
    conn.request("POST", f"/next/{user}", json.dumps({"track": 7, "time": 0.5}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 200 and body["user"] == user, body
    return resp


def lines_per_worker(log_dir) -> collections.Counter:
    """Event log lines per worker pid (each worker writes its own file, the pid in its name)."""
    counts = collections.Counter()
    for path in log_dir.glob("events-*.jsonl*"):
        counts[path.name.split("-")[-2]] += len(path.read_text().splitlines())
    return counts


def test_connections_opened_at_once_are_all_answered_and_spread_over_both_workers(world, tmp_path):
    log_dir = tmp_path / "logs" / "botify"
    with botify_serve(world, tmp_path, "--workers", "2") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=15) for _ in range(32)]
        for conn in conns:  # all connected before any request: a burst
            conn.connect()
        errors = []

        def client(conn, user):
            try:
                for _ in range(3):
                    post_next(conn, user)
            except Exception as exc:  # a connection the kernel queued where no worker accepts times out here
                errors.append(repr(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(conn, user)) for user, conn in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    # The kernel's pick is a hash of each connection's addresses: all 32 on one worker has odds of 2**-31, while
    # with the shared socket of plain gunicorn the worker awake first could take the whole burst.
    counts = lines_per_worker(log_dir)
    assert sum(counts.values()) == 32 * 3 and len(counts) == 2 and min(counts.values()) > 0, counts


def test_a_second_server_on_the_same_port_is_refused_and_the_first_keeps_serving(world, tmp_path):
    with botify_serve(world, tmp_path, "--workers", "2") as (base, proc):
        port = base.rsplit(":", 1)[1]
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        second = subprocess.run([sys.executable, "-m", "botify", "serve", "--port", port, "--workers", "2"],
                                cwd=second_dir, env=serve_env(world), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert proc.poll() is None
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=15)
        for user in range(20):
            post_next(conn, user)
        conn.close()
    # every answer came from the first server's workers
    assert sum(lines_per_worker(tmp_path / "logs" / "botify").values()) == 20
    assert not (second_dir / "logs").exists() or sum(lines_per_worker(second_dir / "logs" / "botify").values()) == 0


def worker_pids(arbiter_pid: int) -> set:
    """gunicorn's workers: the children of `botify serve` other than its private redis-server."""
    pids = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                redis = b"redis-server" in fh.read()
        except OSError:
            continue
        if parent == arbiter_pid and not redis:
            pids.add(int(entry))
    return pids


def test_a_killed_worker_is_replaced_and_its_replacement_listens_too(world, tmp_path):
    log_dir = tmp_path / "logs" / "botify"
    with botify_serve(world, tmp_path, "--workers", "2") as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        before = worker_pids(proc.pid)
        assert len(before) == 2, before
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(worker_pids(proc.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        (replacement,) = worker_pids(proc.pid) - before
        for user in range(200):  # fresh connections, until the replacement has answered some
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            post_next(conn, user)
            conn.close()
            if lines_per_worker(log_dir)[str(replacement)] >= 5:
                break
        assert lines_per_worker(log_dir)[str(replacement)] >= 5, lines_per_worker(log_dir)
