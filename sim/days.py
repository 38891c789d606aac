"""Calendar days for simulated logs: ``--start D --days N`` or ``--date D`` (docs/sim.md).

A day is a UTC day because stage_events files an event under the UTC date of
its time stamp: a day's events must all fall before the next midnight. Each
day plays its own sessions (a seed derived from the base seed and the date:
days differ, reruns repeat) in the same world, so the same users come back
day after day.
"""
from __future__ import annotations

import argparse
import datetime as dt
from typing import List, Optional

DAY_MS = 86_400_000


def iso_date(text: str) -> dt.date:
    """argparse type: a date written YYYY-MM-DD, as botify-daily takes it."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def add_calendar_arguments(parser: argparse.ArgumentParser):
    """``--start``/``--days`` and ``--date``; returns their exclusive group, for the command's fixed-clock option."""
    parser.add_argument("--days", type=int, metavar="N", help="number of days from --start (default 1)")
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument("--start", type=iso_date, metavar="YYYY-MM-DD",
                       help="first UTC day of --days days (the volume option is per day)")
    clock.add_argument("--date", type=iso_date, metavar="YYYY-MM-DD", help="simulate this UTC day (= --start D --days 1)")
    return clock


def calendar_days(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[List[dt.date]]:
    """The days asked for, in order; None when no calendar option was given (the command's fixed clock)."""
    if args.days is not None and args.start is None:
        parser.error("--days needs --start")
    if args.date is not None:
        return [args.date]
    if args.start is None:
        return None
    count = 1 if args.days is None else args.days
    if count < 1:
        parser.error(f"--days must be >= 1, got {count}")
    return [args.start + dt.timedelta(days=i) for i in range(count)]


def day_start_ms(day: dt.date) -> int:
    """The day's midnight UTC, in epoch milliseconds (botify's time stamps)."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000


def day_seed(seed: int, day: dt.date) -> int:
    """The seed of the day's sessions: ``seed`` then the date's digits, so no two (seed >= 0, day) share one."""
    return seed * 100_000_000 + day.year * 10_000 + day.month * 100 + day.day


def day_file_name(day: dt.date, part: int) -> str:
    """A day's ``part``-th log file: the date in the name keeps days apart and sorts them; ``.jsonl`` is what
    botify-upload ships (flat: neither it nor the jobs' reader descends into folders)."""
    return f"part-{day.isoformat()}-{part:05d}.jsonl"
