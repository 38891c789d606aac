"""A real Spark standalone cluster (master + workers on 127.0.0.1) started from pip's pyspark.

Used by tests to exercise the cluster path: code zip via --py-files, the packed
Python environment via --archives, executors in separate JVMs and Python
workers started from the unpacked archive. YARN itself cannot run here; these
are the mechanics it uses.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pyspark

from common.process_group import stop_group
from common.redis_server import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class StandaloneCluster:
    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port = free_port()
        self.ui_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="spark-standalone-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")
        full_env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
        proc = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> "StandaloneCluster":
        self._spawn("master", "org.apache.spark.deploy.master.Master",
                    "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port))
        _wait_port(self.port, 60)
        for i in range(self.workers):
            work = self.dir / f"worker{i}"
            work.mkdir()
            self._spawn(f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.master_url,
                        "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                        "--work-dir", str(work), "--webui-port", str(free_port()),
                        env={"SPARK_WORKER_DIR": str(work)})
        self._wait_workers(60)
        return self

    def _wait_workers(self, timeout: float) -> None:
        import json
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as resp:
                    state = json.load(resp)
                if sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE") >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.workers} workers did not register; logs in {self.dir}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers before their master
            stop_group(proc, timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)
