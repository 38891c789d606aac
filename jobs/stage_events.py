"""stage_events: uploaded JSON event logs -> validated, deduplicated Parquet partitioned by date.

The logs are parsed once here; extract_interactions and analyze_ab read the
result (``--input events/<dataset>``) without parsing JSON again. Output,
under ``<root>/events/<dataset>/``:

- ``date=YYYY-MM-DD/``  Parquet with the event log's fields (common.event_log_reader.STAGED_SCHEMA),
  ``date`` being the UTC date of the event's ``timestamp``
- ``_STAGED.json``  per date: events and exact duplicates dropped, and the staging run that
  wrote it; per run still serving a date: input, lines, malformed lines by reason, quarantine

Rejected lines go to ``<root>/quarantine/stage_events/<dataset>/<run>/``
with their reason and file; more than ``stage.max_error_ratio`` of them fails
the run and writes nothing. Exact duplicates (the rule in common.sessions)
are dropped: a copy shares its timestamp, hence its date, so deduplicating
the dates a run covers leaves none anywhere.

Incremental: ``_STAGED.json`` remembers every staged input file by name,
size and modification time (``inputs``), so a run reads only the files of
``--input`` it has not staged before, and re-writes only the dates those
files touch, merged with the rows those dates already hold (exact duplicates
dropped across old and new; each date's directory swapped in by rename, the
previous one removed after). A late file for an old date lands in that date;
untouched dates keep their files and the run that wrote them; staging the
same logs twice reads nothing the second time. A staged file whose size has
changed since is refused (``InputChanged``), never merged: completed log
files do not change, so it means a re-upload over an old name.
"""
from __future__ import annotations

import argparse
import json
import logging
import uuid
from typing import Dict, List, Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession

from common import event_log_reader, run_record, sessions
from common.config import load_config
from common.manifest import now_iso
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import FileStatus, HadoopStorage, Storage, join, sweep_leftovers

log = logging.getLogger(__name__)


# ---- pure transform (tested on tiny DataFrames) ---------------------------------------------


def staged_rows(events: DataFrame) -> DataFrame:
    """Valid events -> the staged columns: exact duplicates dropped, ``date`` added (STAGED_SCHEMA's order)."""
    deduplicated = sessions.drop_duplicate_events(events)
    return deduplicated.withColumn("date", event_log_reader.event_date()).select(*event_log_reader.STAGED_SCHEMA.fieldNames())


class InputChanged(RuntimeError):
    """A file already staged is listed with another size: refused rather than merged twice."""


def new_inputs(listing: Sequence[FileStatus], staged: Mapping[str, dict]) -> List[FileStatus]:
    """The listed files not staged before; raises :class:`InputChanged` for a staged file whose size changed.

    Only the size decides: a copy that keeps the bytes but not the modification time (a re-upload, a restore)
    is the same input.
    """
    changed = [f"{f.uri} (staged with {staged[f.uri]['size']} bytes by run {staged[f.uri]['run']}, now "
               f"{f.size})" for f in listing if f.uri in staged and int(staged[f.uri]["size"]) != f.size]
    if changed:
        raise InputChanged(f"{len(changed)} staged input file(s) changed size since they were staged; a completed "
                           f"log never changes, so nothing was merged (re-upload under a new name, or remove the "
                           f"file's entry from _STAGED.json to re-stage its dates by hand): " + "; ".join(changed))
    return [f for f in listing if f.uri not in staged]


def merged_manifest(previous: dict, run_id: str, run_facts: dict, dates: Dict[str, dict],
                    inputs: Sequence[FileStatus] = ()) -> dict:
    """The dataset's manifest after this run re-wrote ``dates`` from ``inputs``; a run that neither serves a
    date nor staged a remembered input is dropped (its counts belong to no rows any more)."""
    all_dates = {**previous.get("dates", {}), **{d: {**facts, "run": run_id} for d, facts in dates.items()}}
    all_inputs = {**previous.get("inputs", {}),
                  **{f.uri: {"size": f.size, "mtime_ms": f.mtime_ms, "run": run_id} for f in inputs}}
    live = {info["run"] for info in all_dates.values()} | {info["run"] for info in all_inputs.values()}
    runs = {r: info for r, info in previous.get("runs", {}).items() if r in live and r != run_id}
    runs[run_id] = {**run_facts, "dates": sorted(dates)}
    return {"job": "stage_events", "updated_at": now_iso(), "dates": dict(sorted(all_dates.items())), "runs": runs,
            "inputs": dict(sorted(all_inputs.items()))}


def merged_counts(previous_dates: Mapping[str, dict], valid_per_date: Mapping[str, int],
                  staged_per_date: Mapping[str, int]) -> Dict[str, dict]:
    """Per re-written date: the events it now holds, and every exact copy dropped there so far (the copies
    dropped before, plus those among the old rows and the new events together)."""
    out = {}
    for date in sorted(staged_per_date):
        before = previous_dates.get(date, {"events": 0, "duplicates": 0})
        dropped_now = int(before["events"]) + valid_per_date.get(date, 0) - staged_per_date[date]
        out[date] = {"events": staged_per_date[date], "duplicates": int(before["duplicates"]) + dropped_now}
    return out


# ---- I/O --------------------------------------------------------------------------------------


