#!/usr/bin/env bash
# Creates .venv with exactly the pinned package set and this project installed in it as an Airflow
# provider; a second run with unchanged pins and pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.installed-$(cat requirements.txt requirements-test.txt constraints.txt pyproject.toml | sha1sum | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  # The pinned set is tested on 3.11; newer ones are tried after it.
  for candidate in python3.11 python3.12 python3.13 python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
fi
[ -n "$python" ] || { echo "Python 3.11+ is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
echo "Installing the pinned packages into .venv (about half a minute)..."
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt -c constraints.txt
# The project itself, as an Airflow provider (the kis connection type): editable, so plugins/kis is
# the code that runs, and without dependencies, so the pinned set above stays exactly as it is.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
rm -f .venv/.installed-*
touch "$stamp"
