"""The accept rule of botify's gevent worker (``botify.balanced_worker``): take a new connection only while
holding no more than the emptiest sibling that checked in lately."""
import os
import time

from botify.balanced_worker import STALE_S, ConnectionCounts


def test_slots_are_claimed_free_and_reset():
    counts = ConnectionCounts(slots=4)
    assert counts.claim(taken=set()) == 0
    assert counts.claim(taken={0, 2}) == 1
    assert counts.claim(taken={0, 1, 2, 3}) is None  # no slot: such a worker is simply not balanced
    counts.add(3, 5)
    counts.check_in(3)
    assert counts.claim(taken={0, 1, 2}) == 3
    counts.check_in(0)
    counts.add(0, 1)
    assert not counts.over_share(0)  # a claimed slot starts empty and not checked in: its worker is not up yet
    counts.check_in(3)
    assert counts.over_share(0)  # now it is, holding none of the previous owner's 5
    counts.add(3, 1)
    assert not counts.over_share(0)


def test_a_worker_holding_more_than_a_live_sibling_waits_its_turn():
    counts = ConnectionCounts(slots=3)
    for slot in (0, 1, 2):
        counts.check_in(slot)
    assert not any(counts.over_share(s) for s in (0, 1, 2))  # all equal: everyone may accept
    counts.add(0, 1)
    assert counts.over_share(0) and not counts.over_share(1) and not counts.over_share(2)
    counts.add(1, 1)
    assert counts.over_share(0) and counts.over_share(1) and not counts.over_share(2)
    counts.add(2, 1)
    assert not any(counts.over_share(s) for s in (0, 1, 2))
    counts.add(2, -1)  # a connection of worker 2 closed
    assert counts.over_share(0) and counts.over_share(1) and not counts.over_share(2)


def test_a_sibling_that_stopped_checking_in_never_did_or_left_does_not_hold_the_others_back():
    counts = ConnectionCounts(slots=3)
    counts.check_in(0)
    counts.add(0, 10)
    assert not counts.over_share(0)  # slots 1 and 2 never checked in (not started, or no worker)
    counts._set(counts.slots + 1, time.monotonic() - STALE_S - 1)  # worker 1 last checked in long ago: hung
    assert not counts.over_share(0)
    counts.check_in(1)
    assert counts.over_share(0)
    counts.leave(1)  # worker 1 shuts down, or the arbiter reaped it
    assert not counts.over_share(0)


def test_forked_workers_see_each_others_counts():
    counts = ConnectionCounts(slots=2)
    counts.check_in(0)
    pid = os.fork()
    if pid == 0:  # the child plays worker 1: checks in and opens three connections
        counts.check_in(1)
        counts.add(1, 3)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    counts.add(0, 2)
    assert not counts.over_share(0)  # 2 < 3: the child's counts are visible here
    counts.add(0, 2)
    assert counts.over_share(0)
