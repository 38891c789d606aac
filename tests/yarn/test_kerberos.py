"""A user's first day on a Kerberos-secured cluster: a ticket from the keytab, then hdfs-native, Spark and YARN.

The cluster is ``MiniCluster(kerberos=True)``: Hadoop's MiniKdc, the NameNode, DataNode, ResourceManager and
NodeManager logged in from their keytab, SASL on the data transfer protocol. Every client runs in a process of its own with
the environment a user's shell would have (HADOOP_CONF_DIR, KRB5_CONFIG, KRB5CCNAME), so this process's
environment, and every other test's, stays as it was.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import requests

from common.kerberos import KEYTAB, PRINCIPAL, RELOGIN_S
from pipeline.minicluster import MiniCluster
from pipeline.processes import REPO
from testkit.served import TOKEN, botify_serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TICKET_S = 60

# A user's hdfs-native client through the project's storage layer: write, read back, say who owns the file.
CLIENT = """
import json, sys
import fsspec
from common.storage import FsspecStorage
uri, text = sys.argv[1], sys.argv[2]
storage = FsspecStorage()
try:
    if text:
        storage.write_text(uri, text)
    fs, path = fsspec.core.url_to_fs(uri)
    print(json.dumps({"text": storage.read_text(uri), "owner": fs.info(path)["owner"]}))
except Exception as exc:  # the one line a user reads
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def secure_hdfs(request):
    # A missing kinit is a setup bug, not a reason to skip: ./bootstrap.sh installs it as root.
    assert shutil.which("kinit"), "no kinit: apt-get install --no-install-recommends krb5-user"
    # Tickets live a minute, so botify's test outlives its first one.
    cluster = MiniCluster(nm_memory_mb=4096, nm_vcores=2, kerberos=True, ticket_lifetime_s=TICKET_S).start()
    failed_before = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed_before:
        print(f"\n{cluster.log_tail()}")
    cluster.stop()


