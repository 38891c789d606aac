"""botify-minicluster: a real single-host Hadoop (HDFS + YARN) for the tests and the demo.

    botify-minicluster [--dir DIR] [--nm-memory-mb 8192] [--nm-vcores 4]
                       [--nodemanagers 1] [--datanodes 1] [--replication R] [--ha] [--kerberos]

Hadoop's own servers (NameNodes, DataNodes, ResourceManager, NodeManagers)
from the pinned Hadoop release on Maven Central, started by the small launcher
in ``hadoop/`` (built with Maven on first use; its jars stay in ``~/.m2``).
The topology is chosen by options, as hdfs-native's test cluster does: several
NodeManagers (each a JVM of its own), several DataNodes, and with ``--ha`` two
NameNodes behind one name service (the first active; there is no ZKFC). With
``--kerberos`` HDFS and YARN are secured by Kerberos (a KDC of its own,
keytabs and krb5.conf under DIR/kdc; every daemon shares one service
principal, containers run as the NodeManager's user). It
writes a matching ``HADOOP_CONF_DIR`` under DIR, prints the lines to export,
and runs until Ctrl-C or SIGTERM. Every server listens on 127.0.0.1 only.

Tests and ``botify-demo --cluster yarn`` use :class:`MiniCluster` directly.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
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

from common.process_group import stop_group
from pipeline.processes import REPO

log = logging.getLogger("minicluster")

LAUNCHER = REPO / "hadoop"
MAIN_CLASS = "botify.minicluster.MiniCluster"
# Hadoop 3.4's web apps build Guice proxies with cglib, which Java 17 forbids without these opens.
JAVA_OPENS = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.io", "java.net", "java.nio",
    "sun.nio.ch")]


# The YARN settings the launcher starts with, as Spark's own YARN suite builds its newYarnConfig(); a caller's
# extra_conf goes over them. Memory and vcores of the NodeManager are filled in per cluster.
YARN_CONF: Dict[str, str] = {
    "yarn.resourcemanager.hostname": "127.0.0.1",
    "yarn.nodemanager.address": "127.0.0.1:0",
    "yarn.nodemanager.localizer.address": "127.0.0.1:0",
    "yarn.nodemanager.webapp.address": "127.0.0.1:0",
    # One queue with the whole cluster.
    "yarn.scheduler.capacity.root.queues": "default",
    "yarn.scheduler.capacity.root.default.capacity": "100",
    "yarn.scheduler.capacity.root.default.maximum-capacity": "100",
    "yarn.scheduler.capacity.root.default.user-limit-factor": "1",
    "yarn.scheduler.capacity.root.default.state": "RUNNING",
    "yarn.scheduler.capacity.root.default.acl_submit_applications": "*",
    "yarn.scheduler.capacity.root.default.acl_administer_queue": "*",
    "yarn.scheduler.capacity.node-locality-delay": "-1",
    # A developer's disk is often fuller than a datanode's; do not mark the only node unhealthy.
    "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage": "100.0",
    # Python workers and torch map far more virtual memory than they use: YARN's checks would kill them.
    "yarn.nodemanager.vmem-check-enabled": "false",
    "yarn.nodemanager.pmem-check-enabled": "false",
    "yarn.scheduler.minimum-allocation-mb": "256",
    # Finished containers' logs stay in the NodeManager's log dirs, where tests (and `yarn logs`-less users) read them.
    "yarn.log-aggregation-enable": "false",
    "yarn.nodemanager.delete.debug-delay-sec": "600",
    # A lost node is declared in seconds, not YARN's 10 minutes, and an application master stops trying a
    # NodeManager that is gone after 10 s instead of 3 minutes.
    "yarn.nm.liveness-monitor.expiry-interval-ms": "15000",
    "yarn.client.nodemanager-connect.max-wait-ms": "10000",
    "yarn.client.nodemanager-connect.retry-interval-ms": "2000",
}


def yarn_overlay(nm_memory_mb: int, nm_vcores: int, extra_conf: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    sized = {"yarn.nodemanager.resource.memory-mb": str(nm_memory_mb),
             "yarn.nodemanager.resource.cpu-vcores": str(nm_vcores),
             "yarn.scheduler.maximum-allocation-mb": str(nm_memory_mb),
             "yarn.scheduler.maximum-allocation-vcores": str(nm_vcores)}
    return {**YARN_CONF, **sized, **{k: str(v) for k, v in (extra_conf or {}).items()}}


def write_properties(conf: Dict[str, str], path: Path) -> None:
    """Java's .properties format (backslash escapes), which the launcher loads with Properties.load."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("=", "\\=").replace(":", "\\:").replace("\n", "\\n")

    path.write_text("".join(f"{escape(k)}={escape(v)}\n" for k, v in sorted(conf.items())), encoding="utf-8")


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

    def __init__(self, workdir: Optional[Path] = None, nm_memory_mb: int = 8192, nm_vcores: int = 4,
                 extra_conf: Optional[Dict[str, str]] = None, nodemanagers: int = 1, datanodes: int = 1,
                 replication: Optional[int] = None, ha: bool = False, kerberos: bool = False,
                 ticket_lifetime_s: Optional[int] = None):
        """``kerberos``: HDFS and YARN secured by Kerberos, with a KDC of its own (``info["kerberos"]`` names
        the client's keytab, principal and krb5.conf); ``ticket_lifetime_s``: that KDC's longest ticket."""
        self.owns_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="botify-minicluster-")).resolve()
        topology = {"nodemanagers": nodemanagers, "datanodes": datanodes, "ha": int(ha),
                    "replication": replication or min(datanodes, 2), "kerberos": int(kerberos)}
        if ticket_lifetime_s:
            topology["ticket_lifetime_s"] = int(ticket_lifetime_s)
        # The launcher takes the topology from the same overlay (and hides it from YARN).
        self.yarn_conf = {**yarn_overlay(nm_memory_mb, nm_vcores, extra_conf),
                          **{f"botify.minicluster.{k}": str(v) for k, v in topology.items()}}
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
        overlay = self.dir / "yarn-overlay.properties"
        write_properties(self.yarn_conf, overlay)
        with open(self.log_path, "ab") as out:
            # stdin is a pipe we never write: when this process dies the cluster sees EOF and exits.
            self.proc = subprocess.Popen(
                ["java", "-Xmx1g", *JAVA_OPENS, "-cp", classpath, MAIN_CLASS, str(self.dir), str(overlay)],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise MiniClusterError(f"the mini cluster exited with {self.proc.returncode}: {self.error_line()}\n"
                                       f"{self.log_tail()}")
            if time.monotonic() > deadline:
                tail = self.log_tail()  # before stop(), which deletes a folder this object created
                self.stop()
                raise MiniClusterError(f"the mini cluster was not ready after {timeout:.0f}s:\n{tail}")
            time.sleep(0.5)
        self.info = json.loads(ready.read_text())
        return self

    def stop(self) -> None:
        if self.proc:
            stop_group(self.proc, timeout=60)
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
        """What a client of this cluster sets (spark-submit, hdfs-native); with Kerberos also KRB5_CONFIG, the
        KDC's krb5.conf, which kinit, libgssapi and Java all read (the ticket is the client's own to get)."""
        env = {"HADOOP_CONF_DIR": self.conf_dir, "JAVA_HOME": java_home()}
        if self.info.get("kerberos"):
            env["KRB5_CONFIG"] = str(self.info["kerberos"]["krb5_conf"])
        return env

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
        """An admin command (hadoop/.../Admin.java), as ``hdfs dfsadmin``, ``hdfs haadmin`` or a pulled plug
        would: safemode-enter, safemode-leave, space-quota PATH BYTES, clear-quota PATH, namenode-stop [I]
        (default: the active one), namenode-start [I], namenode-activate I, namenode-failover, datanode-stop I,
        datanode-start I, nodemanager-stop I (the node lost: it and its containers killed), nodemanager-start I."""
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

    def error_line(self) -> str:
        """The launcher's own last error line (a Java exception's message, the cause's last), else ''."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line.strip() for line in lines if re.match(r"^(Caused by: )?[\w.$]+(Exception|Error)\b", line.strip())]
        return errors[-1] if errors else ""

    def log_names(self) -> list:
        """The launcher's log (HDFS and the ResourceManager), then each NodeManager's."""
        return ["minicluster.log", *sorted(p.name for p in self.dir.glob("nodemanager-*.log"))]

    def log_tail(self, chars: int = 4000, name: Optional[str] = None) -> str:
        """The end of each of ``log_names()``, or of ``name``."""
        parts = []
        for log_name in ([name] if name else self.log_names()):
            try:
                text = (self.dir / log_name).read_text(errors="replace")
            except OSError:
                continue
            parts.append(text[-chars:] if name else f"== {log_name}\n{text[-chars:]}")
        return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="botify-minicluster", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="minicluster", help="where HDFS's data, YARN's logs and conf/ go")
    parser.add_argument("--nm-memory-mb", type=int, default=8192, help="each NodeManager's memory for containers")
    parser.add_argument("--nm-vcores", type=int, default=4, help="each NodeManager's vcores")
    parser.add_argument("--nodemanagers", type=int, default=1, help="NodeManagers, each a JVM of its own")
    parser.add_argument("--datanodes", type=int, default=1, help="DataNodes")
    parser.add_argument("--replication", type=int, default=None, help="dfs.replication (default: min(datanodes, 2))")
    parser.add_argument("--ha", action="store_true", help="two NameNodes behind one name service, the first active")
    parser.add_argument("--kerberos", action="store_true",
                        help="HDFS and YARN secured by Kerberos (a KDC of its own, keytabs under DIR/kdc)")
    args = parser.parse_args(argv)
    cluster = MiniCluster(Path(args.dir), args.nm_memory_mb, args.nm_vcores, nodemanagers=args.nodemanagers,
                          datanodes=args.datanodes, replication=args.replication, ha=args.ha,
                          kerberos=args.kerberos)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        cluster.start()
        print(f"export HADOOP_CONF_DIR={cluster.conf_dir}", flush=True)
        kerberos = cluster.info.get("kerberos")
        if kerberos:
            print(f"export KRB5_CONFIG={kerberos['krb5_conf']}", flush=True)
            print(f"# kinit -kt {kerberos['keytab']} {kerberos['principal']}", flush=True)
            print(f"# Kerberos realm {kerberos['realm']}; Java reads -Djava.security.krb5.conf={kerberos['krb5_conf']}",
                  flush=True)
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
