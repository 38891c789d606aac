"""Wall time of a block, logged as ``<what> in <seconds>s`` (bench/e2e.py reads these lines back)."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def logged_time(log: logging.Logger, what: str, *args) -> Iterator[None]:
    """Log ``what % args`` and the block's seconds when it ends, also when it raises (a failed step's time helps too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        log.info(what + " in %.1fs", *args, time.perf_counter() - started)
