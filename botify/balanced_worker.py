"""gunicorn's gevent worker, except that it leaves a new connection to a sibling worker that holds fewer.

gunicorn's workers share one listening socket and each accepts what it can, so
a burst of connections (a client pool starting, a load generator) can land
64/0 or 45/19 on two workers. The kernel gives each busy worker the same CPU,
so the connections of the fuller worker wait longer, in proportion to its
share, for as long as they stay open: at 64 keep-alive connections that uneven
share was botify's p99 (docs/benchmarks.md#botify). ``SO_REUSEPORT`` sockets
per worker do not fix it: the kernel picks by a hash, so the share is a coin
toss per connection (26/38 is common).

Here every worker keeps its count of open connections in memory shared with
its siblings (``ConnectionCounts``, made by the arbiter before it forks) and
stops accepting while it holds more than the emptiest sibling (it looks again
on each turn of its event loop while a connection waits). A sibling that has
not checked in for ``STALE_S`` (hung, or not started yet) does not count, so a
stuck worker never keeps the others from accepting. The price: a new
connection waits for the emptier sibling's next loop turn even when this
worker is free, which costs a busy or descheduled sibling's turn (milliseconds
on an idle machine) once per connection, not per request.
"""
from __future__ import annotations

import mmap
import struct
import time

from gevent.pool import Pool
from gunicorn.workers import ggevent

SLOTS = 64  # more workers than this per server: the extra ones are not balanced
STALE_S = 3.0  # gunicorn's gevent worker checks in (``notify``) every second
_CELL = struct.Struct("d")  # open connections, last check-in (monotonic clock: one per machine)


class ConnectionCounts:
    """Per worker slot: open connections and last check-in, in anonymous memory the forked workers share.

    Each slot is written by its one worker (and by the arbiter before that worker exists), read by all."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self._mem = mmap.mmap(-1, 2 * slots * _CELL.size)

    def _get(self, i: int) -> float:
        return _CELL.unpack_from(self._mem, i * _CELL.size)[0]

    def _set(self, i: int, value: float) -> None:
        _CELL.pack_into(self._mem, i * _CELL.size, value)

    def claim(self, taken) -> int:
        """A slot for a worker about to be forked (in the arbiter); ``taken``: the slots of live workers."""
        slot = next((i for i in range(self.slots) if i not in taken), None)
        if slot is not None:
            self._set(slot, 0)
            self._set(self.slots + slot, 0.0)
        return slot

    def add(self, slot: int, delta: int) -> None:
        self._set(slot, self._get(slot) + delta)

    def check_in(self, slot: int) -> None:
        self._set(self.slots + slot, time.monotonic())

    def leave(self, slot: int) -> None:
        """The worker stops accepting (shutting down, or gone): it no longer counts as a sibling."""
        self._set(self.slots + slot, 0.0)

    def over_share(self, slot: int) -> bool:
        """More open connections in ``slot`` than in the emptiest sibling that checked in lately."""
        now, mine = time.monotonic(), self._get(slot)
        for i in range(self.slots):
            if i != slot and now - self._get(self.slots + i) < STALE_S and self._get(i) < mine:
                return True
        return False


COUNTS = ConnectionCounts()  # made at import, in the arbiter: every worker forked later shares it


def claim_slot(arbiter, worker) -> None:
    """gunicorn ``pre_fork`` hook (in the arbiter)."""
    worker.balance_slot = COUNTS.claim({getattr(w, "balance_slot", None) for w in arbiter.WORKERS.values()})


def release_slot(arbiter, worker) -> None:
    """gunicorn ``child_exit`` hook (in the arbiter): a killed worker's last check-in must not hold its siblings."""
    if getattr(worker, "balance_slot", None) is not None:
        COUNTS.leave(worker.balance_slot)


class BalancedPool(Pool):
    """The connection pool of one worker's server: "full" also while the worker holds more than its share."""

    def __init__(self, size, slot: int):
        super().__init__(size)
        self.slot = slot

    def full(self) -> bool:
        # When "full", gevent's server stops accepting until the pool has room, which it has unless really full:
        # so it looks again on its next loop turn while a connection waits, and takes it if still its turn.
        return super().full() or COUNTS.over_share(self.slot)


class BalancedGeventWorker(ggevent.GeventWorker):
    def run(self):
        slot = getattr(self, "balance_slot", None)
        if slot is not None:
            COUNTS.check_in(slot)
            self.log.info("worker %s takes connections in turn with its siblings (slot %d)", self.pid, slot)
            # GeventWorker.run builds each server's pool from this module global; this process runs only this worker
            ggevent.Pool = lambda size: BalancedPool(size, slot)
        super().run()

    def notify(self):
        super().notify()
        if self.alive and getattr(self, "balance_slot", None) is not None:
            COUNTS.check_in(self.balance_slot)

    def handle_exit(self, sig, frame):
        # Draining (SIGTERM, a reload replacing it): it accepts no more, so it must not make its siblings wait.
        super().handle_exit(sig, frame)
        if getattr(self, "balance_slot", None) is not None:
            COUNTS.leave(self.balance_slot)

    def handle(self, listener, client, addr):
        slot = getattr(self, "balance_slot", None)
        if slot is None:
            return super().handle(listener, client, addr)
        COUNTS.add(slot, 1)
        try:
            super().handle(listener, client, addr)
        finally:
            COUNTS.add(slot, -1)
