"""Storage URIs, one interface over two back ends, and atomic outputs.

Inside Spark jobs files go through Hadoop's FileSystem API on the session's
configuration (``HadoopStorage``), so ``hdfs://``, ``file://`` and ``s3a://``
behave exactly as Spark's own readers and writers see them. Outside Spark
(botify, upload, sim) the same operations go through fsspec (``FsspecStorage``).

Every published output is written under a hidden temporary name (``_tmp-…``,
which Spark readers skip), completed with ``_SUCCESS`` and then renamed into
place; a re-run replaces the previous output instead of appending to it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import posixpath
import re
import uuid
from pathlib import Path
from typing import Iterator, List, Optional
from urllib.parse import urlparse

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


def to_uri(path_or_uri: str, base: Optional[str] = None) -> str:
    """A URI for ``path_or_uri``: URIs pass through, local paths become absolute ``file://`` URIs."""
    text = str(path_or_uri)
    if urlparse(text).scheme and "://" in text:
        return text.rstrip("/") if len(text) > len("file:///") else text
    path = Path(text)
    if not path.is_absolute():
        path = Path(base or os.getcwd()) / path
    return "file://" + str(path.resolve())


def join(uri: str, *parts: str) -> str:
    return posixpath.join(uri.rstrip("/"), *[p.strip("/") for p in parts])


def local_path(uri: str) -> str:
    """The local path of a ``file://`` URI (error for any other scheme)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"{uri} is not a local file URI")
    return parsed.path


def _normalize(uri: str) -> str:
    """Hadoop prints local paths as ``file:/x``; everything else here uses ``file:///x``."""
    if uri.startswith("file:/") and not uri.startswith("file://"):
        return "file://" + uri[len("file:"):]
    return uri


@dataclasses.dataclass(frozen=True)
class FileStatus:
    uri: str
    size: int
    mtime_ms: int


def _visible(uri: str) -> bool:
    return not uri.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))


class Storage:
    """The operations jobs and services need; implemented by both back ends."""

    def exists(self, uri: str) -> bool:
        raise NotImplementedError

    def delete(self, uri: str) -> None:
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def mkdirs(self, uri: str) -> None:
        raise NotImplementedError

    def list(self, uri: str) -> List[str]:
        """Child URIs of a directory, sorted."""
        raise NotImplementedError

    def list_files(self, uri: str) -> List[FileStatus]:
        """The files directly under a directory (or the file itself), as its listing states them; names that
        Hadoop and Spark treat as hidden (leading ``_`` or ``.``) are left out."""
        raise NotImplementedError

    def write_bytes(self, uri: str, data: bytes) -> None:
        raise NotImplementedError

    def read_bytes(self, uri: str) -> bytes:
        raise NotImplementedError

    def write_text(self, uri: str, text: str) -> None:
        self.write_bytes(uri, text.encode("utf-8"))

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def write_atomically(self, uri: str, data: bytes) -> None:
        """Replace a small file (a pointer such as ``LATEST``) so readers never see it half written."""
        parent, name = posixpath.split(uri.rstrip("/"))
        tmp = join(parent, f"_tmp-{name}-{uuid.uuid4().hex}")
        self.write_bytes(tmp, data)
        if self.exists(uri):
            self.delete(uri)
        self.rename(tmp, uri)


