#!/usr/bin/env bash
# Installs what Converge needs on Debian 12, idempotently: only missing packages are fetched.
#   scripts/install-deps.sh build   toolchain and libraries to build the node
#   scripts/install-deps.sh test    + real servers and clients the tests drive
set -euo pipefail
want=${1:-build}

build_pkgs=(g++ cmake ninja-build ccache pkg-config git make curl ca-certificates
  libboost1.81-all-dev libsqlite3-dev libpq-dev librabbitmq-dev libsodium-dev
  libjemalloc-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libcli11-dev)
test_pkgs=(postgresql rabbitmq-server mosquitto mosquitto-clients chromium sqlite3 procps gnuplot-nox
  python3 python3-autobahn python3-twisted python3-future python3-openssl python3-service-identity
  python3-wsaccel python3-jinja2)

pkgs=("${build_pkgs[@]}")
[[ $want == test ]] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node and npm: Debian's packages unless a Node.js (e.g. nodesource, which bundles npm) is present.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $want == test ]]; then
  "$(dirname "$0")/npm-deps.sh"
fi
