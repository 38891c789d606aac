"""Child processes the demo and the daily run start: each step a command (argv list,
never a shell string), each long-lived service in its own process group so that
stopping it also stops what it started (gunicorn workers, Spark's JVM, Python workers)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from common.process_group import stop_group

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent


class StepFailed(RuntimeError):
    """A step's command exited non-zero."""


def command(name: str) -> str:
    """A console script of this environment (``botify``, ``botify-upload``...)."""
    path = BIN / name
    return str(path) if path.exists() else name


def run(argv: Sequence[str], env: Optional[Dict[str, str]] = None, log_file: Optional[Path] = None,
        cwd: Optional[Path] = None) -> None:
    """Run one step to completion; its output goes to the terminal or to ``log_file``.

    The child gets its own process group: on Ctrl-C or a failure elsewhere the
    whole group (spark-submit's JVM and its Python workers too) is stopped.
    """
    full_env = {**os.environ, **(env or {})}
    out = open(log_file, "ab") if log_file else None
    proc = subprocess.Popen(list(argv), env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if out else None,
                            start_new_session=True)
    try:
        code = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    finally:
        if out:
            out.close()
    if code != 0:
        where = f" (log: {log_file})" if log_file else ""
        raise StepFailed(f"{Path(argv[0]).name} {' '.join(argv[1:3])} exited with {code}{where}")




class Service:
    """A long-running child (botify) with a readiness check over HTTP."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], log_file: Path):
        self.name, self.argv, self.env, self.log_file = name, argv, env, log_file
        self.proc: Optional[subprocess.Popen] = None

    def start(self, health_url: str, timeout: float = 120.0) -> None:
        out = open(self.log_file, "ab")
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StepFailed(f"{self.name} exited with {self.proc.returncode} while starting (log: {self.log_file})")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise StepFailed(f"{self.name} did not answer {health_url} within {timeout}s (log: {self.log_file})")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None
