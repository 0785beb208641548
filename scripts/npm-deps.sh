#!/usr/bin/env bash
# Installs the pinned JavaScript dependencies (package-lock.json) when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.converge-lock
if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