def client_env(cluster, ccache, **extra):
    """A user's shell: this cluster's HADOOP_CONF_DIR and KRB5_CONFIG, and a ticket cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "HADOOP_", "SPARK_"))}
    return {**env, **cluster.env(), "KRB5CCNAME": f"FILE:{ccache}", **extra}


def kinit(cluster, ccache):
    kerberos = cluster.info["kerberos"]
    done = subprocess.run(["kinit", "-kt", kerberos["keytab"], kerberos["principal"]],
                          env=client_env(cluster, ccache), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def hdfs_client(cluster, ccache, uri, text=""):
    return subprocess.run([sys.executable, "-c", CLIENT, uri, text], env=client_env(cluster, ccache), cwd=REPO,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_cluster_names_its_realm_and_the_client_keytab(secure_hdfs):
    kerberos = secure_hdfs.info["kerberos"]
    assert kerberos["principal"] == f"botify@{kerberos['realm']}"
    assert os.path.isfile(kerberos["keytab"]) and os.path.isfile(kerberos["krb5_conf"])
    assert secure_hdfs.env()["KRB5_CONFIG"] == kerberos["krb5_conf"]
    assert secure_hdfs.info["rm_address"] and secure_hdfs.info["nodemanagers"]


def test_with_a_ticket_from_the_keytab_hdfs_native_writes_and_reads(secure_hdfs, tmp_path):
    ccache = tmp_path / "cc"
    kinit(secure_hdfs, ccache)
    uri = f"{secure_hdfs.fs_default}/tmp/kerberos/hello.txt"
    done = hdfs_client(secure_hdfs, ccache, uri, "hello, secure HDFS")
    assert done.returncode == 0, done.stderr
    # Read back through a DataNode (SASL on the data transfer protocol), as the Kerberos user, not as root.
    assert json.loads(done.stdout) == {"text": "hello, secure HDFS", "owner": "botify"}


def test_a_client_without_a_ticket_is_refused_at_once_with_one_clear_error(secure_hdfs, tmp_path):
    started = time.monotonic()
    done = hdfs_client(secure_hdfs, tmp_path / "no-ticket", f"{secure_hdfs.fs_default}/tmp/kerberos/denied.txt",
                       "never written")
    took = time.monotonic() - started
    assert done.returncode == 1
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert "GSS" in error and "No Kerberos credentials available" in error, error
    assert took < 30, f"refused only after {took:.0f}s"


def read_run_records(cluster, ccache, root):
    """Each run record under ``root`` with its owner, read by a user with a fresh ticket (they live a minute)."""
    kinit(cluster, ccache)
    code = ("import json, sys, fsspec\n"
            "fs, path = fsspec.core.url_to_fs(sys.argv[1])\n"
            "print(json.dumps([{'owner': fs.info(p)['owner'], 'record': json.loads(fs.cat_file(p))}\n"
            "                  for p in fs.glob(path + '/runs/*/*.json')]))\n")
    done = subprocess.run([sys.executable, "-c", code, root], env=client_env(cluster, ccache), cwd=REPO,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_spark_job_logs_in_from_the_keytab_and_writes_its_run_record(secure_hdfs, tmp_path):
    kerberos = secure_hdfs.info["kerberos"]
    root = f"{secure_hdfs.fs_default}/tmp/kerberos/spark"
    # No ticket cache: the driver logs in from the keytab. Java ignores KRB5_CONFIG; it is told with a property.
    env = client_env(secure_hdfs, tmp_path / "spark-cc",
                     SPARK_SUBMIT_OPTS=f"-Djava.security.krb5.conf={kerberos['krb5_conf']}")
    done = subprocess.run(
        [str(REPO / "spark-submit.sh"), "cluster_check", "--master", "local[2]",
         "--conf", f"spark.kerberos.principal={kerberos['principal']}",
         "--conf", f"spark.kerberos.keytab={kerberos['keytab']}",
         "--tasks", "1", "--set", f"storage.root={root}"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"run record succeeded: {root}/runs/cluster_check/" in done.stderr + done.stdout, done.stderr[-4000:]
    record = (done.stderr + done.stdout).split("run record succeeded: ", 1)[1].split()[0]
    # The record is on the secure HDFS, written as the keytab's user; a user with a ticket reads it.
    ccache = tmp_path / "cc"
    kinit(secure_hdfs, ccache)
    read = hdfs_client(secure_hdfs, ccache, record)
    assert read.returncode == 0, read.stderr
    seen = json.loads(read.stdout)
    assert seen["owner"] == "botify"
    assert json.loads(seen["text"])["job"] == "cluster_check"


def test_on_secure_yarn_a_job_runs_as_the_keytabs_user_on_its_delegation_tokens(secure_hdfs, tmp_path):
    kerberos = secure_hdfs.info["kerberos"]
    root = f"{secure_hdfs.fs_default}/tmp/kerberos/yarn"
    ccache = tmp_path / "cc"
    # The shell's ticket publishes Spark's jars to the cluster's cache; the job itself logs in from the keytab.
    kinit(secure_hdfs, ccache)
    # Cluster mode: the driver logs in from the keytab inside the application master, and executors' JVMs
    # need the realm too; a real node has /etc/krb5.conf, here each JVM is told where this KDC's is.
    java = f"-Djava.security.krb5.conf={kerberos['krb5_conf']}"
    done = subprocess.run(
        [str(REPO / "spark-submit.sh"), "cluster_check", "--master", "yarn", "--profile", "minicluster",
         "--python", sys.executable,
         "--conf", f"spark.kerberos.principal={kerberos['principal']}",
         "--conf", f"spark.kerberos.keytab={kerberos['keytab']}",
         "--conf", f"spark.driver.extraJavaOptions={java}", "--conf", f"spark.executor.extraJavaOptions={java}",
         "--tasks", "2", "--set", f"storage.root={root}"],
        env=client_env(secure_hdfs, ccache, SPARK_SUBMIT_OPTS=java), cwd=REPO, capture_output=True, text=True,
        timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "HDFS_DELEGATION_TOKEN owner=botify" in done.stderr, done.stderr[-4000:]
    [app] = [a for a in secure_hdfs.applications() if a["name"] == "botify-cluster_check"]
    assert (app["user"], app["finalStatus"]) == ("botify", "SUCCEEDED"), app
    [seen] = read_run_records(secure_hdfs, ccache, root)
    assert seen["owner"] == "botify"
    assert (seen["record"]["job"], seen["record"]["status"]) == ("cluster_check", "succeeded"), seen["record"]


# Two versions on the secure HDFS, written by the user with a ticket, for botify to serve.
ARTIFACTS = """
import sys
from testkit.artifacts import catalog_rows, write_catalog, write_recommendations
root = sys.argv[1]
write_catalog(root, catalog_rows(100, 10))
lists = {u: [(u + i) % 100 for i in range(50)] for u in range(1, 51)}
write_recommendations(root, "k1", lists, top=list(range(50)))
write_recommendations(root, "k2", {u: t[::-1] for u, t in lists.items()}, top=list(range(50, 100)), latest=False)
"""


def keytab_env(cluster, tmp_path, relogin_s):
    """A service's environment: its principal and keytab, no ticket cache of the caller's."""
    kerberos = cluster.info["kerberos"]
    env = client_env(cluster, tmp_path / "not-used")
    env.pop("KRB5CCNAME")
    return {**env, PRINCIPAL: kerberos["principal"], KEYTAB: kerberos["keytab"], RELOGIN_S: str(relogin_s)}


def test_botify_logs_in_from_its_keytab_and_reloads_after_its_first_ticket_ended(secure_hdfs, tmp_path):
    ccache = tmp_path / "cc"
    kinit(secure_hdfs, ccache)
    root = f"{secure_hdfs.fs_default}/tmp/kerberos/botify"
    written = subprocess.run([sys.executable, "-c", ARTIFACTS, root], env=client_env(secure_hdfs, ccache), cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    with botify_serve(root, tmp_path, env=keytab_env(secure_hdfs, tmp_path, relogin_s=TICKET_S / 3)) as (base, _):
        assert requests.get(base + "/", timeout=10).json()["recommendations"] == "k1"
        time.sleep(TICKET_S + 15)  # the ticket of the start load has ended
        reloaded = requests.post(base + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"version": "k2"}, timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        assert requests.get(base + "/", timeout=10).json()["recommendations"] == "k2"


# botify-upload as installed, with a pause after its first file: an upload that outlasts a ticket (gigabytes,
# a slow disk) stood in for by its time, not its bytes.
SLOW_UPLOAD = """
import sys, time
from pipeline import upload_logs
publish = upload_logs._publish_one
def publish_then_wait(*args):
    size = publish(*args)
    time.sleep(float(sys.argv[1]))
    return size
