"""cluster_check: prove a cluster can run this project before scheduling real jobs.

Runs one small task per executor core and reports, from inside the executors,
which Python ran the task, which numpy/torch/pyarrow it imported and where the
project code came from; with a shipped environment these must be
``./environment/bin/python`` and the ``--py-files`` zip.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from common.spark import add_job_arguments, get_session


def probe(_):
    import sys

    import numpy
    import pyarrow
    import torch

    import common

    yield {
        "executable": sys.executable,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "torch": torch.__version__,
        "code": common.__file__,
    }


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="cluster_check", description=__doc__.split("\n")[0])
    add_job_arguments(parser)  # --config/--set: its run record goes under storage.root like every job's
    parser.add_argument("--tasks", type=int, default=0, help="tasks to run (default: default parallelism)")
    args = parser.parse_args(argv)
    spark = get_session("cluster_check", args.profile)
    sc = spark.sparkContext
    tasks = args.tasks or sc.defaultParallelism
    seen = sc.parallelize(range(tasks), tasks).mapPartitions(probe).collect()
    distinct = sorted({json.dumps(s, sort_keys=True) for s in seen})
    for line in distinct:
        print("executor:", line, flush=True)  # one write per line: in cluster mode the JVM shares this stdout
    return 0
