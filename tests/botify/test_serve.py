"""`botify serve` end to end: gunicorn (gevent) workers, a private redis-server, keep-alive clients,
log rotation across workers, graceful shutdown, and the event log read back by the jobs' parser."""
import re
import socket
import subprocess
import sys
import threading

import pytest
import requests

from common.event_log_reader import count_reasons, parse_lines, read_lines
from common.experiments import assign
from tests.botify.conftest import TOKEN, v1_list
from testkit.served import botify_serve, serve_env

pytestmark = pytest.mark.slow  # gunicorn, 200+ requests and a Spark session: ~25 s


def post(base: str, user: int, session=None, **headers):
    resp = (session or requests).post(f"{base}/next/{user}", json={"track": 7, "time": 0.5}, headers=headers,
                                      timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def open_files_in_both_workers(base: str, log_dir) -> int:
    """Fresh connections until both workers have opened their log file; how many it took.

    The kernel, not gunicorn, picks which worker accepts a connection, so one worker may take everything;
    this makes "one file per worker" below a fact rather than a likelihood."""
    sent = 0
    while len(list(log_dir.glob("*.jsonl.open"))) < 2:
        assert sent < 500, "one gunicorn worker accepted 500 fresh connections in a row"
        post(base, sent % 40, Connection="close")
        sent += 1
    return sent


def keep_alive_clients(base: str) -> int:
    """8 keep-alive clients x 25 requests; all must be answered."""
    answered, lock = [0], threading.Lock()

    def client(users):
        with requests.Session() as s:
            for user in users:
                for _ in range(5):
                    post(base, user, s)
                    with lock:
                        answered[0] += 1

    threads = [threading.Thread(target=client, args=(range(i * 5, i * 5 + 5),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered[0]


def ranked_walk(base: str, user: int) -> list:
    with requests.Session() as s:
        s.post(f"{base}/last/{user}", json={"track": 1, "time": 1.0}, timeout=10)
        return [post(base, user, s)["track"] for _ in range(6)]


def assert_rotation_completes_one_file_per_worker(base: str, log_dir) -> None:
    resp = requests.post(f"{base}/admin/rotate-logs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert list(log_dir.glob("*.jsonl.open")) == []
    completed = sorted(log_dir.glob("*.jsonl"))
    assert {p.name for p in completed} == set(resp.json()["completed"])
    assert len({re.search(r"-(\d+)-\d+\.jsonl$", p.name)[1] for p in completed}) == 2


def assert_jobs_parse_every_line(spark, log_dir, expected: int) -> None:
    parsed = parse_lines(read_lines(spark, "file://" + str(log_dir) + "/*.jsonl"))
    assert count_reasons(parsed) == (expected, {})
    rows = parsed.select("user", "experiments").collect()
    assert all(r["experiments"] == {"AB": assign(r["user"], "AB", 2), "BASELINE": assign(r["user"], "BASELINE", 3)}
               for r in rows)


def test_serve_gunicorn_rotation_shutdown_and_log_contract(world, tmp_path, spark):
    log_dir = tmp_path / "logs" / "botify"
    with botify_serve(world, tmp_path, "--workers", "2", "--set", "event_log.poll_s=0.1") as (base, proc):
        warmup = open_files_in_both_workers(base, log_dir)
        assert keep_alive_clients(base) == 200
        # Ranked (AB T1) users walk their list across workers: session state is in Redis, not in a worker.
        t1_user = next(u for u in range(20) if assign(u, "AB", 2) == "T1")
        assert ranked_walk(base, t1_user) == v1_list(t1_user)[:6]
        assert_rotation_completes_one_file_per_worker(base, log_dir)
        assert_jobs_parse_every_line(spark, log_dir, warmup + 200 + 1 + 6)

        # the CLI, from the same working directory, completes files written after the first rotation
        post(base, 1)
        cli = subprocess.run([sys.executable, "-m", "botify", "rotate-logs"], cwd=tmp_path, env=serve_env(world),
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert list(log_dir.glob("*.jsonl.open")) == []
        post(base, 2)
        assert len(list(log_dir.glob("*.jsonl.open"))) == 1
    assert proc.returncode == 0
    # graceful shutdown completed the open file; nothing was lost
    assert list(log_dir.glob("*.jsonl.open")) == []
    assert sum(len(p.read_text().splitlines()) for p in log_dir.glob("*.jsonl")) == warmup + 200 + 1 + 6 + 2
    # the private redis-server went away with botify
    redis_url = re.search(r"started redis-server on 127\.0\.0\.1:(\d+)", (tmp_path / "serve.log").read_text())
    assert redis_url, (tmp_path / "serve.log").read_text()[-2000:]
    try:
        socket.create_connection(("127.0.0.1", int(redis_url[1])), timeout=1).close()
        still_up = True
    except OSError:
        still_up = False
    assert not still_up
