"""What a YARN submit ships once, not per application: the packed Python environment and Spark's jars.

spark-submit copies every local ``--archives`` file into the application's
staging directory, so a 3 GB packed environment (torch brings its CUDA
libraries) and Spark's 442 MB of jars would cross the network on every job.
Instead each is put once per content under the profile's ``cache_dir`` on the
cluster's file system (``fs.defaultFS`` from ``HADOOP_CONF_DIR``, or a full
URI), world-readable: YARN then treats it as a public resource and each
NodeManager downloads and unpacks it once, for every application after.

Uploads go through fsspec's ``hdfs://`` (hdfs-native: no JVM) to a temporary
name and are renamed into place, so a killed upload never leaves a partial
archive under the name the next submit trusts.
"""
from __future__ import annotations

import logging
import os
import posixpath
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from common.hadoop_conf import default_fs

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """The cluster's file system cannot be found or written for the shipped files."""


def cache_uri(cache_dir: str, name: str) -> str:
    base = cache_dir if urlparse(cache_dir).scheme else default_fs() + "/" + cache_dir.lstrip("/")
    return posixpath.join(base.rstrip("/"), name)


def publish_once(local: Path, cache_dir: str) -> str:
    """The URI of ``local``'s copy under ``cache_dir``, uploading it if no copy of that size is there."""
    import fsspec.core

    target = cache_uri(cache_dir, local.name)
    fs, path = fsspec.core.url_to_fs(target)
    size = local.stat().st_size
    try:
        if fs.exists(path) and fs.info(path)["size"] == size:
            return target
        log.info("uploading %s (%.0f MB) once to %s", local.name, size / 1e6, target)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(path), f"_tmp-{local.name}-{uuid.uuid4().hex[:12]}")
        try:
            fs.put_file(str(local), tmp)
            if fs.exists(path):
                fs.rm(path)
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
    except OSError as exc:
        raise CacheError(f"cannot publish {local.name} to {target}: {exc}") from exc
    return target


def spark_jars_archive(spark_home: Path, out_dir: Path) -> Path:
    """Spark's jars as one zip (jars at its root, as ``spark.yarn.archive`` wants), built once per Spark."""
    from pyspark.version import __version__

    target = out_dir / f"spark-{__version__}-jars.zip"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # two submits building it at once do not collide
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # jars are compressed already
        for jar in sorted((spark_home / "jars").glob("*.jar")):
            zf.write(jar, jar.name)
    tmp.replace(target)
    return target
