#!/usr/bin/env bash
# Re-resolves requirements.txt and requirements-test.txt in a scratch venv and writes the full pinned set to constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-test.txt
{
  echo "# The whole resolved package set, pinned (pip freeze of a venv made from requirements-test.txt)."
  echo "# Regenerate with \`make lock\` after changing requirements*.txt."
  "$scratch/venv/bin/pip" freeze --exclude-editable
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
