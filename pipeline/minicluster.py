"""botify-minicluster: a real single-host Hadoop (HDFS + YARN) for the tests and the demo.

    botify-minicluster [--dir DIR] [--nm-memory-mb 8192] [--nm-vcores 4]

Hadoop's own servers (NameNode, DataNode, ResourceManager, NodeManager) from
the pinned Hadoop release on Maven Central, started by the small launcher in
``hadoop/`` (built with Maven on first use; its jars stay in ``~/.m2``). It
writes a ``HADOOP_CONF_DIR`` under DIR, prints the lines to export, and runs
until Ctrl-C or SIGTERM. Every server listens on 127.0.0.1 only.

Tests and ``botify-demo --cluster yarn`` use :class:`MiniCluster` directly.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Optional, Sequence

from pipeline.processes import REPO

log = logging.getLogger("minicluster")

LAUNCHER = REPO / "hadoop"
MAIN_CLASS = "botify.minicluster.MiniCluster"
# Hadoop 3.4's web apps build Guice proxies with cglib, which Java 17 forbids without these opens.
JAVA_OPENS = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.io", "java.net", "java.nio",
    "sun.nio.ch")]


class MiniClusterError(RuntimeError):
    """The mini cluster could not be built or did not come up."""


def java_home() -> str:
    """JAVA_HOME for the NodeManager's containers (YARN starts ``$JAVA_HOME/bin/java``)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise MiniClusterError("Java not found: Hadoop needs Java 17 on PATH (or JAVA_HOME set)")
    return str(Path(java).resolve().parent.parent)


def build_launcher() -> str:
    """Compile the launcher and return its class path; Maven runs only when the sources changed."""
    target = LAUNCHER / "target"
    classpath_file = target / "classpath.txt"
    sources = [LAUNCHER / "pom.xml", *sorted((LAUNCHER / "src").rglob("*"))]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    if not classpath_file.exists() or classpath_file.stat().st_mtime < newest:
        mvn = shutil.which("mvn")
        if not mvn:
            raise MiniClusterError("Maven (mvn) not found: it fetches Hadoop's jars for the mini cluster")
        log.info("building the mini cluster launcher with Maven (first run downloads Hadoop's jars to ~/.m2)")
        done = subprocess.run([mvn, "-B", "-q", "-f", str(LAUNCHER / "pom.xml"), "package",
                               "dependency:build-classpath", f"-Dmdep.outputFile={classpath_file}",
                               "-Dmdep.includeScope=runtime"], capture_output=True, text=True)
        if done.returncode != 0:
            raise MiniClusterError(f"mvn failed building the mini cluster launcher:\n{done.stdout[-3000:]}"
                                   f"{done.stderr[-3000:]}")
        classpath_file.touch()
    return f"{target / 'classes'}{os.pathsep}{classpath_file.read_text().strip()}"


class MiniCluster:
    """One HDFS + YARN on this host: start, its configuration, its REST API, stop."""

    def __init__(self, workdir: Optional[Path] = None, nm_memory_mb: int = 8192, nm_vcores: int = 4):
        self.owns_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="botify-minicluster-")).resolve()
        self.nm_memory_mb, self.nm_vcores = nm_memory_mb, nm_vcores
        self.proc: Optional[subprocess.Popen] = None
        self.info: Dict[str, object] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> "MiniCluster":
        classpath = build_launcher()
        ready = self.dir / "cluster.json"
        ready.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "JAVA_HOME": java_home()}
        env.pop("HADOOP_CONF_DIR", None)
        self.log_path = self.dir / "minicluster.log"
        with open(self.log_path, "ab") as out:
            # stdin is a pipe we never write: when this process dies the cluster sees EOF and exits.
            self.proc = subprocess.Popen(
                ["java", "-Xmx1g", *JAVA_OPENS, "-cp", classpath, MAIN_CLASS, str(self.dir),
                 str(self.nm_memory_mb), str(self.nm_vcores)],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise MiniClusterError(f"the mini cluster exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise MiniClusterError(f"the mini cluster was not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)
        self.info = json.loads(ready.read_text())
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc and self.proc.stdin:
            self.proc.stdin.close()
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "MiniCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------------
    @property
    def conf_dir(self) -> str:
        return str(self.info["conf_dir"])

    @property
    def fs_default(self) -> str:
        return str(self.info["fs_default"])

    @property
    def rm_webapp(self) -> str:
        return str(self.info["rm_webapp"])

    def env(self) -> Dict[str, str]:
        """What a client of this cluster sets (spark-submit, hdfs-native)."""
        return {"HADOOP_CONF_DIR": self.conf_dir, "JAVA_HOME": java_home()}

    def rest(self, path: str, method: str = "GET", body: Optional[dict] = None) -> dict:
        """The ResourceManager's REST API (``/ws/v1/cluster/...``)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.rm_webapp + path, data=data, method=method,
                                         headers={"Accept": "application/json", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else {}

    def applications(self) -> list:
        apps = self.rest("/ws/v1/cluster/apps").get("apps") or {}
        return apps.get("app", [])

    def admin(self, verb: str, *args: str, timeout: float = 120.0) -> str:
        """An HDFS admin command, as ``hdfs dfsadmin`` would: safemode-enter, safemode-leave,
        space-quota PATH BYTES, clear-quota PATH, namenode-stop, namenode-start."""
        command_id = uuid.uuid4().hex
        reply = self.dir / "control" / command_id
        self.proc.stdin.write(" ".join([command_id, verb, *args]).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not reply.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise MiniClusterError(f"no answer to {verb} {' '.join(args)}:\n{self.log_tail()}")
            time.sleep(0.2)
        answer = reply.read_text().strip()
        if not answer.startswith("ok"):
            raise MiniClusterError(f"{verb} {' '.join(args)}: {answer}")
        return answer[3:]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="botify-minicluster", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="minicluster", help="where HDFS's data, YARN's logs and conf/ go")
    parser.add_argument("--nm-memory-mb", type=int, default=8192, help="the NodeManager's memory for containers")
    parser.add_argument("--nm-vcores", type=int, default=4, help="the NodeManager's vcores")
    args = parser.parse_args(argv)
    cluster = MiniCluster(Path(args.dir), args.nm_memory_mb, args.nm_vcores)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        cluster.start()
        print(f"export HADOOP_CONF_DIR={cluster.conf_dir}", flush=True)
        print(f"# HDFS {cluster.fs_default}   YARN ResourceManager {cluster.rm_webapp}   "
              f"(Ctrl-C stops both; logs in {cluster.dir})", flush=True)
        while not stop["now"] and cluster.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    except MiniClusterError as exc:
        print(f"botify-minicluster: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
