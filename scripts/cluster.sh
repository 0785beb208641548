#!/usr/bin/env bash
# A cluster on this machine to try: a private PostgreSQL, a private RabbitMQ and N Converge nodes
# (default 3) on free loopback ports, in a temp folder. Prints the nodes' URLs; Ctrl-C stops
# everything it started (by PID) and removes the folder.
#   scripts/cluster.sh [NODES]          (make cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-3}
BIN=${CONVERGE_BIN:-$PWD/build/src/app/converge}
PGBIN=/usr/lib/postgresql/15/bin
RMQ=/usr/lib/rabbitmq/bin
[[ -x $BIN ]] || { echo "build first: make build" >&2; exit 1; }
[[ -x $PGBIN/initdb ]] || { echo "PostgreSQL 15 is missing: scripts/install-deps.sh test" >&2; exit 1; }
[[ -x $RMQ/rabbitmq-server ]] || { echo "RabbitMQ is missing: scripts/install-deps.sh test" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
D=$(mktemp -d /tmp/converge-cluster.XXXX)
chmod 755 "$D"
pids=()
epmd_pid=""
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n ${RABBITMQ_NODENAME:-} ]] && "$RMQ/rabbitmqctl" shutdown >/dev/null 2>&1 || true
  [[ -n ${rmq_pid:-} ]] && { kill "$rmq_pid" 2>/dev/null || true; wait "$rmq_pid" 2>/dev/null || true; }
  [[ -n $epmd_pid ]] && { kill "$epmd_pid" 2>/dev/null || true; wait "$epmd_pid" 2>/dev/null || true; }
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$D/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT INT TERM

# PostgreSQL (../shared/PEERS.md)
PG_PORT=$(free_port)
chown postgres "$D"
runuser -u postgres -- "$PGBIN/initdb" -D "$D/pg" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$D/pg" -l "$D/pg.log" \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $D" -w start >/dev/null
STORE="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"

# RabbitMQ
AMQP_PORT=$(free_port); DIST_PORT=$(free_port); EPMD_PORT=$(free_port); CTL=$(free_port)
mkdir -p "$D/rmq/home" "$D/rmq/mnesia" "$D/rmq/log"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$AMQP_PORT" >"$D/rmq/rabbitmq.conf"
echo '[].' >"$D/rmq/enabled_plugins"
export HOME=$D/rmq/home RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
  ERL_EPMD_PORT=$EPMD_PORT RABBITMQ_MNESIA_BASE=$D/rmq/mnesia RABBITMQ_LOG_BASE=$D/rmq/log \
  RABBITMQ_ENABLED_PLUGINS_FILE=$D/rmq/enabled_plugins RABBITMQ_CONFIG_FILE=$D/rmq/rabbitmq.conf \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  RABBITMQ_CTL_DIST_PORT_MIN=$CTL RABBITMQ_CTL_DIST_PORT_MAX=$CTL
# Our own epmd in the foreground (by PID, so ours to stop): the broker then starts no daemon.
EPMD=$(ls /usr/bin/epmd /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1)
"$EPMD" -address 127.0.0.1 -port "$EPMD_PORT" >"$D/rmq/epmd.log" 2>&1 &
epmd_pid=$!
sleep 0.3
"$RMQ/rabbitmq-server" >"$D/rmq/server.log" 2>&1 &
rmq_pid=$!
for _ in $(seq 60); do
  kill -0 "$rmq_pid" 2>/dev/null || { echo "RabbitMQ exited:"; tail "$D/rmq/server.log"; exit 1; }
  "$RMQ/rabbitmqctl" await_startup >/dev/null 2>&1 && break
  sleep 1
done
BUS="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"

# Nodes: one database, one broker, one shared files folder.
mkdir -p "$D/files"
for i in $(seq 1 "$NODES"); do
  mkdir -p "$D/node$i"
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$D/node$i" --port-file "$D/node$i/port" \
    --mqtt-listen 127.0.0.1:0 --mqtt-port-file "$D/node$i/mqtt-port" \
    --store "$STORE" --bus "$BUS" --files-dir "$D/files" --node-id "node$i" \
    ${WEB_ROOT:+--web-root "$WEB_ROOT"} --log-level warn >"$D/node$i/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -s $D/node$i/port ]] && break; sleep 0.1; done
done
echo
echo "Converge cluster: PostgreSQL $STORE, RabbitMQ $BUS"
for i in $(seq 1 "$NODES"); do
  [[ -s $D/node$i/port ]] || { echo "node$i did not start:"; cat "$D/node$i/log"; exit 1; }
  mqtt=""; [[ -s $D/node$i/mqtt-port ]] && mqtt="   mqtt://127.0.0.1:$(cat "$D/node$i/mqtt-port")"
  echo "  node$i: http://127.0.0.1:$(cat "$D/node$i/port")$mqtt   (log $D/node$i/log)"
done
echo "Any client may use any node. Ctrl-C stops everything."
wait "${pids[0]}"