upload_logs._publish_one = publish_then_wait
sys.exit(upload_logs.main(sys.argv[2:]))
"""


def test_botify_upload_logs_in_from_the_keytab_and_outlasts_its_first_ticket(secure_hdfs, tmp_path):
    # Its connection, authenticated on the first ticket, carries the upload on after that ticket ended.
    # (A new connection then, to a restarted NameNode, would need the renewed ticket; the mini cluster's own
    # daemons cannot reconnect on 60 s tickets, so botify's test covers the renewal.)
    logs = tmp_path / "logs"
    logs.mkdir()
    parts = ("00000", "00001")
    for part in parts:
        (logs / f"part-{part}.jsonl").write_text(f'{{"message": "{part}"}}\n')
    root = f"{secure_hdfs.fs_default}/tmp/kerberos/upload"
    done = subprocess.run([sys.executable, "-c", SLOW_UPLOAD, str(TICKET_S + 15), "ab", "--no-progress",
                           "--log-dir", str(logs), "--set", f"storage.root={root}"],
                          env=keytab_env(secure_hdfs, tmp_path, relogin_s=TICKET_S / 3), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["uploaded"] == 2
    ccache = tmp_path / "cc"
    kinit(secure_hdfs, ccache)
    for part in parts:
        read = hdfs_client(secure_hdfs, ccache, f"{root}/logs/ab/part-{part}.jsonl")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == {"text": f'{{"message": "{part}"}}\n', "owner": "botify"}