class HadoopStorage(Storage):
    """Hadoop FileSystem through the Spark session's JVM (driver side only)."""

    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, uri: str):
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._fs(uri)
        return bool(fs.exists(path))

    def delete(self, uri: str) -> None:
        fs, path = self._fs(uri)
        fs.delete(path, True)

    def rename(self, src: str, dst: str) -> None:
        fs, src_path = self._fs(src)
        _, dst_path = self._fs(dst)
        fs.mkdirs(dst_path.getParent())
        if not fs.rename(src_path, dst_path):
            raise IOError(f"rename {src} -> {dst} failed")

    def mkdirs(self, uri: str) -> None:
        fs, path = self._fs(uri)
        fs.mkdirs(path)

    def list(self, uri: str) -> List[str]:
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return []
        return sorted(_normalize(str(status.getPath().toString())) for status in fs.listStatus(path))

    def list_files(self, uri: str) -> List[FileStatus]:
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return []
        found = [FileStatus(_normalize(str(st.getPath().toString())), int(st.getLen()), int(st.getModificationTime()))
                 for st in fs.listStatus(path) if st.isFile()]
        return sorted((f for f in found if _visible(f.uri)), key=lambda f: f.uri)

    def write_bytes(self, uri: str, data: bytes) -> None:
        fs, path = self._fs(uri)
        out = fs.create(path, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self._fs(uri)
        stream = fs.open(path)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()


# hdfs-native retries an unreachable NameNode for minutes (HA failover patience): right for a batch upload,
# wrong for a service that must answer. With these a call fails in about a second with the OSError.
HDFS_FAIL_FAST = {"dfs.client.failover.max.attempts": "1", "dfs.client.failover.sleep.base.millis": "200",
                  "dfs.client.failover.sleep.max.millis": "500"}


class FsspecStorage(Storage):
    """fsspec file systems (``file://``, ``hdfs://`` via hdfs-native, ``webhdfs://``).

    ``hdfs_options`` go to hdfs-native's client for ``hdfs://`` and ``viewfs://``
    URIs (Hadoop client keys, e.g. ``HDFS_FAIL_FAST``).
    """

    def __init__(self, hdfs_options: Optional[dict] = None):
        self._hdfs_options = dict(hdfs_options or {})

    def _fs(self, uri: str):
        import fsspec.core

        options = self._hdfs_options if urlparse(uri).scheme in ("hdfs", "viewfs") else {}
        return fsspec.core.url_to_fs(uri, **options)

    def exists(self, uri: str) -> bool:
        fs, path = self._fs(uri)
        return fs.exists(path)

    def delete(self, uri: str) -> None:
        fs, path = self._fs(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        _drop_local_checksum(fs, path)

    def rename(self, src: str, dst: str) -> None:
        fs, src_path = self._fs(src)
        _, dst_path = self._fs(dst)
        fs.makedirs(posixpath.dirname(dst_path), exist_ok=True)
        fs.mv(src_path, dst_path, recursive=True)
        _drop_local_checksum(fs, src_path)
        _drop_local_checksum(fs, dst_path)

    def mkdirs(self, uri: str) -> None:
        fs, path = self._fs(uri)
        fs.makedirs(path, exist_ok=True)

    def list(self, uri: str) -> List[str]:
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return []
        return sorted(fs.unstrip_protocol(p) for p in fs.ls(path, detail=False))

    def list_files(self, uri: str) -> List[FileStatus]:
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return []
        entries = [fs.info(path)] if fs.isfile(path) else fs.ls(path, detail=True)
        found = []
        for entry in entries:
            if entry["type"] != "file":
                continue
            # file:// states mtime in seconds, hdfs-native modification_time in milliseconds
            mtime_ms = entry.get("modification_time") or int(float(entry.get("mtime", 0)) * 1000)
            found.append(FileStatus(fs.unstrip_protocol(entry["name"]), int(entry["size"]), int(mtime_ms)))
        return sorted((f for f in found if _visible(f.uri)), key=lambda f: f.uri)

    def write_bytes(self, uri: str, data: bytes) -> None:
        fs, path = self._fs(uri)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)
        _drop_local_checksum(fs, path)

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self._fs(uri)
        with fs.open(path, "rb") as fh:
            return fh.read()


def _hdfs_failure_as_os_error(method):
    """hdfs-native reports some failures of HDFS itself as RuntimeError: a failed Kerberos login (naming
    GSSAPIError), an RPC answered by no active NameNode during a failover. Callers treat a storage they cannot
    use as an OSError (botify: 503, the old version keeps serving), so on hdfs:// they become one."""
    @functools.wraps(method)
    def checked(self, uri, *args, **kwargs):
        try:
            return method(self, uri, *args, **kwargs)
        except RuntimeError as exc:
            if urlparse(uri).scheme not in ("hdfs", "viewfs"):
                raise
            if "GSSAPIError" in str(exc):
                raise PermissionError(f"Kerberos authentication to HDFS failed (no valid ticket: kinit, or set "
                                      f"BOTIFY_KERBEROS_PRINCIPAL and BOTIFY_KERBEROS_KEYTAB): {exc}") from exc
            raise OSError(f"HDFS failed: {exc}") from exc
    return checked


for _name in ("exists", "delete", "rename", "mkdirs", "list", "list_files", "write_bytes", "read_bytes"):
    setattr(FsspecStorage, _name, _hdfs_failure_as_os_error(getattr(FsspecStorage, _name)))


def _drop_local_checksum(fs, path: str) -> None:
    """Remove Hadoop's ``.<name>.crc`` beside a local file this back end wrote, moved or deleted.

    Hadoop's LocalFileSystem (what Spark and HadoopStorage use for file://) checks a local file against that
    sidecar; a file replaced without it would then fail Hadoop's next read with a ChecksumException (found
    when retention rewrote _STAGED.json). With no sidecar Hadoop reads the file unchecked, as HDFS has none.
    """
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" not in protocols:
        return
    parent, name = posixpath.split(path.rstrip("/"))
    sidecar = posixpath.join(parent, f".{name}.crc")
    if fs.exists(sidecar):
        fs.rm(sidecar)


@contextlib.contextmanager
def atomic_output(storage: Storage, final_uri: str) -> Iterator[str]:
    """Yield a temporary URI beside ``final_uri``; on success mark it ``_SUCCESS`` and swap it in.

    The previous output (if any) is moved aside before the new one is renamed
    into place and deleted afterwards, so a reader sees either the old complete
    output or the new complete one. On failure the temporary output is removed
    and the previous output is untouched.
    """
    parent, name = posixpath.split(final_uri.rstrip("/"))
    sweep_leftovers(storage, final_uri)
    token = uuid.uuid4().hex[:12]
    tmp = join(parent, f"_tmp-{name}-{token}")
    try:
        yield tmp
        storage.write_bytes(join(tmp, SUCCESS), b"")
    except BaseException:
        with contextlib.suppress(Exception):
            storage.delete(tmp)
        raise
    old = join(parent, f"_old-{name}-{token}")
    had_old = storage.exists(final_uri)
    if had_old:
        storage.rename(final_uri, old)
    storage.rename(tmp, final_uri)
    if had_old:
        storage.delete(old)
    log.info("published %s", final_uri)


def sweep_leftovers(storage: Storage, final_uri: str) -> None:
    """Remove what a killed ``atomic_output`` of ``final_uri`` left beside it.

    A kill while writing leaves ``_tmp-<name>-<token>``; a kill between the two
    renames leaves the previous output as ``_old-<name>-<token>`` and no output:
    that one is put back, since it is the last complete output. One writer per
    output at a time is the contract (the daily run and botify-upload hold locks),
    so anything of this name found here is dead.
    """
    parent, name = posixpath.split(final_uri.rstrip("/"))
    leftover = re.compile(r"^_(tmp|old)-" + re.escape(name) + r"-[0-9a-f]{12}$")
    found = [(m.group(1), uri) for uri in storage.list(parent)
             if (m := leftover.match(posixpath.basename(uri.rstrip("/"))))]
    olds = [uri for kind, uri in found if kind == "old"]
    if olds and not storage.exists(final_uri):
        log.warning("restoring %s from %s (an earlier run was killed while swapping it)", final_uri, olds[0])
        storage.rename(olds.pop(0), final_uri)
    for kind, uri in found:
        if kind == "tmp" or uri in olds:
            log.warning("removing %s left by an interrupted run", uri)
            storage.delete(uri)


def write_pointer(storage: Storage, pointer_uri: str, version: str) -> None:
    """Move a ``LATEST``-style pointer to ``version`` (a sibling directory name)."""
    storage.write_atomically(pointer_uri, (version + "\n").encode("utf-8"))


def read_pointer(storage: Storage, pointer_uri: str) -> str:
    version = storage.read_text(pointer_uri).strip()
    if not version or "/" in version or version.startswith("."):
        raise ValueError(f"{pointer_uri}: invalid version pointer {version!r}")
    return version
