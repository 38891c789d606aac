"""botify-upload: ship botify's completed event-log files to ``<root>/logs/<dataset>/``.

The seed's ``dataclient log2hdfs`` as a command that is safe to run from cron
while botify is writing:

- only completed files are shipped: botify writes ``*.jsonl.open`` and renames
  a file to ``*.jsonl`` once it will never change again, so ``*.jsonl`` is the
  default selection and an open file is never read. ``--pattern`` selects other
  names, e.g. ``--pattern 'data.json*'`` for the course botify's ``data.json``
  and its rotated ``data.json.N`` (stop that botify first: its live file has no
  "still open" mark). Other files in the folder are named in a warning (``--strict``:
  exit 3), so a wrong pattern never passes as "uploaded 0 files";
- each file is copied to a hidden temporary name in the dataset (``_tmp-…``,
  skipped by Spark readers), its size checked, then renamed into place, so a
  reader or a crashed upload never leaves a half file under a real name;
- idempotent: a file already in the dataset with the same name and size is
  skipped (completed files never change, and a present file is complete because
  of the rename). The same name with another size is a conflict: reported,
  never overwritten (``--cleanup`` rebuilds the dataset);
- ``--cleanup`` replaces the dataset: every completed file goes to a new hidden
  directory which is then swapped in (``common.storage.atomic_output``);
- one upload per log directory at a time (a lock file there); a second one
  started meanwhile by cron exits with status 75 and changes nothing.

Storage goes through fsspec (``file://``, ``hdfs://``, ``webhdfs://``); the root is
``storage.root`` of ``conf/pipeline.yml`` (``--set storage.root=...``).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import fnmatch
import json
import logging
import os
import posixpath
import re
import sys
import uuid
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import fsspec.core
from tqdm import tqdm

from common.config import add_config_arguments, load_config
from common.kerberos import KerberosError, ticket_from_env
from common.paths import resolve
from common.storage import FsspecStorage, atomic_output, join

log = logging.getLogger(__name__)

DONE_SUFFIX = ".jsonl"  # botify's completed files (botify/event_log_writer.py); ``.jsonl.open`` is still being written
LOCK_NAME = ".botify-upload.lock"
TMP_PREFIX = "_tmp-"
CHUNK = 1 << 20
EXIT_CONFLICT = 1
EXIT_UNSHIPPED = 3  # --strict: the folder holds files no pattern selects
OPEN_SUFFIX = DONE_SUFFIX + ".open"
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron may simply try again next time
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UploadLocked(RuntimeError):
    """Another upload holds the log directory's lock."""


def list_files(log_dir: str, patterns: Sequence[str] = ("*" + DONE_SUFFIX,)) -> Tuple[List[str], List[str]]:
    """(names to ship, names left behind) among the regular files of ``log_dir``, both sorted.

    Shipped: a name matching one of ``patterns`` that is not hidden (``.``/``_``)
    and not botify's still-open ``*.jsonl.open``. Left behind: every other
    regular, non-hidden file except the open ones (those are expected).
    """
    ship, left = [], []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith((".", "_")) or name.endswith(OPEN_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            (ship if any(fnmatch.fnmatchcase(name, p) for p in patterns) else left).append(name)
    return sorted(ship), sorted(left)


@contextlib.contextmanager
def directory_lock(log_dir: str) -> Iterator[None]:
    path = os.path.join(log_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UploadLocked(f"another upload is running on {log_dir} (lock {path})") from exc
            raise
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remote_sizes(fs, path: str) -> Dict[str, int]:
    """{file name: size} of what the dataset already holds ({} when it does not exist yet)."""
    if not fs.exists(path):
        return {}
    return {posixpath.basename(e["name"].rstrip("/")): int(e["size"]) for e in fs.ls(path, detail=True) if e["type"] == "file"}


def copy_file(fs, src: str, dst_path: str, bar) -> int:
    """Stream ``src`` to ``dst_path`` and return the bytes written (checked against the remote size)."""
    written = 0
    with open(src, "rb") as fin, fs.open(dst_path, "wb") as fout:
        while True:
            chunk = fin.read(CHUNK)
            if not chunk:
                break
            fout.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    remote = fs.size(dst_path)
    if remote != written:
        raise IOError(f"{dst_path}: wrote {written} bytes but the destination holds {remote}")
    return written


def _publish_one(fs, src: str, dir_path: str, name: str, bar) -> int:
    tmp = posixpath.join(dir_path, f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}")
    try:
        size = copy_file(fs, src, tmp, bar)
        fs.mv(tmp, posixpath.join(dir_path, name))
    except BaseException:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp)
        raise
    return size


def upload(log_dir: str, dest_uri: str, cleanup: bool = False, progress: Optional[bool] = None,
           dry_run: bool = False, patterns: Sequence[str] = ("*" + DONE_SUFFIX,)) -> dict:
    """Upload the completed files of ``log_dir`` into the dataset ``dest_uri``; return a summary.

    ``progress=None`` shows the bar only on a terminal (quiet under cron).
    """
    if not os.path.isdir(log_dir):
        raise FileNotFoundError(f"log directory {log_dir} does not exist")
    storage = FsspecStorage()
    fs, dest_path = fsspec.core.url_to_fs(dest_uri)
    with directory_lock(log_dir):
        names, left_behind = list_files(log_dir, patterns)
        open_files = sum(1 for n in os.listdir(log_dir) if n.endswith(OPEN_SUFFIX))
        if left_behind:
            log.warning("%s: %d files match none of the patterns %s and are not uploaded: %s%s", log_dir,
                        len(left_behind), list(patterns), ", ".join(left_behind[:10]), " ..." if len(left_behind) > 10 else "")
        existing = {} if cleanup else remote_sizes(fs, dest_path)
        todo, skipped, conflicts = [], [], []
        for name in names:
            try:
                size = os.stat(os.path.join(log_dir, name)).st_size
            except FileNotFoundError:
                continue  # removed by a retention job since the listing
            if name not in existing:
                todo.append((name, size))
            elif existing[name] == size:
                skipped.append(name)
            else:
                conflicts.append({"file": name, "local_bytes": size, "remote_bytes": existing[name]})
        for c in conflicts:
            log.error("%s: already in %s with %d bytes, local file has %d; not overwritten (use --cleanup to rebuild the dataset)",
                      c["file"], dest_uri, c["remote_bytes"], c["local_bytes"])
        summary = {
            "dataset": dest_uri, "mode": "cleanup" if cleanup else "incremental", "dry_run": dry_run,
            "completed_files": len(names), "open_files_ignored": open_files, "not_shipped": left_behind,
            "uploaded": [], "bytes": 0, "skipped": len(skipped), "vanished": [], "conflicts": conflicts,
        }
        if dry_run:
            summary["uploaded"] = [name for name, _ in todo]
            return summary

        total = sum(size for _, size in todo)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload",
                  disable=(not sys.stderr.isatty()) if progress is None else not progress) as bar:
            if cleanup:
                with atomic_output(storage, dest_uri) as tmp_uri:
                    _, tmp_path = fsspec.core.url_to_fs(tmp_uri)
                    fs.makedirs(tmp_path, exist_ok=True)
                    _upload_all(fs, log_dir, tmp_path, todo, bar, summary)
            else:
                fs.makedirs(dest_path, exist_ok=True)
                _remove_stale_tmp(fs, dest_path)
                _upload_all(fs, log_dir, dest_path, todo, bar, summary)
    log.info("uploaded %d files (%d bytes) to %s, %d already there, %d conflicts, %d open files left alone",
             len(summary["uploaded"]), summary["bytes"], dest_uri, summary["skipped"], len(conflicts), open_files)
    return summary


