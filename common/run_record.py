"""Run records: ``<root>/runs/<job>/<run-id>.json``, what one spark-submit job run did.

The launcher (launcher/launch.py) opens a record around the job; the job only
reports what it read and wrote (:func:`read`, :func:`wrote`), what it
quarantined (:func:`quarantined`) and times its stages (:func:`stage`). The
record is written, atomically, when the job's Spark session starts (status
``running``: a driver killed outright leaves that) and again when the job ends
(``succeeded`` or ``failed`` with its error). Outside the launcher (a job's
``main`` called from a test) there is no record and the reporting calls do
nothing.

Run ids sort by start time (``YYYYmmddTHHMMSSZ-<suffix>``) within a job's folder;
botify-daily gives its steps ``<start>-daily-<date>`` so it can find them again.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from common.config import ConfigError, add_config_arguments, load_config
from common.manifest import now_iso
from common.paths import root_uri
from common.spark import get_session, on_session_started
from common.stopwatch import logged_time
from common.storage import Storage, join

log = logging.getLogger(__name__)

RUNS = "runs"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
RECORD_ID_FLAG = "--record-id"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Spark's default spark.redaction.regex: configuration values under such keys never reach a record.
_SECRET = re.compile(r"(?i)secret|password|token|access[.]?key")
_ERROR_CHARS = 4000  # a Py4J error carries the whole JVM stack; its head says what failed

_active: Optional["RunRecord"] = None


def new_id(suffix: Optional[str] = None, now: Optional[dt.datetime] = None) -> str:
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suffix or uuid.uuid4().hex[:6]}"


def check_id(record_id: str) -> str:
    if not _ID.match(record_id):
        raise ValueError(f"run id {record_id!r}: letters, digits, '.', '_', '-' only (128 at most)")
    return record_id


def record_uri(root: str, job: str, record_id: str) -> str:
    return join(root, RUNS, job, f"{record_id}.json")


def redacted(config: Any) -> Any:
    if isinstance(config, Mapping):
        return {k: "*** (redacted)" if _SECRET.search(str(k)) else redacted(v) for k, v in config.items()}
    if isinstance(config, list):
        return [redacted(v) for v in config]
    return config


# ---- which code ran ------------------------------------------------------------------------


def git_commit(repo: Path) -> Optional[str]:
    """``<sha>``, ``<sha>-dirty`` with uncommitted changes to tracked files, None without git or a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                              timeout=20).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("botify-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_info_source() -> str:
    """``common/build_info.py`` for the code zip: a cluster node has no .git, so the commit is stamped at submit."""
    repo = Path(__file__).resolve().parent.parent
    return f"VERSION = {installed_version()!r}\nCOMMIT = {git_commit(repo) or 'unknown'!r}\n"


def build_info() -> Dict[str, str]:
    """The version and commit of the running code: the zip's stamp when there is one, else this checkout's git."""
    try:
        from common import build_info as stamped  # only in the code zip launcher/submit.py builds
        return {"version": stamped.VERSION, "commit": stamped.COMMIT}
    except ImportError:
        return {"version": installed_version(), "commit": git_commit(Path(__file__).resolve().parent.parent) or "unknown"}


def describe_error(exc: BaseException) -> str:
    """``Type: message``, led by the root cause when the JVM reports one.

    A Py4J error's text is the whole JVM stack with what really happened last
    (``Caused by: …DSQuotaExceededException: The DiskSpace quota … is exceeded``):
    cut at the record's length it would be lost, so that line comes first.
    """
    text = f"{type(exc).__name__}: {exc}".strip()
    causes = [line.strip()[len("Caused by: "):] for line in text.splitlines() if line.strip().startswith("Caused by: ")]
    root = _python_root_cause(text) or _jvm_root_cause(exc) or (causes[-1] if causes else None)
    return f"{root} (root cause of {text.splitlines()[0]})\n{text}" if root else text


# An exception line of Python's traceback format, and the types that only wrap what a task really raised.
_ERROR_LINE = re.compile(r"^(?:\[[^\]]*\]:?\s*)?(?:[\w.]+\.)?(\w+(?:Error|Exception)): \S")
_WRAPPERS = {"PythonException", "SparkException", "Py4JJavaError", "ChildFailedError"}


def _python_root_cause(text: str) -> Optional[str]:
    """In a Spark task's PythonException: the last error a Python process raised that wraps nothing (a
    TorchDistributor rank's own, under torchrun's ChildFailedError and the task's "Command ... failed")."""
    start = text.find("PythonException")
    if start < 0:
        return None
    found = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("\tat "):  # the JVM's frames: the Python traceback has ended
            break
        match = _ERROR_LINE.match(line.strip())
        if match and match.group(1) not in _WRAPPERS and not line.strip().startswith("RuntimeError: Command ["):
            found.append(line.strip())
    return found[-1] if found else None


def _jvm_root_cause(exc: BaseException) -> Optional[str]:
    """The innermost cause of a Py4J error's Java exception, asked of the JVM while it is still up."""
    cause = getattr(exc, "java_exception", None)
    try:
        if cause is None or cause.getCause() is None:
            return None
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString())
    except Exception:  # the gateway is gone: the text's "Caused by" lines are all there is
        return None


