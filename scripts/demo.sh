#!/usr/bin/env bash
# The main job end to end on the embedded defaults: installs what it needs, starts the private
# PostgreSQL cluster when it is not running (and stops it again at the end), then plays a
# simulated trading day through both DAGs. Extra arguments go to devtools.demo (--day, --codes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

started=$(.venv/bin/python -m devtools.localpg start)
if [[ $started == started* ]]; then
  trap '.venv/bin/python -m devtools.localpg stop' EXIT
fi
.venv/bin/python -m devtools.demo "$@"
