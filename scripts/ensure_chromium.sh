#!/usr/bin/env bash
# Makes sure Debian's chromium is installed, for the dashboard's browser test; prints its path.
# Idempotent: does nothing when it is already there. Installs it with apt-get when run as root;
# otherwise (or when apt-get fails) exits 1 with the reason on stderr, and the test skips.
set -euo pipefail

found=$(command -v chromium || true)
if [[ -n $found ]]; then
  echo "$found"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "chromium is not installed and installing it needs root (sudo apt-get install chromium)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium is not installed and there is no apt-get to install it" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q chromium; } >/tmp/ensure_chromium.log 2>&1; then
  echo "apt-get could not install chromium (see /tmp/ensure_chromium.log)" >&2
  exit 1
fi
command -v chromium
