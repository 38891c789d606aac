"""botify's event log files: JSON lines, one open file per worker process, rotated.

File contract (the upload command relies on it): a file being written ends in
``.jsonl.open``; when complete (by size, by age, on shutdown, or when an
operator asks) it is renamed to the same name ending in ``.jsonl``. Uploaders
ship only ``*.jsonl``. Each process writes its own file (the pid is in the
name) with whole-line appends under a lock, so lines never interleave.

An operator completes every open file NOW by bumping the generation number in
``<dir>/_rotate_request`` (``request_rotation``); each worker checks it every
``poll_s`` and rotates, and the requester waits until every file that was open
at the time of the request has been renamed.
"""
from __future__ import annotations

import datetime as dt
import errno
import itertools
import logging
import os
import re
import socket
import threading
import time
from typing import List, Optional

from common.event_line import to_line

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".jsonl.open"
DONE_SUFFIX = ".jsonl"
REQUEST_FILE = "_rotate_request"
_sequence = itertools.count()
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
_NAME = re.compile(r"^events-\d{8}T\d{12}-(?P<host>.+)-(?P<pid>\d+)-\d+" + re.escape(OPEN_SUFFIX) + "$")


def completed_name(open_name: str) -> str:
    return open_name[: -len(OPEN_SUFFIX)] + DONE_SUFFIX


def read_generation(directory: str) -> int:
    try:
        with open(os.path.join(directory, REQUEST_FILE), encoding="ascii") as fh:
            return int(fh.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class EventLog:
    def __init__(self, directory: str, max_bytes: int, max_age_s: float, metrics=None):
        from botify.metrics import NullRecorder

        self.metrics = metrics or NullRecorder()
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._path: Optional[str] = None
        self._size = 0
        self._opened_at = 0.0
        self._generation = read_generation(directory)
        self.completed: List[str] = []

    def write(self, event: dict) -> None:
        line = to_line(event).encode("utf-8")
        with self._lock:
            if self._fd is None:
                self._open()
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size += len(line)
            self.metrics.event_line()
            if self._size >= self.max_bytes:
                self._complete("size")

    def tick(self, now: Optional[float] = None) -> None:
        """Rotate when the file is too old or an operator asked (called every ``poll_s``)."""
        now = time.monotonic() if now is None else now
        generation = read_generation(self.directory)
        with self._lock:
            asked = generation != self._generation
            self._generation = generation
            if self._fd is not None and (asked or now - self._opened_at >= self.max_age_s):
                self._complete("request" if asked else "age")

    def rotate(self, reason: str = "request") -> Optional[str]:
        with self._lock:
            return self._complete(reason)

    def close(self) -> Optional[str]:
        return self.rotate("shutdown")

    def _open(self) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"events-{stamp}-{_HOST}-{os.getpid()}-{next(_sequence)}{OPEN_SUFFIX}"
        self._path = os.path.join(self.directory, name)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        self._opened_at = time.monotonic()

    def _complete(self, reason: str) -> Optional[str]:
        if self._fd is None:
            return None
        os.close(self._fd)
        done = completed_name(self._path)
        os.rename(self._path, done)
        self._fd = None
        self._path = None
        self.completed.append(done)
        self.metrics.rotation(reason)
        log.info("completed event log %s", done)
        return done


def open_files(directory: str) -> List[str]:
    if not os.path.isdir(directory):
        return []
    return sorted(n for n in os.listdir(directory) if n.endswith(OPEN_SUFFIX))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def complete_orphans(directory: str) -> List[str]:
    """Complete open files left by processes of this host that no longer run (a killed worker)."""
    done = []
    for name in open_files(directory):
        match = _NAME.match(name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            os.rename(os.path.join(directory, name), os.path.join(directory, completed_name(name)))
            log.warning("completed %s left open by a process that is gone", name)
            done.append(completed_name(name))
    return done


def request_rotation(directory: str, timeout_s: float = 10.0, poll_s: float = 0.05) -> List[str]:
    """Ask every worker writing into ``directory`` to complete its file; wait until they did.

    Returns the names of the files completed; raises ``TimeoutError`` naming the
    files still open after ``timeout_s``.
    """
    os.makedirs(directory, exist_ok=True)
    complete_orphans(directory)
    pending = set(open_files(directory))
    generation = read_generation(directory) + 1
    tmp = os.path.join(directory, f".{REQUEST_FILE}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{generation}\n")
    os.replace(tmp, os.path.join(directory, REQUEST_FILE))
    deadline = time.monotonic() + timeout_s
    while True:
        still_open = pending & set(open_files(directory))
        if not still_open:
            return sorted(completed_name(n) for n in pending)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(still_open)} event log files in {directory} still open after {timeout_s}s: "
                + ", ".join(sorted(still_open))
                + " (is botify running and writing to this directory?)"
            )
        time.sleep(poll_s)
        complete_orphans(directory)
