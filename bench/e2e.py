"""bench/e2e: wall time of each demo step (botify-demo) at a chosen scale, and the memory it took.

    .venv/bin/python bench/e2e.py [--scale default|seed] [demo flags...]

Runs the demo once and prints one line: seconds per step, each step's share
of the total, the peak memory of the whole process tree (the sum of every
descendant's resident set, sampled twice a second, and the largest single
process as the kernel counted it), train_multidae's fixed pieces as its log
states them (Spark session, split, petastorm materialisation, rank launch,
model and loader, TorchDistributor in all, publishing), and the total against
the budget for 2 cores: 15 minutes at the seed scale, 20 otherwise.
"""
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGETS_S = {"seed": 15 * 60}
DEFAULT_BUDGET_S = 20 * 60


def _children() -> dict:
    """pid -> parent pid of every process (Linux /proc)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree_rss_bytes(root: int) -> int:
    parents = _children()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


# train_multidae's log lines that time its fixed pieces (jobs/train_multidae.py, jobs/multidae_training.py).
TRAINING_PIECES = {
    "session": r"Spark session in ([\d.]+)s",
    "split": r"held-out users prepared in ([\d.]+)s",
    "petastorm": r"materialised to Parquet in ([\d.]+)s",
    "rank launch": r"start-up: ([\d.]+)s from launch",
    "model+loader": r"joining the process group, ([\d.]+)s model and data loader",
    "ranks in all": r"TorchDistributor ran the ranks in ([\d.]+)s",
    "publish": r"published in ([\d.]+)s",
}


def training_pieces(log_text: str) -> str:
    """'session 8s, split 27s, ...' from a train_multidae log (the slowest rank where each rank logs one)."""
    found = []
    for name, pattern in TRAINING_PIECES.items():
        values = [float(v) for v in re.findall(pattern, log_text)]
        if values:
            found.append(f"{name} {max(values):.0f}s")
    return ", ".join(found) or "not logged"


def main() -> int:
    args = sys.argv[1:]
    if "--workdir" not in args:
        args += ["--workdir", str(REPO / "build" / "bench-e2e")]
    scale = args[args.index("--scale") + 1] if "--scale" in args else "default"
    budget = BUDGETS_S.get(scale, DEFAULT_BUDGET_S)
    workdir = Path(args[args.index("--workdir") + 1])
    start = time.perf_counter()
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "botify-demo"), *args])
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    sampler.join()
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    timings = json.loads((workdir / "timings.json").read_text()) if (workdir / "timings.json").exists() else {}
    total = sum(timings.values()) or 1.0
    steps = " | ".join(f"{name} {secs:.0f}s ({secs / total:.0%})" for name, secs in timings.items())
    train_log = workdir / "logs" / "train_multidae.log"
    pieces = training_pieces(train_log.read_text(errors="replace")) if train_log.exists() else "no log"
    print(f"e2e demo {' '.join(args)}: {steps} || train_multidae: {pieces} || peak RSS {peak[0] / 2**30:.1f} GiB (process tree), "
          f"{largest / 2**30:.1f} GiB (largest process) || total {wall:.0f}s wall, "
          f"ratio to {budget // 60}-min budget {wall / budget:.2f}"
          f"{'' if code == 0 else f' (demo FAILED, exit {code})'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
