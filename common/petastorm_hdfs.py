"""petastorm reads ``hdfs://`` through hdfs-native's fsspec file system instead of libhdfs.

petastorm 0.12 opens ``hdfs://`` URLs with pyarrow's legacy HDFS client, which
loads ``libhdfs.so`` and a JVM: every Hadoop installation ships that library,
Maven does not, and a Python worker has no business starting a JVM anyway.
hdfs-native speaks HDFS's RPC protocol itself and reads the same
``HADOOP_CONF_DIR`` (name services, HA, Kerberos), so ``install()`` makes
petastorm's one resolver (``FilesystemResolver``: the converter's checks on the
driver and every rank's reader) hand out that file system for ``hdfs://``.
Every other scheme keeps petastorm's own behaviour. There is no fallback: if
HDFS cannot be reached the reader fails with hdfs-native's error.
"""
from __future__ import annotations

import functools
from urllib.parse import urlparse, urlunparse


def hdfs_filesystem(namenode_url: str):
    """hdfs-native's file system for ``hdfs://host:port``, behind pyarrow's legacy file system interface.

    petastorm reads through pyarrow's legacy ``ParquetDataset``, which only takes
    that interface; pyarrow's own ``DaskFileSystem`` adapts any fsspec file system
    to it. A module-level factory, so petastorm can pickle it for its workers.
    """
    import fsspec.core

    return _legacy_adapter()(fsspec.core.url_to_fs(namenode_url)[0])


def _legacy_adapter():
    # Built per call, not cached: an lru_cache wrapper pickles by reference, and torchrun's ranks on a
    # standalone executor cannot import this module by name (it reaches them by value only).
    from pyarrow.filesystem import DaskFileSystem

    class LegacyFsspec(DaskFileSystem):
        """``DaskFileSystem`` leaves the two type checks the legacy reader asks for unimplemented."""

        def isdir(self, path):
            return self.fs.isdir(path)

        def isfile(self, path):
            return self.fs.isfile(path)

    return LegacyFsspec


def install() -> None:
    """Route petastorm's ``hdfs://`` URLs to hdfs-native (idempotent; call in every process that reads)."""
    from petastorm import fs_utils

    resolver = fs_utils.FilesystemResolver
    if getattr(resolver, "_botify_hdfs_native", False):
        return
    original_init = resolver.__init__

    @functools.wraps(original_init)
    def init(self, dataset_url, *args, **kwargs):
        parsed = urlparse(dataset_url) if isinstance(dataset_url, str) else dataset_url
        if parsed.scheme != "hdfs":
            original_init(self, dataset_url, *args, **kwargs)
            return
        self._dataset_url = dataset_url
        self._parsed_dataset_url = parsed
        factory = functools.partial(hdfs_filesystem, urlunparse(parsed._replace(path="", params="", query="",
                                                                               fragment="")))
        self._filesystem = factory()
        self._filesystem_factory = factory

    resolver.__init__ = init
    resolver._botify_hdfs_native = True
