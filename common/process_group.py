"""Stopping a child together with everything it started.

Long-lived children (botify's gunicorn master and workers, Spark's JVM and its Python workers, Hadoop's mini
cluster, a standalone Spark master) are started with ``start_new_session=True`` so that one signal to the
group reaches every descendant; this is the one place that sends it (and that kills one outright, as a
crash would, for the fault tests).
"""
from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, timeout: float = 20.0, kill_timeout: float = 10.0) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it if ``proc`` is still alive after ``timeout`` seconds.

    ``proc`` must lead its own group (``start_new_session=True``): otherwise the signal would reach the caller.
    """
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads, at once: what a crash or an OOM killer does (fault tests)."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
