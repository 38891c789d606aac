"""spark-submit entry file: ``launch.py <job> [--record-id ID] [args]`` runs ``jobs.<job>.main(args)``.

spark-submit needs one Python file as its primary resource; the job modules
themselves travel in the code zip passed with ``--py-files``. Every run leaves
a run record, ``<root>/runs/<job>/<ID>.json`` (common.run_record; ``--record-id``
names it, default: its start time and a random suffix).
"""
import importlib
import logging
import sys


def run(argv):
    from common import run_record
    from common.config import ConfigError
    from common.event_log_reader import TooManyMalformed
    from jobs import JOBS

    if not argv or argv[0] not in JOBS:
        known = ", ".join(sorted(JOBS))
        print(f"unknown job {argv[0] if argv else ''!r}; known jobs: {known}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(JOBS[argv[0]])
    try:
        record_id, job_args = run_record.split_record_id(argv[1:])
    except ValueError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        with run_record.recording(argv[0], job_args, record_id) as record:
            record.exit_code = module.main(job_args) or 0
        return record.exit_code
    except (ConfigError, TooManyMalformed, FileNotFoundError) as exc:
        # Bad input or configuration: one clear line, not a traceback.
        print(f"{argv[0]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main():
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