def _upload_all(fs, log_dir: str, dir_path: str, todo, bar, summary: dict) -> None:
    for name, _ in todo:
        try:
            summary["bytes"] += _publish_one(fs, os.path.join(log_dir, name), dir_path, name, bar)
        except FileNotFoundError as exc:
            if os.path.exists(os.path.join(log_dir, name)):
                raise
            log.warning("%s vanished from %s before it was uploaded (%s)", name, log_dir, exc)
            summary["vanished"].append(name)
            continue
        summary["uploaded"].append(name)


def _remove_stale_tmp(fs, dir_path: str) -> None:
    """Temporary files of an upload that crashed (we hold the lock, so none is in progress)."""
    for entry in fs.ls(dir_path, detail=False):
        if posixpath.basename(entry.rstrip("/")).startswith(TMP_PREFIX):
            log.warning("removing %s left by an interrupted upload", entry)
            fs.rm(entry, recursive=True)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="botify-upload", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("dataset", nargs="?", help="dataset name: files go to <root>/logs/<dataset>/ (default: ab.upload.dataset)")
    parser.add_argument("--log-dir", help="botify's log directory (default: ab.upload.log_dir)")
    parser.add_argument("--cleanup", action="store_true", help="replace the dataset with exactly the completed files here")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be uploaded")
    parser.add_argument("--pattern", action="append", metavar="GLOB",
                        help="file names to ship (repeatable; default: ab.upload.patterns, botify's '*.jsonl'); "
                             "the course botify's logs: --pattern 'data.json*'")
    parser.add_argument("--strict", action="store_true",
                        help=f"exit {EXIT_UNSHIPPED} when the folder holds files that no pattern selects")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = load_config(args.config, args.overrides)
    settings = config["ab"]["upload"]
    dataset = args.dataset or str(settings["dataset"])
    if not _DATASET.match(dataset) or ".." in dataset:
        print(f"botify-upload: invalid dataset name {dataset!r} (letters, digits, '.', '_', '-'; not starting with '.' or '_')",
              file=sys.stderr)
        return 2
    log_dir = args.log_dir or str(settings["log_dir"])
    dest_uri = resolve(config, join("logs", dataset))
    try:
        patterns = args.pattern or [str(p) for p in settings.get("patterns", ["*" + DONE_SUFFIX])]
        with ticket_from_env():
            summary = upload(log_dir, dest_uri, cleanup=args.cleanup, progress=args.progress, dry_run=args.dry_run,
                             patterns=patterns)
    except KerberosError as exc:
        print(f"botify-upload: {exc}", file=sys.stderr)
        return 2
    except UploadLocked as exc:
        log.warning("%s; nothing done", exc)
        return EXIT_LOCKED
    except FileNotFoundError as exc:
        print(f"botify-upload: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**summary, "uploaded": len(summary["uploaded"]), "not_shipped": len(summary["not_shipped"])}))
    if summary["conflicts"]:
        return EXIT_CONFLICT
    return EXIT_UNSHIPPED if args.strict and summary["not_shipped"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
