#!/usr/bin/env bash
# Every test: C++ unit tests, then integration tests against the real binary, then browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export CONVERGE_BIN=${CONVERGE_BIN:-$PWD/$BUILD/src/app/converge}

echo "== unit tests (GoogleTest)"
(cd "$BUILD" && ctest --output-on-failure -j2)

scripts/npm-deps.sh
if compgen -G "tests/integration/*.test.mjs" >/dev/null; then
  echo "== integration tests (real binary, Node ws clients)"
  node --test --test-concurrency=1 tests/integration/
fi

if compgen -G "clients/js/test/*.test.mjs" >/dev/null; then
  echo "== JavaScript SDK unit tests"
  node --test clients/js/test/
fi
if compgen -G "tests/browser/*.test.mjs" >/dev/null; then
  echo "== browser tests (Chromium)"
  node --test --test-concurrency=1 tests/browser/
fi
echo "== conformance: Autobahn|Testsuite against the WebSocket session"
scripts/conformance.sh autobahn

echo "== conformance: Eclipse Paho MQTT 3.1.1 + 5 suites against the MQTT broker (TCP)"
# All 37 pass (mosquitto 2.0.11 passes 31 of them here): any failure fails the run.
scripts/conformance.sh paho

echo "== benchmark harness smoke run (no timing asserted)"
node bench/run.mjs --smoke

echo "== all tests passed"
