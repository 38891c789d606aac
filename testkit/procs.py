"""This host's processes as tests look for them: each one's pid and command line, from /proc."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Tuple


def command_lines() -> Iterator[Tuple[int, str]]:
    """(pid, command line with spaces between its arguments) of every process still there when read."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited while we looked
            continue
        yield int(pid), cmdline
