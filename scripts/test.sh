#!/usr/bin/env bash
# The test suite: installs what it needs, runs pytest, and stops the private PostgreSQL cluster
# again when a test started it (the tests start it when they need it: tests/conftest.py).
#
#   scripts/test.sh           the whole suite (make test, CI): every test but the solo ones on three
#                             pytest-xdist workers (Airflow stacks one at a time, on one of them),
#                             then the solo ones alone (pyproject.toml, markers). Three on 2 cores:
#                             the tests wait on the simulator, the scheduler and PostgreSQL much of
#                             their time (two workers kept the machine ~55 % busy)
#   scripts/test.sh --fast    make test-fast: the tests that are not slow, on two workers
#   scripts/test.sh ARGS...   one pytest run with ARGS (scripts/test.sh -k hook -n 2)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

# The programs the tests drive, from Debian, installed here as root rather than by the tests, where
# two pytest-xdist workers would meet on dpkg's lock: docker-compose (test_compose), chromium (the
# browser tests), redis-server (the Celery stack), libfaketime (the replay), postgresql (the private
# cluster's server, which devtools.localpg would otherwise install at the first test that needs it).
# Without root, the tests that need a missing one skip or say what to install.
missing=()
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || missing+=(libfaketime)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
if [[ ${#missing[@]} -gt 0 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "Installing Debian's ${missing[*]} for the tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
fi

if [[ $(.venv/bin/python -m devtools.localpg status) == stopped* ]]; then
  trap '.venv/bin/python -m devtools.localpg stop' EXIT
fi

pytest=(.venv/bin/python -m pytest)
if [[ $# -eq 0 ]]; then
  status=0
  "${pytest[@]}" -n 3 --dist loadgroup -m "not solo" || status=$?
  "${pytest[@]}" -m solo || status=$?
  exit "$status"
elif [[ $1 == --fast ]]; then
  shift
  "${pytest[@]}" -n 2 -m "not slow" "$@"
else
  "${pytest[@]}" "$@"
fi