# ---- the record ---------------------------------------------------------------------------


class RunRecord:
    def __init__(self, job: str, arguments: Sequence[str], record_id: str, config: Optional[dict], root: Optional[str]):
        self.job, self.arguments, self.id = job, list(arguments), check_id(record_id)
        self.config, self.root = config, root
        self.started_at, self._started = now_iso(), time.perf_counter()
        self.status, self.error, self.finished_at, self.seconds = RUNNING, None, None, None
        self.inputs: List[dict] = []
        self.outputs: List[dict] = []
        self.quarantined: Dict[str, int] = {}
        self.stages: Dict[str, float] = {}
        self.attempts: List[dict] = []  # a stage retried inside the job (training after a lost executor)
        self.spark: Dict[str, Optional[str]] = {}
        self.code = build_info()
        self.exit_code = 0  # the job's return value, set by the launcher
        self.written: Optional[str] = None

    def to_json(self) -> dict:
        return {
            "job": self.job, "run_id": self.id, "status": self.status, "error": self.error,
            "arguments": self.arguments, "started_at": self.started_at, "finished_at": self.finished_at,
            "seconds": self.seconds, **self.code, "spark": self.spark,
            "inputs": self.inputs, "outputs": self.outputs, "quarantined": dict(sorted(self.quarantined.items())),
            "stages": self.stages, "attempts": self.attempts, "config": redacted(self.config),
        }

    def note_session(self, spark) -> None:
        conf = spark.sparkContext.getConf()
        self.spark = {"app_id": spark.sparkContext.applicationId, "master": spark.sparkContext.master,
                      "event_log_dir": conf.get("spark.eventLog.dir") if conf.get("spark.eventLog.enabled") == "true"
                      else None}

    def finish(self, error: Optional[str]) -> None:
        self.status = FAILED if error else SUCCEEDED
        self.error = error[:_ERROR_CHARS] if error else None
        self.finished_at = now_iso()
        self.seconds = round(time.perf_counter() - self._started, 3)

    def write(self, storage: Storage) -> str:
        if self.root is None:
            raise ConfigError("no storage root: the configuration could not be read")
        uri = record_uri(self.root, self.job, self.id)
        storage.write_atomically(uri, json.dumps(self.to_json(), indent=2, default=str).encode())
        self.written = uri
        return uri


def _job_config(job_args: Sequence[str]) -> tuple[Optional[dict], Optional[str]]:
    """The job's resolved configuration (its --config and --set, read as the job reads them) and storage root.

    A configuration the job cannot load either still names a root (the file's,
    or the default file's) so that the failure is recorded there.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_config_arguments(parser)
    try:
        known, _ = parser.parse_known_args(list(job_args))
    except SystemExit:
        known = argparse.Namespace(config="pipeline.yml", overrides=[])
    with contextlib.suppress(ConfigError, KeyError, TypeError):
        config = load_config(known.config, known.overrides)
        return config, root_uri(config)
    for name in (known.config, "pipeline.yml"):
        with contextlib.suppress(ConfigError, KeyError, TypeError):
            return None, root_uri(load_config(name))
    return None, None


def split_record_id(argv: Sequence[str]) -> tuple[Optional[str], List[str]]:
    """``--record-id ID`` is the launcher's, not the job's: take it out of the job's arguments."""
    args = list(argv)
    if RECORD_ID_FLAG in args:
        at = args.index(RECORD_ID_FLAG)
        if at + 1 >= len(args):
            raise ValueError(f"{RECORD_ID_FLAG} needs a value")
        record_id = check_id(args[at + 1])
        del args[at:at + 2]
        return record_id, args
    return None, args


def _storage_for_record():
    """HadoopStorage on the job's session (hdfs:// roots need it); a job that failed before starting one gets one."""
    from common.storage import HadoopStorage

    return HadoopStorage(get_session("run-record"))


