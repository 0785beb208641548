#!/usr/bin/env bash
# Peers' conformance suites against a private node (part of make test when the suites are here).
#   scripts/conformance.sh autobahn     Autobahn|Testsuite (RFC 6455) on the node's WebSocket session
#   scripts/conformance.sh paho         Eclipse Paho MQTT 3.1.1 + 5 interoperability suites on the
#                                       node's MQTT broker over TCP (~5 min); exits non-zero when a
#                                       suite test fails
#   scripts/conformance.sh paho-ws      the same through MQTT over WebSocket (/mqtt), by the
#                                       suite's own TCP-to-WebSocket bridge
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
      --password-cost min --log-level warn --ws-echo-path /ws-echo --mqtt-listen off \
      --max-frame-bytes 20000000 --max-send-queue-bytes 64000000 >"$dir/node.log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
    [[ -s $dir/port ]] || { echo "conformance: the node did not start"; cat "$dir/node.log"; exit 1; }
    OUT=$dir/out "$runner" "$(cat "$dir/port")" /ws-echo
    ;;
  paho | paho-ws)
    runner=$SUITES/paho/run.sh
    if [[ ! -f $runner ]]; then
      echo "conformance: Paho not found at $runner: skipped (set CONVERGE_CONFORMANCE)"
      exit 0
    fi
    dir=$(mktemp -d /tmp/converge-paho.XXXX)
    # The set-up the suites assume (their README): anonymous clients on any topic, SUBSCRIBE to
    # test/nosubscribe refused, Server Keep Alive 60 for a client asking 120.
    printf 'topic readwrite #\ntopic deny test/nosubscribe\n' >"$dir/acl"
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --port-file "$dir/port" \
      --mqtt-listen 127.0.0.1:0 --mqtt-port-file "$dir/mqtt-port" \
      --password-cost min --log-level warn --mqtt-allow-anonymous true \
      --mqtt-acl-file "$dir/acl" --mqtt-max-keepalive 60 >"$dir/node.log" 2>&1 &
    pid=$!
    bridge=""
    trap 'kill $pid $bridge 2>/dev/null || true; wait $pid $bridge 2>/dev/null || true; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
    [[ -s $dir/port ]] || { echo "conformance: the node did not start"; cat "$dir/node.log"; exit 1; }
    [[ -s $dir/mqtt-port ]] || { echo "conformance: the node has no MQTT listener"; cat "$dir/node.log"; exit 1; }
    port=$(cat "$dir/mqtt-port")
    if [[ $what == paho-ws ]]; then
      # The bridge needs npm ws: ours (node_modules), since the suite's folder may be read-only.
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      NODE_PATH=$PWD/node_modules node "$SUITES/paho/ws-bridge/tcp2ws.js" "$port" \
        "ws://127.0.0.1:$(cat "$dir/port")/mqtt" >"$dir/bridge.log" 2>&1 &
      bridge=$!
      for _ in $(seq 50); do grep -q tcp2ws "$dir/bridge.log" && break; sleep 0.1; done
    fi
    # Logs are kept: the full suite output is what a failure is read from.
    out=$(mktemp -d /tmp/converge-paho-out.XXXX)
    rc=0
    OUT=$out sh "$runner" "$port" || rc=$?
    cp "$dir/node.log" "$out/node.log"
    echo "conformance: Paho ($what) logs in $out"
    exit $rc
    ;;
  *)
    echo "usage: scripts/conformance.sh autobahn | paho | paho-ws" >&2
    exit 2
    ;;
esac
