#!/usr/bin/env bash
# Submit a pipeline job: ./spark-submit.sh <job> [--master M] [--profile P] [--conf k=v] [--dry-run] [job args]
#   ./spark-submit.sh extract_interactions --run 2026-11-27
#   ./spark-submit.sh train_multidae --master yarn --set storage.root=hdfs:///user/me/botify
# The command itself is rendered by launcher/submit.py from conf/spark/<profile>.yml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${BOTIFY_PYTHON:-$here/.venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "spark-submit.sh: $python not found; run ./bootstrap.sh first (or set BOTIFY_PYTHON)" >&2
  exit 2
fi
if ! command -v java >/dev/null 2>&1 && [ ! -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
  echo "spark-submit.sh: Java not found: Spark needs Java 17 on PATH (or JAVA_HOME set)" >&2
  exit 2
fi
exec "$python" -m launcher.submit "$@"
