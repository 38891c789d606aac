"""SparkSession from a profile in ``conf/spark/<profile>.yml``.

Under spark-submit the master and conf are already fixed by the command line
(``spark-submit.sh`` renders them from the same profile), so the builder only
adds what is missing; a job run directly from Python (tests, notebooks) gets
the profile applied here instead.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, Optional

from common.config import add_config_arguments, load_yaml


def load_profile(profile: str) -> dict:
    data = load_yaml(f"spark/{profile}.yml")
    data.setdefault("conf", {})
    return data


def get_session(app_name: str, profile: str = "local", extra_conf: Optional[Mapping[str, str]] = None):
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for the driver
    if not under_submit:
        # Python workers must run this interpreter (the venv), not whatever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spec = load_profile(profile)
        builder = builder.master(str(spec["master"]))
        for key, value in spec["conf"].items():
            builder = builder.config(key, str(value))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def add_job_arguments(parser, run: bool = False) -> None:
    """The flags every spark-submit job shares: --config, --set, --profile and, for dated outputs, --run."""
    import datetime as dt

    add_config_arguments(parser)
    parser.add_argument("--profile", default="local", help="Spark profile in conf/spark/ (ignored under spark-submit)")
    if run:
        parser.add_argument("--run", default=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
                            help="run id (default: today, UTC)")