def swap_dates(storage: Storage, staged_tmp: str, dataset_uri: str, dates: Sequence[str], token: str) -> None:
    """Move each ``date=`` directory of ``staged_tmp`` over the dataset's one (the old one removed after).

    The names follow common.storage.atomic_output, so sweep_leftovers puts a
    date back if a run is killed between the two renames.
    """
    for date in dates:
        part = f"date={date}"
        final, old = join(dataset_uri, part), join(dataset_uri, f"_old-{part}-{token}")
        had_old = storage.exists(final)
        if had_old:
            storage.rename(final, old)
        storage.rename(join(staged_tmp, part), final)
        if had_old:
            storage.delete(old)


def sweep(storage: Storage, dataset_uri: str) -> None:
    """Undo what a killed run left: its temporary output, and any date caught between renames."""
    if not storage.exists(dataset_uri):
        return
    sweep_leftovers(storage, join(dataset_uri, "stage"))
    names = {uri.rstrip("/").rsplit("/", 1)[-1] for uri in storage.list(dataset_uri)}
    for name in names:
        if name.startswith("_old-date="):
            sweep_leftovers(storage, join(dataset_uri, name[len("_old-"):].rsplit("-", 1)[0]))


def run(spark: SparkSession, config: dict, input_uri: str, dataset: str, run_id: str) -> dict:
    root = resolve(config, "")
    storage = HadoopStorage(spark)
    dataset_uri = join(root, "events", dataset)
    sweep(storage, dataset_uri)
    previous = event_log_reader.read_staged_manifest(storage, dataset_uri) \
        if event_log_reader.is_staged(storage, dataset_uri) else {}
    listing = storage.list_files(input_uri)
    if not listing and not previous:  # a dataset staged before may have had its raw logs removed by retention
        raise FileNotFoundError(f"stage_events: no log files under {input_uri}")
    todo = new_inputs(listing, previous.get("inputs", {}))
    if not todo:
        log.info("staged %s -> %s: all %d files staged before, nothing to read", input_uri, dataset_uri, len(listing))
        run_record.read("event log lines", input_uri, 0)
        return {"dataset": dataset_uri, "run": run_id, "lines": 0, "malformed": {}, "quarantine": None, "dates": {},
                "files": {"listed": len(listing), "new": 0}}
    with run_record.stage("read"):
        loaded = event_log_reader.load_events(spark, storage, [f.uri for f in todo],
                                              join(root, "quarantine", "stage_events", dataset, run_id),
                                              float(config["stage"]["max_error_ratio"]))
        valid_per_date = {r["date"]: r["count"] for r in
                          loaded.events.groupBy(event_log_reader.event_date().alias("date")).count().collect()}
    touched = sorted(valid_per_date)
    token = uuid.uuid4().hex[:12]
    staged_tmp = join(dataset_uri, f"_tmp-stage-{token}")
    try:
        with run_record.stage("write"):
            merged = loaded.events
            already = [d for d in touched if d in previous.get("dates", {})]
            if already:  # the rows those dates hold, read before their directories are swapped
                merged = merged.unionByName(event_log_reader.read_staged(spark, dataset_uri, already))
            staged_rows(merged).write.partitionBy("date").parquet(staged_tmp)
            # Counts from what was written, not from the plan that wrote it.
            staged_per_date = {r["date"]: r["count"] for r in spark.read.schema(event_log_reader.STAGED_SCHEMA)
                               .parquet(staged_tmp).groupBy("date").count().collect()}
    except BaseException:
        storage.delete(staged_tmp)
        raise
    finally:
        loaded.release()
    dates = merged_counts(previous.get("dates", {}), valid_per_date, staged_per_date)
    swap_dates(storage, staged_tmp, dataset_uri, list(dates), token)
    storage.delete(staged_tmp)
    run_facts = {"input": input_uri, "files": len(todo), "lines": loaded.lines, "malformed": loaded.malformed,
                 "quarantine": loaded.quarantine, "staged_at": now_iso()}
    manifest = merged_manifest(previous, run_id, run_facts, dates, todo)
    storage.write_atomically(join(dataset_uri, event_log_reader.STAGED_MANIFEST),
                             json.dumps(manifest, indent=2, sort_keys=True).encode())
    run_record.read("event log lines", input_uri, loaded.lines)
    run_record.quarantined(loaded.malformed)
    for date, facts in dates.items():
        run_record.wrote(f"events date={date}", join(dataset_uri, f"date={date}"), facts["events"])
    log.info("staged %d new of %d files under %s -> %s: %d lines, %d events over %d dates", len(todo), len(listing),
             input_uri, dataset_uri, loaded.lines, sum(d["events"] for d in dates.values()), len(dates))
    return {"dataset": dataset_uri, "run": run_id, "lines": loaded.lines, "malformed": loaded.malformed,
            "quarantine": loaded.quarantine, "dates": dates, "files": {"listed": len(listing), "new": len(todo)}}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stage_events", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--input", required=True, help="event logs URI, directory or glob (e.g. logs/botify)")
    parser.add_argument("--dataset", required=True,
                        help="staged dataset name: writes <root>/events/<dataset>/ (letters, digits, '.', '_', '-')")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    if not args.dataset or not all(c.isalnum() or c in "._-" for c in args.dataset) or args.dataset[0] in "._-":
        raise SystemExit(f"stage_events: --dataset {args.dataset!r}: letters, digits, '.', '_', '-' only")
    config = load_config(args.config, args.overrides)
    spark = get_session("stage_events", args.profile)
    result = run(spark, config, resolve(config, args.input), args.dataset, args.run)
    print(json.dumps({k: result[k] for k in ("dataset", "run", "lines", "malformed")}
                     | {"dates": len(result["dates"]), "events": sum(d["events"] for d in result["dates"].values())}))
    return 0
