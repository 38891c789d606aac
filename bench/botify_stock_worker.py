"""`botify serve` with gunicorn's own gevent worker instead of ``botify.balanced_worker``'s (a bench variant only).

    .venv/bin/python bench/botify_stock_worker.py serve [botify serve arguments]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gunicorn.workers import ggevent  # noqa: E402

from botify import balanced_worker  # noqa: E402
from botify.cli import main  # noqa: E402

# botify.server reads these two names when it configures gunicorn: the stock worker, and no slot to claim
balanced_worker.BalancedGeventWorker = ggevent.GeventWorker
balanced_worker.claim_slot = lambda arbiter, worker: None

if __name__ == "__main__":
    sys.exit(main())
