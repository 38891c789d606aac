"""spark-submit entry file: ``launch.py <job> [args]`` runs ``jobs.<job>.main(args)``.

spark-submit needs one Python file as its primary resource; the job modules
themselves travel in the code zip passed with ``--py-files``.
"""
import importlib
import logging
import sys


def run(argv):
    from common.config import ConfigError
    from common.event_log import TooManyMalformed
    from jobs import JOBS

    if not argv or argv[0] not in JOBS:
        known = ", ".join(sorted(JOBS))
        print(f"unknown job {argv[0] if argv else ''!r}; known jobs: {known}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(JOBS[argv[0]])
    try:
        return module.main(argv[1:]) or 0
    except (ConfigError, TooManyMalformed, FileNotFoundError) as exc:
        # Bad input or configuration: one clear line, not a traceback.
        print(f"{argv[0]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main():
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
