"""`botify serve` end to end: gunicorn (gevent) workers, a private redis-server, keep-alive clients,
log rotation across workers, graceful shutdown, and the event log read back by the jobs' parser."""
import re
import signal
import socket
import subprocess
import sys
import threading

import requests

from common.event_log import count_reasons, parse_lines, read_lines
from common.experiments import assign
from common.redis_server import free_port
from tests.botify.conftest import TOKEN, v1_list
from tests.botify.served import serve_env, wait_until_up


def test_serve_gunicorn_rotation_shutdown_and_log_contract(world, tmp_path, spark):
    port = free_port()
    env = serve_env(world)
    stderr_path = tmp_path / "serve.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "botify", "serve", "--port", str(port), "--workers", "2",
             "--set", "event_log.poll_s=0.1"],
            cwd=tmp_path, env=env, stdout=stderr, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    log_dir = tmp_path / "logs" / "botify"
    try:
        wait_until_up(base, proc)
        # The kernel, not gunicorn, picks which worker accepts a connection, so one worker may take
        # everything; fresh connections until both have opened their log file make "one file per
        # worker" below a fact rather than a likelihood.
        warmup = 0
        while len(list(log_dir.glob("*.jsonl.open"))) < 2:
            assert warmup < 500, "one gunicorn worker accepted 500 fresh connections in a row"
            resp = requests.post(f"{base}/next/{warmup % 40}", json={"track": 7, "time": 0.5},
                                 headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200, resp.text
            warmup += 1
        errors, count = [], [0]
        lock = threading.Lock()

        def client(users):
            with requests.Session() as s:  # keep-alive through gunicorn's workers
                for user in users:
                    for _ in range(5):
                        resp = s.post(f"{base}/next/{user}", json={"track": 7, "time": 0.5}, timeout=10)
                        if resp.status_code != 200:
                            errors.append(resp.text)
                        with lock:
                            count[0] += 1

        threads = [threading.Thread(target=client, args=(range(i * 5, i * 5 + 5),)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and count[0] == 200
        # Ranked (AB T1) users walk their list across workers: session state is in Redis, not in a worker.
        t1_user = next(u for u in range(20) if assign(u, "AB", 2) == "T1")
        with requests.Session() as s:
            s.post(f"{base}/last/{t1_user}", json={"track": 1, "time": 1.0}, timeout=10)
            walked = [s.post(f"{base}/next/{t1_user}", json={"track": 7, "time": 0.5}, timeout=10).json()["track"]
                      for _ in range(6)]
        assert walked == v1_list(t1_user)[:6]

        resp = requests.post(f"{base}/admin/rotate-logs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert list(log_dir.glob("*.jsonl.open")) == []
        completed = sorted(log_dir.glob("*.jsonl"))
        assert {p.name for p in completed} == set(resp.json()["completed"])
        assert len({re.search(r"-(\d+)-\d+\.jsonl$", p.name)[1] for p in completed}) == 2  # one file per worker

        parsed = parse_lines(read_lines(spark, "file://" + str(log_dir) + "/*.jsonl"))
        total, malformed = count_reasons(parsed)
        assert (total, malformed) == (warmup + 200 + 1 + 6, {})
        rows = parsed.select("user", "experiments").collect()
        assert all(r["experiments"] == {"AB": assign(r["user"], "AB", 2), "BASELINE": assign(r["user"], "BASELINE", 3)}
                   for r in rows)

        # the CLI, from the same working directory, completes files written after the first rotation
        requests.post(f"{base}/next/1", json={"track": 7, "time": 0.5}, timeout=10)
        cli = subprocess.run([sys.executable, "-m", "botify", "rotate-logs"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert list(log_dir.glob("*.jsonl.open")) == []

        requests.post(f"{base}/next/2", json={"track": 7, "time": 0.5}, timeout=10)
        assert len(list(log_dir.glob("*.jsonl.open"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    # graceful shutdown completed the open file; nothing was lost
    assert list(log_dir.glob("*.jsonl.open")) == []
    lines = sum(len(p.read_text().splitlines()) for p in log_dir.glob("*.jsonl"))
    assert lines == warmup + 200 + 1 + 6 + 2
    # the private redis-server went away with botify
    redis_url = re.search(r"private redis-server at redis://127\.0\.0\.1:(\d+)", stderr_path.read_text())
    assert redis_url, stderr_path.read_text()[-2000:]
    try:
        socket.create_connection(("127.0.0.1", int(redis_url[1])), timeout=1).close()
        still_up = True
    except OSError:
        still_up = False
    assert not still_up
