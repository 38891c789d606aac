"""bench/first_submit: what the first YARN submit of a fresh clone on a new cluster costs, step by step.

    .venv/bin/python bench/first_submit.py [--workdir DIR]

In one invocation, on one fresh mini cluster and an empty pack cache:
1. pack: the environment as it ships to YARN now (launcher.submit.packed_env
   in the profile's ``pack_format``: a plain tar without triton, test suites
   and headers) and, as the baseline, as it first shipped (a level-1 tar.gz
   with all of them), both timed;
2. upload: the pack and Spark's jars to the cluster's cache directory;
3. the first ``cluster_check --tasks 1`` on YARN: from the ResourceManager
   accepting it to its first task (the NodeManager localizing and unpacking
   the environment), and its whole wall time; and how long the NodeManager
   spent setting the unpacked entries' modes (their ctimes' spread);
4. the same submit with the environment installed on the node
   (``--python``): nothing packed, shipped or unpacked.

Prints one line; the ratio is the first submit now over the same submit with
the baseline's pack in its place (its pack time measured, its upload scaled
from this run's by size; the NodeManager's unpacking of a .tar.gz is not
measured, so the baseline, whose NodeManager also gunzips, is flattered).
"""
import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.yarn import first_task_after_start  # noqa: E402
from pipeline.minicluster import MiniCluster  # noqa: E402


def pack_seconds(cache: Path, fmt: str, excludes) -> tuple:
    out = cache / f"bench-env.{fmt}"
    argv = [str(Path(sys.prefix) / "bin" / "venv-pack"), "-p", sys.prefix, "-o", str(out), "--format", fmt,
            "--force", "--quiet", *(["--compress-level", "1"] if fmt == "tar.gz" else [])]
    for pattern in excludes:
        argv += ["--exclude", pattern]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds, size = time.perf_counter() - start, out.stat().st_size
    out.unlink()
    return seconds, size


def mode_setting(nm_local: Path) -> tuple:
    """(seconds, entries) the NodeManager spent setting the unpacked environment's modes.

    Each chmod stamps an entry's ctime, so the spread of the regular entries' ctimes is that pass (symlinks
    are skipped by it and keep their unpacking time).
    """
    stamps = [p.lstat().st_ctime for p in nm_local.glob("*/filecache/*/env-*/**/*") if not p.is_symlink()]
    return (max(stamps) - min(stamps), len(stamps)) if stamps else (0.0, 0)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/first_submit.py", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="where the cluster and the cache go (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-first-submit-"))
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    from common.spark import load_profile
    from launcher import submit

    fmt = load_profile("minicluster")["pack_format"]
    before = submit.PACK_EXCLUDES[:2]  # the pack as it first shipped: only pyspark's jars and the editable hook out
    old_pack, old_size = pack_seconds(cache, "tar.gz", before)
    try:
        with MiniCluster(work / "minicluster", nm_memory_mb=4096, nm_vcores=2) as cluster:
            env.update(cluster.env())
            check = [str(REPO / "spark-submit.sh"), "cluster_check", "--tasks", "1", "--master", "yarn",
                     "--profile", "minicluster", "--conf", "spark.eventLog.compress=false",
                     "--set", f"storage.root={cluster.fs_default}/user/bench/check"]
            code = ("import logging, sys, time; logging.basicConfig(level=logging.WARNING);"
                    "from launcher import submit, cluster_cache as c; t = time.perf_counter();"
                    f"p = submit.packed_env(True, {fmt!r});"
                    "a = time.perf_counter(); c.publish_once(p, '/apps/botify');"
                    "c.publish_once(c.spark_jars_archive(submit.SPARK_HOME, submit.BUILD), '/apps/botify');"
                    "print(a - t, time.perf_counter() - a, p.stat().st_size)")
            out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, capture_output=True,
                                 text=True).stdout.split()
            pack, upload, size = float(out[0]), float(out[1]), int(out[2])
            start = time.perf_counter()
            done = subprocess.run(check, env=env, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            first = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"cluster_check failed:\n{done.stderr[-3000:]}")
            [app] = [a for a in cluster.applications() if a["name"] == "botify-cluster_check"]
            to_task = first_task_after_start(cluster, app)
            modes, entries = mode_setting(work / "minicluster" / "nm-local")
            # The other deployment: the environment installed on every node, nothing packed or shipped.
            start = time.perf_counter()
            done = subprocess.run([*check, "--python", sys.executable], env=env, cwd=REPO, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL)
            installed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"cluster_check --python failed:\n{done.stderr[-3000:]}")
            [app] = [a for a in cluster.applications() if a["name"] == "botify-cluster_check" and a["id"] != app["id"]]
            installed_to_task = first_task_after_start(cluster, app)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    now = pack + upload + first
    baseline = old_pack + upload * old_size / size + first  # the old pack, uploaded at the same rate
    print(f"first_submit: {now:.0f} s now (pack {pack:.0f} s, {size / 1e9:.2f} GB {fmt}; upload {upload:.0f} s; "
          f"submit {first:.0f} s, of which start to first task {to_task:.0f} s and a forked chmod for each of "
          f"{entries} unpacked entries {modes:.0f} s) vs {baseline:.0f} s with the "
          f"old pack ({old_pack:.0f} s, {old_size / 1e9:.2f} GB tar.gz): {now / baseline:.2f}x; with the environment "
          f"installed on the nodes (--python): {installed:.0f} s, start to first task {installed_to_task:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
