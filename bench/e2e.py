"""bench/e2e: wall time of each demo step (botify-demo) at a chosen scale.

    .venv/bin/python bench/e2e.py [--scale default] [demo flags...]

Runs the demo once and prints one line: seconds per step, each step's share
of the total, and the total against the 20-minute budget for 2 cores.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 20 * 60


def main() -> int:
    args = sys.argv[1:]
    if "--workdir" not in args:
        args += ["--workdir", str(REPO / "build" / "bench-e2e")]
    workdir = Path(args[args.index("--workdir") + 1])
    start = time.perf_counter()
    code = subprocess.run([str(REPO / ".venv" / "bin" / "botify-demo"), *args]).returncode
    wall = time.perf_counter() - start
    timings = json.loads((workdir / "timings.json").read_text()) if (workdir / "timings.json").exists() else {}
    total = sum(timings.values()) or 1.0
    steps = " | ".join(f"{name} {secs:.0f}s ({secs / total:.0%})" for name, secs in timings.items())
    print(f"e2e demo {' '.join(args)}: {steps} || total {wall:.0f}s wall, ratio to 20-min budget {wall / BUDGET_S:.2f}"
          f"{'' if code == 0 else f' (demo FAILED, exit {code})'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