def _write(record: RunRecord) -> None:
    try:
        uri = record.write(_storage_for_record())
        log.info("run record %s: %s", record.status, uri)
    except Exception as exc:  # the job's own outcome must not be masked by the record's
        log.error("could not write the run record of %s %s: %s: %s", record.job, record.id, type(exc).__name__, exc)


@contextlib.contextmanager
def recording(job: str, job_args: Sequence[str], record_id: Optional[str] = None) -> Iterator[RunRecord]:
    """Around one job run: the record is active inside, written when the session starts and when the job ends.

    The job's exit code is set with :meth:`exit_code` by the launcher; an
    exception fails the record with its type and message and propagates. A
    ``SystemExit`` of 0 (``--help``) writes nothing.
    """
    global _active
    config, root = _job_config(job_args)
    record = RunRecord(job, job_args, record_id or new_id(), config, root)
    _active = record
    error: Optional[str] = None
    try:
        yield record
        if record.exit_code:
            error = f"exit code {record.exit_code}"
    except SystemExit as exc:
        if exc.code in (0, None):
            _active = None
            raise
        error = f"SystemExit: {exc.code}"
        raise
    except BaseException as exc:
        error = describe_error(exc)
        raise
    finally:
        if _active is record:
            _active = None
            record.finish(error)
            _write(record)


# ---- what jobs call -------------------------------------------------------------------------


def active() -> Optional[RunRecord]:
    return _active


def session_started(spark, seconds: float) -> None:
    """Called by common.spark.get_session (registered below) when it started a session: its time is the ``session`` stage and the
    first session of a recorded run writes the ``running`` record."""
    record = _active
    if record is None or record.spark:
        return
    record.stages["session"] = round(seconds, 3)
    try:
        record.note_session(spark)
        from common.storage import HadoopStorage

        record.write(HadoopStorage(spark))
    except Exception as exc:
        log.warning("could not write the running record of %s: %s: %s", record.job, type(exc).__name__, exc)


on_session_started(session_started)


def read(name: str, uri: Optional[str], rows: Optional[int]) -> None:
    """The job read ``rows`` rows (lines, events, users...) of ``name`` from ``uri``."""
    if _active is not None:
        _active.inputs.append({"name": name, "uri": uri, "rows": None if rows is None else int(rows)})


def wrote(name: str, uri: Optional[str], rows: Optional[int]) -> None:
    """The job published ``rows`` rows of ``name`` at ``uri`` (counted from what was written)."""
    if _active is not None:
        _active.outputs.append({"name": name, "uri": uri, "rows": None if rows is None else int(rows)})


def quarantined(reasons: Mapping[str, int]) -> None:
    """Lines set aside, by reason (added up over calls)."""
    if _active is not None:
        for reason, n in reasons.items():
            if n:
                _active.quarantined[reason] = _active.quarantined.get(reason, 0) + int(n)


def attempted(stage_name: str, attempt: int, outcome: str, error: Optional[str] = None) -> None:
    """One attempt of a stage the job retries itself: its number, how it ended and why."""
    if _active is not None:
        _active.attempts.append({"stage": stage_name, "attempt": int(attempt), "outcome": outcome,
                                 "error": None if error is None else error[:2000]})


def configured(config: dict) -> None:
    """The configuration the job resolved itself (flags of its own folded in), instead of the launcher's reading."""
    if _active is not None:
        _active.config = config


@contextlib.contextmanager
def stage(name: str, what: Optional[str] = None, *args) -> Iterator[None]:
    """Time a stage of the job: logged as ``<what % args> in <s>s`` (default ``stage <name> in <s>s``)
    and added to the record's ``stages``."""
    started = time.perf_counter()
    try:
        with logged_time(log, what or "stage " + name.replace("%", "%%"), *args):
            yield
    finally:
        if _active is not None:
            _active.stages[name] = round(_active.stages.get(name, 0.0) + time.perf_counter() - started, 3)


# ---- reading records back (botify-daily) ---------------------------------------------------


def load(storage: Storage, uri: str) -> dict:
    record = json.loads(storage.read_bytes(uri))
    if not isinstance(record, dict) or "status" not in record:
        raise ValueError(f"{uri}: not a run record")
    return record


def find(storage: Storage, root: str, job: str, suffix: str = "") -> List[str]:
    """Record URIs of ``job`` whose run id ends with ``suffix``, oldest first."""
    names = [uri for uri in storage.list(join(root, RUNS, job))
             if uri.endswith(f"{suffix}.json") and not uri.rsplit("/", 1)[-1].startswith(("_", "."))]
    return sorted(names, key=lambda uri: uri.rsplit("/", 1)[-1])
