"""The nightly's outcome for Prometheus: a node_exporter textfile-collector file (docs/deploy.md).

``write_textfile(path, date, rows)`` is called by botify-daily at the end of
each night with the night's table rows (``pipeline.daily.night_row``) and
replaces ``path`` (e.g. ``<textfile dir>/botify_nightly.prom``) atomically
(prometheus_client's ``write_to_textfile``: a temporary file, then a rename),
so node_exporter never reads half a file. It holds:

- ``botify_nightly_last_run_timestamp_seconds``: when the last night ended;
- ``botify_nightly_last_success_timestamp_seconds``: when the last night with
  no failed step ended. A failed night keeps the value it finds in the file it
  replaces (0: no success recorded yet), so "how long since a good night"
  survives failures;
- ``botify_nightly_date_timestamp_seconds``: the last night's date (00:00 UTC);
- ``botify_nightly_failed{step}``: 1 for the step that failed in this run, else 0;
- ``botify_nightly_step_seconds{step}``: each step's duration, where the row has one;
- ``botify_nightly_held``: 1 when a step was skipped because serving is held.

The metric families are built directly (``GaugeMetricFamily``), so a
``PROMETHEUS_MULTIPROC_DIR`` in the environment changes nothing.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Iterable, Mapping, Optional, Sequence, Union

log = logging.getLogger(__name__)

PREFIX = "botify_nightly"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
FAILED, HELD = "failed", "held"  # run_record.FAILED; pipeline.daily.HELD


def _epoch(moment: Union[None, float, int, dt.datetime]) -> float:
    if moment is None:
        return time.time()
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            raise ValueError("finished_at: a timezone-aware datetime (or epoch seconds)")
        return moment.timestamp()
    return float(moment)


def _seconds(value) -> Optional[float]:
    try:
        return float(str(value).replace(",", ""))
    except (TypeError, ValueError):
        return None  # "-": the step did not run and has no record


def previous_success(path: str) -> float:
    """The last-success time in the file at ``path`` (0 when there is none or it cannot be read)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return 0.0
    except OSError as exc:
        log.warning("%s not read (%s): the last success is taken as never", path, exc)
        return 0.0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError as exc:
        log.warning("%s is not in the Prometheus text format (%s): the last success is taken as never", path, exc)
    return 0.0


class _Night:
    """A collector that yields the night's gauges once (registered in a registry of its own)."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def families(date: str, rows: Sequence[Mapping], finished_at: float, last_success: float) -> list:
    from prometheus_client.core import GaugeMetricFamily

    day = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(), tzinfo=dt.timezone.utc).timestamp()
    failed = GaugeMetricFamily(f"{PREFIX}_failed", "1 for the step that failed in the last nightly run, else 0",
                               labels=["step"])
    seconds = GaugeMetricFamily(f"{PREFIX}_step_seconds", "Duration of each step of the last night (this run's, "
                                "or the earlier run's for a step it skipped)", labels=["step"])
    night_failed = False
    for row in rows:
        step_failed = str(row["status"]) == FAILED
        night_failed = night_failed or step_failed
        failed.add_metric([row["step"]], 1.0 if step_failed else 0.0)
        took = _seconds(row.get("seconds"))
        if took is not None:
            seconds.add_metric([row["step"]], took)
    if not night_failed:
        last_success = finished_at
    held = any(str(row["status"]) == HELD for row in rows)
    return [
        GaugeMetricFamily(f"{PREFIX}_last_run_timestamp_seconds", "When the last nightly run ended (Unix time)",
                          value=finished_at),
        GaugeMetricFamily(LAST_SUCCESS, "When the last nightly run without a failed step ended (Unix time; "
                          "0: none recorded)", value=last_success),
        GaugeMetricFamily(f"{PREFIX}_date_timestamp_seconds", "The date of the last night run (00:00 UTC, Unix time)",
                          value=day),
        failed,
        seconds,
        GaugeMetricFamily(f"{PREFIX}_held", "1 when the last night skipped a step because serving is held "
                          "(botify hold / rollback)", value=1.0 if held else 0.0),
    ]


def write_textfile(path: Union[str, os.PathLike], date: str, rows: Iterable[Mapping],
                   finished_at: Union[None, float, dt.datetime] = None) -> None:
    """Replace ``path`` (ending in ``.prom``) with the night's gauges; ``finished_at`` defaults to now."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    path = os.fspath(path)
    if not path.endswith(".prom"):
        raise ValueError(f"{path}: node_exporter's textfile collector reads only files ending in .prom")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Night(families(date, list(rows), _epoch(finished_at), previous_success(path))))
    write_to_textfile(path, registry)
