#!/usr/bin/env bash
# Builds the web client into web/dist (served by the node at /).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f web/index.html ]]; then
  echo "no web client in this tree (web/index.html missing); skipping"
  exit 0
fi
scripts/npm-deps.sh
npx --no-install vite build web --logLevel warn
