#!/usr/bin/env bash
# Installs the pinned JavaScript dependencies (package-lock.json) when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.converge-lock
if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
  # npm ci installs exactly the lock. npm 10+ refuses a lock that lacks other platforms'
  # optional packages (rollup's, when the registry in use only serves this platform's); then the
  # locked versions are installed with `npm install`, which leaves the lock as it is.
  if ! npm ci --no-audit --no-fund --loglevel=error 2>/tmp/converge-npm-ci.log; then
    grep -q EUSAGE /tmp/converge-npm-ci.log || { cat /tmp/converge-npm-ci.log; exit 1; }
    npm install --no-save --no-audit --no-fund --loglevel=error
  fi
  cp package-lock.json "$stamp"
fi
