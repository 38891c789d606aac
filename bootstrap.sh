#!/usr/bin/env bash
# Create .venv inside the repo with the pinned set and the project installed.
# Never touches the system Python. Re-running is cheap: it re-installs only
# when requirements.txt or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "bootstrap: Python 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
command -v java >/dev/null || { echo "bootstrap: Java 17 is required for Spark (no 'java' on PATH)" >&2; exit 1; }
stamp=$(cat requirements.txt setup.py | sha256sum | cut -c1-16)
if ! [ -x .venv/bin/python ] || [ "$(cat .venv/.botify-stamp 2>/dev/null)" != "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  .venv/bin/python -m pip check
  echo "$stamp" > .venv/.botify-stamp
fi
# Hadoop's own servers for the YARN + HDFS tests and `botify-demo --cluster yarn`: Maven fetches the pinned
# jars into ~/.m2 once and compiles the launcher in hadoop/ (a no-op when nothing changed).
if command -v mvn >/dev/null; then
  .venv/bin/python -c 'from pipeline.minicluster import build_launcher; build_launcher()'
else
  echo "bootstrap: no Maven (mvn): the Hadoop mini cluster (tests/yarn, botify-demo --cluster yarn) cannot be built" >&2
fi
# promtool checks and unit-tests conf/prometheus/ (tests/ops/test_deploy.py; docs/deploy.md#prometheus). Debian's
# `prometheus` package ships /usr/bin/promtool (it also installs the Prometheus server, which a systemd host starts:
# `systemctl disable --now prometheus` where it is not wanted). Without root the tests say so and skip.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null; } || echo "bootstrap: apt-get install prometheus failed: no promtool, the Prometheus rule tests skip" >&2
  else
    echo "bootstrap: no promtool (the Prometheus rule tests skip): as root, apt-get install --no-install-recommends" \
         "prometheus (Debian/Ubuntu), or put promtool from a Prometheus release on PATH" >&2
  fi
fi
# kinit for the Kerberos-secured HDFS (botify-minicluster --kerberos, tests/yarn/test_kerberos.py): Debian's
# `krb5-user` (MIT Kerberos clients; hdfs-native uses the libgssapi_krb5 it pulls in). Without it those tests skip.
if ! command -v kinit >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends krb5-user \
        >/dev/null; } || echo "bootstrap: apt-get install krb5-user failed: no kinit, the Kerberos tests skip" >&2
  else
    echo "bootstrap: no kinit (the Kerberos tests skip): as root, apt-get install --no-install-recommends krb5-user" \
         "(Debian/Ubuntu)" >&2
  fi
fi
