"""A user's events in one order, exact duplicates, and session boundaries: the rule every job shares.

botify logs ``next`` when a listener asks for a track and ``last`` when the
listening session ends; a session is a user's events up to and including a
``last``. Both extract_interactions (which tracks began a session) and
analyze_ab (session length and time) cut sessions here, so they cannot
disagree.

**Order.** Per user by ``timestamp`` (milliseconds, taken by botify when it
logs). Within the same millisecond a ``next`` sorts before a ``last``. Two
events of one user in one millisecond are almost always the end of a session:
a client sends the session's final ``next``, gets its answer and immediately
sends ``last`` for the same listen (``sim/remote_agent.py``: ``recommend``
then ``finish``; the user's simulated listening takes no wall time), so
against a fast botify that pair shares a millisecond in every session. The
opposite tie, a ``last`` and the *next session's* first ``next``, needs the
same user to start a new session within that millisecond: rare for the
simulators (``sim/run.py`` draws a random user for each session), and not
something a person does. Sorting ``next`` first keeps the common case right; sorting
``last`` first would move every such final track into the following session.

Two ``next`` events of one user in one millisecond are a session's
consecutive requests (against a fast botify the first two often are): each
names the track it answers, so they go in the order of the recommendation
chain, the one whose answer the other plays first. That order decides one
thing, which of them opens the session (the listener's own pick, what
extract_interactions counts as ``starts``); session numbers, lengths, times
and latencies do not depend on it. The window itself sorts such ties by
track; :func:`with_sessions` reads the chain from the neighbouring rows of
the same window (no second sort), pairwise: a request answering its
neighbour comes after it, unless each answers the other, when the sort's
order stands. Remaining ties go by track, time and latency. Events still tied after that
are of one kind (all ``next`` or all ``last``) and differ at most in
recommendation and experiments: swapping them moves no session boundary, no
session's length, time, latency or start, and no (user, track)'s session
starts, so everything computed from the order is the same whatever order the
engine leaves them in. Sorting by the experiments map too would cost a sorted
array of its entries per event carried through the shuffle, for nothing.

**Duplicates.** An event logged twice (a log uploaded twice) is an exact
copy: every field equal, recommendation, latency and experiments included.
Only such copies are dropped; two requests in the same millisecond that got
different recommendations are two events. Copies are found by comparing each
event with the one before it in the order above extended by recommendation
and experiments, where identical events are adjacent; the window shares its
partitioning by user with the session window, one shuffle for both.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

# Compared one by one (with the experiments below) to tell an exact copy; user is the partition.
_SCALARS = ("message", "timestamp", "track", "time", "latency", "recommendation")


def _is_last() -> Column:
    return (F.col("message") == F.lit("last")).cast("int")


def _experiments() -> Column:
    # Maps are not comparable in Spark SQL; their sorted entries are, and equal maps give equal arrays.
    return F.array_sort(F.map_entries("experiments"))


def _order_keys() -> list:
    # ``next`` before ``last``: the two messages there are, in descending order. A plain column, not a
    # computed flag, so the session window sees its order as a prefix of the duplicate check's and
    # reuses that sort (a computed key gets a new alias in each window, and a second sort).
    return [F.col("timestamp"), F.col("message").desc(), "track", "time", "latency"]


def user_order() -> WindowSpec:
    """Each user's events in the one order (see the module docstring)."""
    return Window.partitionBy("user").orderBy(*_order_keys())


def _copy_order() -> WindowSpec:
    """The order with every field as a key, so that identical events are adjacent."""
    return Window.partitionBy("user").orderBy(*_order_keys(), "recommendation", _experiments())


def drop_duplicate_events(events: DataFrame) -> DataFrame:
    """Drop exact copies of an event (every field equal); keep everything else."""
    order = _copy_order()
    previous = [F.lag(c).over(order).eqNullSafe(F.col(c)) for c in _SCALARS]
    previous.append(F.lag(_experiments()).over(order).eqNullSafe(_experiments()))
    copy = reduce(lambda a, b: a & b, previous)
    return events.withColumn("_copy", copy).where(~F.col("_copy")).drop("_copy")


def _chain_reverses(order: WindowSpec, earlier: int, later: int) -> Column:
    """The two adjacent rows at these offsets from this row (negative: before it) are ``next`` events of one
    millisecond, and the chain puts the later-sorted one first: the earlier-sorted one plays its recommendation,
    not the other way round."""
    def at(name: str, offset: int) -> Column:
        column = F.col(name)
        if offset == 0:
            return column
        return F.lag(column, -offset).over(order) if offset < 0 else F.lead(column, offset).over(order)
    same = (at("timestamp", earlier) == at("timestamp", later)) & (at("message", earlier) == F.lit("next")) \
        & (at("message", later) == F.lit("next"))
    chain = (at("track", earlier) == at("recommendation", later)) \
        & ~at("track", later).eqNullSafe(at("recommendation", earlier))
    return F.coalesce(same & chain, F.lit(False))


def with_sessions(events: DataFrame) -> DataFrame:
    """Add ``session`` (0, 1, ... per user: the number of ``last`` events before this one) and
    ``opens_session`` (true for the user's first event and for each event right after a ``last``, in the
    order of the module docstring: two ``next`` events of one millisecond by their recommendation chain)."""
    order = user_order()
    before = order.rowsBetween(Window.unboundedPreceding, -1)

    def after_last(offset: int) -> Column:  # the event ``offset`` rows back is a ``last``, or there is none
        return F.coalesce(F.lag(_is_last(), offset).over(order) == 1, F.lit(True))

    opens = (F.when(_chain_reverses(order, 0, 1), F.lit(False))    # the next row's request came before this one
             .when(_chain_reverses(order, -1, 0), after_last(2))  # this request came before the previous row's
             .otherwise(after_last(1)))
    return events.withColumn(
        "session", F.coalesce(F.sum(_is_last()).over(before), F.lit(0)).cast("int")
    ).withColumn("opens_session", opens)
