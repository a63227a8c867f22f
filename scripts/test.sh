#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the private PostgreSQL cluster when it is
# not running (and stops it again at the end), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

started=$(.venv/bin/python -m devtools.localpg start)
echo "PostgreSQL: $started"
if [[ $started == started* ]]; then
  trap '.venv/bin/python -m devtools.localpg stop' EXIT
fi
.venv/bin/python -m pytest "$@"
