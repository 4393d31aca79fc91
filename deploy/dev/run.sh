#!/usr/bin/env bash
# `make run`: a control plane on the embedded SQLite store plus one local
# agent, registered with a join token exactly as a new host would be. State
# lives in .data/ (delete it to start over). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-$PWD/bin}
DATA=${FLOTILLA_DEV_DATA:-$PWD/.data}
GRPC_ADDR=${FLOTILLA_DEV_GRPC:-127.0.0.1:7443}
HTTP_ADDR=${FLOTILLA_DEV_HTTP:-127.0.0.1:7090}
CP_DIR=$DATA/controlplane
AGENT_DIR=$DATA/agent
mkdir -p "$DATA" && chmod 700 "$DATA"

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping: ${pids[*]:-nothing}"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/flotilla-controlplane" -data-dir "$CP_DIR" -listen "$GRPC_ADDR" -metrics-listen "$HTTP_ADDR" \
  -log-format console -agent-lost-after 30s >"$DATA/controlplane.log" 2>&1 &
pids+=($!)

grpcurl() { "$BIN/grpcurl" -cacert "$CP_DIR/ca.crt" "$@"; }

echo "waiting for the control plane on $GRPC_ADDR (log: $DATA/controlplane.log)"
for i in $(seq 1 100); do
  if [ -f "$CP_DIR/ca.crt" ] && grpcurl "$GRPC_ADDR" grpc.health.v1.Health/Check >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the control plane exited:"; tail -20 "$DATA/controlplane.log"; exit 1
  fi
  sleep 0.1
done
ADMIN_TOKEN=$(cat "$CP_DIR/admin.token")

if [ ! -f "$AGENT_DIR/agent.json" ]; then
  echo "creating a join token for the local agent"
  resp=$(grpcurl -H "authorization: Bearer $ADMIN_TOKEN" \
    -d '{"description": "make run: local agent", "labels": {"env": "dev"}, "ttl": "600s"}' \
    "$GRPC_ADDR" flotilla.v1.FleetService/CreateJoinToken)
  JOIN_TOKEN=$(sed -n 's/.*"token": "\([^"]*\)".*/\1/p' <<<"$resp")
  CA_SHA256=$(sed -n 's/.*"caCertSha256": "\([^"]*\)".*/\1/p' <<<"$resp")
  export FLOTILLA_JOIN_TOKEN=$JOIN_TOKEN FLOTILLA_CONTROL_PLANE_CA_SHA256=$CA_SHA256
fi

# The local agent checks the control plane's own /healthz as its
# application: it answers the same JSON as the applications' /health.
"$BIN/flotilla-agent" -control-plane.address "$GRPC_ADDR" -state-dir "$AGENT_DIR" \
  -labels "env=dev,role=web" -health.url "http://$HTTP_ADDR/healthz" -log.format console \
  >"$DATA/agent.log" 2>&1 &
pids+=($!)
unset FLOTILLA_JOIN_TOKEN

cat <<MSG

Flotilla is running.
  control plane  $GRPC_ADDR (gRPC, TLS)   http://$HTTP_ADDR/metrics   http://$HTTP_ADDR/healthz
  logs           $DATA/controlplane.log   $DATA/agent.log

Try (from this directory, in another terminal):

  export FLOTILLA_TOKEN=\$(cat $CP_DIR/admin.token)
  bin/grpcurl -cacert $CP_DIR/ca.crt -H "authorization: Bearer \$FLOTILLA_TOKEN" \\
    $GRPC_ADDR flotilla.v1.FleetService/ListAgents

Ctrl-C stops both.
MSG
wait -n "${pids[@]}"
echo "a process exited; last log lines:"
tail -5 "$DATA/controlplane.log" "$DATA/agent.log"
exit 1
