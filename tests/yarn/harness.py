"""The Hadoop test harness, in one home (read beside Apache Spark's ``BaseYarnClusterSuite``).

``YarnCluster`` owns the real single-host Hadoop the tests share (Hadoop's own
NameNode, DataNode, ResourceManager and NodeManager, from
``pipeline.minicluster``): start, config, submit, wait, stop. Tests submit jobs
exactly as a user does (``./spark-submit.sh <job> --master yarn``) and judge an
application by what the ResourceManager's REST API says about it
(``assert_succeeded``), never by the job's own output; a failure carries the
driver's and the NodeManager's logs. Below it: the ``/proc`` helpers the fault
tests use to find and kill an executor, and the builders of a test's inputs.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pipeline.minicluster import MiniCluster
from testkit.procs import command_lines

REPO = Path(__file__).resolve().parents[2]
APP_ID = re.compile(r"Submitted application (application_\d+_\d+)")


@dataclass
class Submission:
    returncode: int
    app_id: Optional[str]
    stdout: str
    stderr: str

    def explain(self, cluster: "YarnCluster") -> str:
        """What a reader of a failed test needs: the exit, spark-submit's stderr, the containers' logs (the
        driver's first, in cluster mode) and the NodeManager's log."""
        return (f"exit {self.returncode}, app {self.app_id}\n--- spark-submit stderr\n{self.stderr[-6000:]}\n"
                f"--- containers\n{cluster.container_logs(self.app_id)[-6000:] if self.app_id else ''}\n"
                f"--- NodeManagers\n{nodemanager_tails(cluster.cluster)}")


def nodemanager_tails(cluster: MiniCluster, chars: int = 3000) -> str:
    return "\n".join(f"== {name}\n{cluster.log_tail(chars, name)}" for name in cluster.log_names()[1:])


class YarnCluster:
    def __init__(self, cluster: MiniCluster, installed_python: Optional[str] = None):
        self.cluster = cluster
        # Set: every node has the environment installed at this path (spark-submit.sh --python), none shipped.
        self.installed_python = installed_python

    @classmethod
    def start(cls, nm_memory_mb: int = 8192, nm_vcores: int = 4, **topology) -> "YarnCluster":
        """Started with ``topology``: MiniCluster's nodemanagers, datanodes, replication, ha."""
        return cls(MiniCluster(nm_memory_mb=nm_memory_mb, nm_vcores=nm_vcores, **topology).start())

    def stop(self, keep_logs_in: Optional[Path] = None) -> None:
        """Stop the cluster; with ``keep_logs_in`` (a failed run) its logs and ``nm-logs/`` are copied there
        first, since stopping deletes the cluster's folder."""
        if keep_logs_in is not None:
            for name in self.cluster.log_names():
                if (self.cluster.dir / name).exists():
                    shutil.copy2(self.cluster.dir / name, keep_logs_in / name)
            if (self.cluster.dir / "nm-logs").is_dir():
                shutil.copytree(self.cluster.dir / "nm-logs", keep_logs_in / "nm-logs", dirs_exist_ok=True)
        self.cluster.stop()

    # -- configuration ----------------------------------------------------------------------------
    def env(self, **extra: str) -> Dict[str, str]:
        return {**os.environ, **self.cluster.env(), **extra}

    def new_root(self, name: str) -> str:
        """A fresh storage root on HDFS for one test's story."""
        return f"{self.cluster.fs_default}/user/root/{name}-{uuid.uuid4().hex[:8]}"

    # -- submit and wait --------------------------------------------------------------------------
    def submit(self, job: str, *args: str, root: str, deploy_mode: Optional[str] = None,
               conf: Sequence[str] = (), timeout: float = 1200) -> Submission:
        argv = [str(REPO / "spark-submit.sh"), job, "--master", "yarn", "--profile", "minicluster",
                "--set", f"storage.root={root}"]
        if deploy_mode:
            argv += ["--deploy-mode", deploy_mode]
        if self.installed_python:
            argv += ["--python", self.installed_python]
        for item in conf:
            argv += ["--conf", item]
        started_ms = time.time() * 1000
        done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, env=self.env(),
                              stdin=subprocess.DEVNULL)
        found = APP_ID.search(done.stderr)
        return Submission(done.returncode, found.group(1) if found else self.newest(f"botify-{job}", started_ms),
                          done.stdout, done.stderr)

    def assert_succeeded(self, done: Submission) -> Submission:
        """spark-submit exited 0 and the ResourceManager says FINISHED/SUCCEEDED; else fail with the logs."""
        assert done.returncode == 0 and done.app_id, done.explain(self)
        assert self.final_status(done.app_id) == ("FINISHED", "SUCCEEDED"), done.explain(self)
        return done

    def newest(self, name: str, since_ms: float) -> Optional[str]:
        """The id of the last application called ``name`` submitted after ``since_ms`` (client mode does not
        log its id at the driver's WARN level)."""
        apps = [a for a in self.cluster.applications() if a["name"] == name and a["startedTime"] >= since_ms]
        return max(apps, key=lambda a: a["startedTime"])["id"] if apps else None

    def app(self, app_id: str) -> dict:
        return self.cluster.rest(f"/ws/v1/cluster/apps/{app_id}")["app"]

    def final_status(self, app_id: str, timeout: float = 60) -> tuple:
        """(state, finalStatus) once the ResourceManager has the application in a final state."""
        deadline = time.monotonic() + timeout
        while True:
            app = self.app(app_id)
            if app["state"] in ("FINISHED", "FAILED", "KILLED") or time.monotonic() > deadline:
                return app["state"], app["finalStatus"]
            time.sleep(1)

    def wait_running(self, name: str, timeout: float = 600) -> str:
        """The id of the application called ``name`` once YARN reports it RUNNING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for app in self.cluster.applications():
                if app["name"] == name and app["state"] == "RUNNING":
                    return app["id"]
            time.sleep(1)
        raise TimeoutError(f"no RUNNING application {name!r} after {timeout:.0f}s")

    # -- nodes --------------------------------------------------------------------------------------
    def node_index(self, address: str) -> int:
        """The index (cluster.json's) of the NodeManager at ``address``, its NodeId or web address: YARN names
        a node by host name, the launcher by 127.0.0.1, so the port decides."""
        port = address.rsplit(":", 1)[1]
        for node in self.cluster.info["nodemanagers"]:
            if port in (node["id"].rsplit(":", 1)[1], node["http"].rsplit(":", 1)[1]):
                return node["index"]
        raise LookupError(f"no NodeManager at {address}")

    def am_node(self, app_id: str) -> int:
        """The index of the NodeManager running ``app_id``'s application master."""
        return self.node_index(self.app(app_id)["amHostHttpAddress"])

    def nodes(self, state: str) -> list:
        """The ResourceManager's nodes in ``state`` (RUNNING, LOST, ...)."""
        return (self.cluster.rest(f"/ws/v1/cluster/nodes?states={state}").get("nodes") or {}).get("node", [])

    def wait_nodes(self, state: str, count: int, timeout: float = 120) -> list:
        deadline = time.monotonic() + timeout
        while len(self.nodes(state)) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not {count} {state} nodes after {timeout:.0f}s: {self.nodes(state)}")
            time.sleep(1)
        return self.nodes(state)

    def kill(self, app_id: str) -> None:
        """Kill an application the way an operator does: the ResourceManager's REST API."""
        self.cluster.rest(f"/ws/v1/cluster/apps/{app_id}/state", method="PUT", body={"state": "KILLED"})

    # -- what happened inside ---------------------------------------------------------------------
    def container_dirs(self, app_id: str) -> List[Path]:
        return sorted(self.cluster.dir.glob(f"nm-logs/*/{app_id}/container_*"))

    def container_logs(self, app_id: str) -> str:
        parts = []
        for container in self.container_dirs(app_id):
            for name in ("stdout", "stderr"):
                path = container / name
                if path.exists():
                    parts.append(f"== {container.name}/{name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def driver_stdout(self, app_id: str) -> str:
        """The application master's stdout: in cluster mode, what the job printed."""
        first = [c for c in self.container_dirs(app_id) if c.name.endswith("_000001")]
        return (first[0] / "stdout").read_text(errors="replace") if first else ""


def simulated_logs(workdir: Path, seed: int, users: int, events: int, files: int) -> Path:
    """A world and botify's event logs for it (``sim generate`` + ``sim bulk``) under ``workdir``."""
    py = [sys.executable, "-m", "sim"]
    subprocess.run([*py, "generate", "--seed", str(seed), "--tracks", "1500", "--users", str(users),
                    "--out", str(workdir / "world")], check=True, capture_output=True)
    subprocess.run([*py, "bulk", "--events", str(events), "--world", str(workdir / "world"), "--experiment", "AB:2",
                    "--files", str(files), "--seed", str(seed), "--out", str(workdir / "botify-logs")],
                   check=True, capture_output=True)
    return workdir


def upload(workdir: Path, root: str, env: Dict[str, str]) -> None:
    """The world's files and botify's logs (``botify-upload train``) to a storage root, as a user ships them."""
    from common.storage import FsspecStorage, join

    storage = FsspecStorage()
    for path in sorted((workdir / "world").glob("*")):
        storage.write_bytes(join(root, "world", path.name), path.read_bytes())
    done = subprocess.run([str(Path(sys.executable).parent / "botify-upload"), "train", "--no-progress",
                           "--log-dir", str(workdir / "botify-logs"), "--set", f"storage.root={root}"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr



def staged_root(yarn, workdir: Path, name: str, seed: int) -> str:
    """A fresh HDFS root with a world and botify's logs (60,000 events) uploaded and staged, and a reference
    extract run ``ref`` made on this host's Spark (the jobs under test are the YARN ones)."""
    simulated_logs(workdir, seed=seed, users=400, events=60000, files=4)
    root = yarn.new_root(name)
    upload(workdir, root, yarn.env())
    local_job(yarn, root, "stage_events", "--run", "s1", "--input", "logs/train", "--dataset", "train")
    local_job(yarn, root, "extract_interactions", "--run", "ref", "--input", "events/train")
    return root


def local_job(yarn, root, job, *args):
    """Preparation on this host's Spark, writing to HDFS (faster than a YARN round trip; not under test)."""
    done = subprocess.run([str(REPO / "spark-submit.sh"), job, "--set", f"storage.root={root}", *args],
                          capture_output=True, text=True, timeout=900, env=yarn.env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]


# -- /proc: finding and killing what YARN started ---------------------------------------------------
def executor_pids(app_id):
    """PIDs of the executor JVMs YARN started for ``app_id`` (container 1 is the application master)."""
    return [pid for pid, cmdline in command_lines()
            if "YarnCoarseGrainedExecutorBackend" in cmdline and app_id in cmdline and "java" in cmdline.split()[0]]


def container_log_dir(pid) -> Optional[Path]:
    """The log folder of the YARN container whose JVM is ``pid`` (``nm-logs/<node>/<app>/<container>``)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    log_dir = [a.split("=", 1)[1] for a in cmdline if a.startswith("-Dspark.yarn.app.container.log.dir=")]
    return Path(log_dir[0]) if log_dir else None


def running_a_task(pid):
    """Whether the executor JVM ``pid`` has started a task (its container's stderr says so)."""
    log_dir = container_log_dir(pid)
    stderr = log_dir / "stderr" if log_dir else None
    return bool(stderr and stderr.exists() and "Running task" in stderr.read_text(errors="replace"))


def wait_for_an_executor(yarn, name, ready, timeout=600):
    """Once application ``name`` runs: (its id, the pid of an executor for which ``ready(pid)`` holds)."""
    app_id = yarn.wait_running(name, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in executor_pids(app_id):
            try:
                if ready(pid):
                    return app_id, pid
            except OSError:  # it exited while we looked
                continue
        time.sleep(0.2)
    raise TimeoutError(f"no executor of {app_id} became ready")


def descendants_running(pid, text):
    """Whether a process under ``pid`` has ``text`` in its command line (torchrun's ranks, say)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    children = {}
    for line in out:
        p, pp, args = line.split(None, 2)
        children.setdefault(int(pp), []).append((int(p), args))
    todo = [pid]
    while todo:
        for child, args in children.get(todo.pop(), []):
            if text in args:
                return True
            todo.append(child)
    return False


def kill_an_executor_when(yarn, name, ready, timeout=600):
    """Once application ``name`` runs and ``ready(executor_pid)`` holds, SIGKILL that executor's JVM."""
    app_id, pid = wait_for_an_executor(yarn, name, ready, timeout)
    os.kill(pid, signal.SIGKILL)
    return app_id, pid


def submit_in_background(yarn, job, root, *args):
    result = {}
    thread = threading.Thread(target=lambda: result.update(done=yarn.submit(job, *args, root=root)), daemon=True)
    thread.start()
    return thread, result
