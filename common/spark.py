"""SparkSession from a profile in ``conf/spark/<profile>.yml``.

Under spark-submit the master and conf are already fixed by the command line
(``spark-submit.sh`` renders them from the same profile), so the builder only
adds what is missing; a job run directly from Python (tests, notebooks) gets
the profile applied here instead.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, List, Mapping, Optional
from urllib.parse import urlparse

from common.config import add_config_arguments, load_yaml


def load_profile(profile: str, _seen: tuple = ()) -> dict:
    """``conf/spark/<profile>.yml``; a profile with ``extends: <base>`` states only what differs from the base
    (its keys replace the base's, its ``conf`` entries are merged over the base's)."""
    if profile in _seen:
        raise ValueError(f"spark profiles extend each other in a loop: {' -> '.join(_seen + (profile,))}")
    data = load_yaml(f"spark/{profile}.yml")
    data.setdefault("conf", {})
    base_name = data.pop("extends", None)
    if base_name:
        base = load_profile(str(base_name), _seen + (profile,))
        data = {**base, **data, "conf": {**base["conf"], **data["conf"]}}
    return data


# Called with (session, seconds to start it) when get_session starts one. The run record listens here: it sits
# above this module (it needs a session to write itself), so it registers rather than being imported.
_SESSION_LISTENERS: List[Callable[[object, float], None]] = []


def on_session_started(listener: Callable[[object, float], None]) -> None:
    if listener not in _SESSION_LISTENERS:
        _SESSION_LISTENERS.append(listener)


def get_session(app_name: str, profile: str = "local", extra_conf: Optional[Mapping[str, str]] = None):
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    started = time.perf_counter()
    builder = SparkSession.builder
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for the driver
    settings = dict(extra_conf or {})
    if under_submit:
        # spark-submit named the application botify-<job>; in YARN client mode the name given here would
        # replace it in the ResourceManager, so operators would see two names for one job.
        make_submitted_event_log_dir()
    else:
        builder = builder.appName(app_name)
        # Python workers must run this interpreter (the venv), not whatever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spec = load_profile(profile)
        builder = builder.master(str(spec["master"]))
        settings = {**spec["conf"], **settings}
        make_local_event_log_dir(settings)
    for key, value in settings.items():
        builder = builder.config(key, str(value))
    session = builder.getOrCreate()
    for listener in _SESSION_LISTENERS:
        listener(session, time.perf_counter() - started)
    return session


# Spark refuses to start when spark.eventLog.dir does not exist; a fresh machine or HDFS has none yet.
def make_local_event_log_dir(conf: Mapping[str, object]) -> None:
    if str(conf.get("spark.eventLog.enabled", "false")).lower() != "true":
        return
    parsed = urlparse(str(conf.get("spark.eventLog.dir", "/tmp/spark-events")))
    if parsed.scheme in ("", "file"):
        os.makedirs(parsed.path, exist_ok=True)


def make_submitted_event_log_dir() -> None:
    """Under spark-submit the conf is the JVM's: create the directory there, through Hadoop (``hdfs://`` too)."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()
    jvm = SparkContext._jvm
    conf = jvm.org.apache.spark.SparkConf(True)
    if conf.get("spark.eventLog.enabled", "false").lower() != "true":
        return
    directory = jvm.org.apache.spark.util.Utils.resolveURI(conf.get("spark.eventLog.dir", "/tmp/spark-events"))
    path = jvm.org.apache.hadoop.fs.Path(directory)
    fs = path.getFileSystem(jvm.org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(conf))
    if not fs.exists(path):
        fs.mkdirs(path)


def add_job_arguments(parser, run: bool = False) -> None:
    """The flags every spark-submit job shares: --config, --set, --profile and, for dated outputs, --run."""
    import datetime as dt

    add_config_arguments(parser)
    parser.add_argument("--profile", default="local", help="Spark profile in conf/spark/ (ignored under spark-submit)")
    if run:
        parser.add_argument("--run", default=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
                            help="run id (default: today, UTC)")


def add_window_arguments(parser) -> None:
    """--from-date/--to-date: the UTC dates of events a job reads (inclusive; staged events prune the others)."""
    parser.add_argument("--from-date", help="first UTC date of events to read, YYYY-MM-DD (default: the first)")
    parser.add_argument("--to-date", help="last UTC date of events to read, YYYY-MM-DD (default: the last)")


def window_of(args) -> Optional[tuple]:
    """(first, last) from --from-date/--to-date, None when neither is given; a bad date exits with its reason."""
    import datetime as dt

    first, last = args.from_date, args.to_date
    for flag, value in (("--from-date", first), ("--to-date", last)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise SystemExit(f"{flag} {value!r} is not YYYY-MM-DD")
    if first and last and first > last:
        raise SystemExit(f"--from-date {first} is after --to-date {last}")
    return (first, last) if first or last else None
