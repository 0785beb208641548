#!/usr/bin/env bash
# Peers' conformance suites against a private node (part of make test when the suites are here).
#   scripts/conformance.sh autobahn     Autobahn|Testsuite (RFC 6455) on the node's WebSocket session
# The suites live outside the repository (CONVERGE_CONFORMANCE, default ../shared/conformance); a
# machine without them says so and skips. A suite is run as it is: never edited to pass.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CONVERGE_BIN:-$PWD/build/src/app/converge}
SUITES=${CONVERGE_CONFORMANCE:-$PWD/../shared/conformance}
what=${1:-autobahn}

case $what in
  autobahn)
    runner=$SUITES/autobahn/run-autobahn.sh
    if [[ ! -x $runner ]]; then
      echo "conformance: Autobahn not found at $runner: skipped (set CONVERGE_CONFORMANCE)"
      exit 0
    fi
    dir=$(mktemp -d /tmp/converge-autobahn.XXXX)
    # Autobahn's 9.x cases send messages of up to 16 MiB and read them back.
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --port-file "$dir/port" \
      --password-cost min --log-level warn --ws-echo-path /ws-echo \
      --max-frame-bytes 20000000 --max-send-queue-bytes 64000000 >"$dir/node.log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
    [[ -s $dir/port ]] || { echo "conformance: the node did not start"; cat "$dir/node.log"; exit 1; }
    OUT=$dir/out "$runner" "$(cat "$dir/port")" /ws-echo
    ;;
  *)
    echo "usage: scripts/conformance.sh autobahn" >&2
    exit 2
    ;;
esac
