#!/usr/bin/env bash
# `make run`: the whole stack on one machine, in the foreground.
#   redis-server (AOF, data under .dev/redis), the stand-in cluster
#   (kubeconfig at .dev/kubeconfig, objects kept in .dev/standin-state.json),
#   one worker, the api on $API_ADDR and the gateway on $GATEWAY_ADDR
#   (workspace URLs http://{uuid}.ws.localhost:<gateway port>: *.localhost is
#   loopback in browsers and curl, so no DNS setup is needed).
# Workspaces are real local code-server processes (STANDIN_KUBELET=process,
# volumes under .dev/volumes, pod logs under .dev/logs/pods) when code-server
# installs and this machine allows private mount namespaces; otherwise the
# stand-in simulates pods, and one line says why.
# Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
dev=$root/.dev
mkdir -p "$dev/redis" "$dev/logs"

API_ADDR=${API_ADDR:-127.0.0.1:8080}
REDIS_PORT=${DEV_REDIS_PORT:-6390}
STANDIN_ADDR=${STANDIN_ADDR:-127.0.0.1:6443}
WORKER_METRICS_ADDR=${WORKER_METRICS_ADDR:-127.0.0.1:9090}
GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8081}
bin=$root/target/debug

# Every workspace host goes to the gateway; api, worker and gateway share the pattern.
gateway_port=${GATEWAY_ADDR##*:}
export WORKSPACE_URL_PATTERN="http://{uuid}.ws.localhost:$gateway_port"

if [[ -z "${API_KEYS:-}" ]]; then
  if [[ -s $dev/api-key ]]; then API_KEYS=$(cat "$dev/api-key"); else
    API_KEYS=dev-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    (umask 077; printf '%s' "$API_KEYS" > "$dev/api-key")
  fi
fi
export API_KEYS

# Access-link keys (the api signs, the gateway verifies): a throwaway one for
# this machine, kept in .dev/access-keys so links and cookies survive a restart.
if [[ -z "${ACCESS_KEYS:-}" ]]; then
  if [[ -s $dev/access-keys ]]; then ACCESS_KEYS=$(cat "$dev/access-keys"); else
    ACCESS_KEYS=dev:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    (umask 077; printf '%s' "$ACCESS_KEYS" > "$dev/access-keys")
  fi
fi
export ACCESS_KEYS

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$name did not become ready; see $dev/logs/" >&2; exit 1
}

# The stand-in's objects persist beside Redis's AOF, so a restart keeps both.
state=$dev/standin-state.json
if [[ ! -e $state ]] && find "$dev/redis" -name '*.aof' -size +0 2>/dev/null | grep -q .; then
  echo "make run: .dev/redis holds sessions from a run that kept no .dev/standin-state.json: their cluster objects are gone (rm -rf .dev to start clean)" >&2
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dev/redis" --appendonly yes \
  --appendfsync everysec --save "" --maxmemory-policy noeviction --logfile "$dev/logs/redis.log" &
pids+=($!)
wait_for redis redis-cli -p "$REDIS_PORT" ping
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/

# Which kubelet: real processes unless asked otherwise or impossible here.
kubelet=${STANDIN_KUBELET:-process}
if [[ $kubelet == process ]]; then
  if ! setpriv --pdeathsig KILL -- unshare --mount --pid --fork --mount-proc true >/dev/null 2>&1; then
    echo "make run: workspaces are simulated pods: this machine gives no private mount namespace (run as root)" >&2
    kubelet=simulated
  elif ! STANDIN_CODE_SERVER=$(bash deploy/local/install-code-server.sh); then
    echo "make run: workspaces are simulated pods: code-server could not be installed (see the lines above)" >&2
    kubelet=simulated
  fi
fi
export STANDIN_KUBELET=$kubelet STANDIN_CODE_SERVER=${STANDIN_CODE_SERVER:-}
[[ -n $STANDIN_CODE_SERVER ]] || unset STANDIN_CODE_SERVER

rm -f "$dev/kubeconfig" "$dev/standin.addr"
STANDIN_ADDR=$STANDIN_ADDR STANDIN_KUBECONFIG_OUT=$dev/kubeconfig STANDIN_ADDR_FILE=$dev/standin.addr \
  STANDIN_STATE_FILE=$state STANDIN_VOLUMES_DIR=$dev/volumes STANDIN_POD_LOGS_DIR=$dev/logs/pods \
  STANDIN_PODS_DIR=$dev/pods "$bin/kube-standin" >"$dev/logs/standin.log" 2>&1 &
pids+=($!)
# The address file is written after the kubeconfig, once the server listens.
wait_for stand-in test -s "$dev/standin.addr"

KUBECONFIG=$dev/kubeconfig WORKER_METRICS_ADDR=$WORKER_METRICS_ADDR \
  WORKSPACE_IMAGE=${WORKSPACE_IMAGE:-codercom/code-server:4.139.1} \
  "$bin/worker" >"$dev/logs/worker.log" 2>&1 &
pids+=($!)

API_ADDR=$API_ADDR "$bin/api" >"$dev/logs/api.log" 2>&1 &
pids+=($!)
wait_for api curl -fsS "http://$API_ADDR/livez"

if [[ -x $bin/gateway ]]; then
  GATEWAY_ADDR=$GATEWAY_ADDR "$bin/gateway" >"$dev/logs/gateway.log" 2>&1 &
  pids+=($!)
  wait_for gateway curl -fsS "http://$GATEWAY_ADDR/livez"
  gateway_line="http://$GATEWAY_ADDR"
else
  echo "make run: no $bin/gateway (not built): workspace URLs do not answer; use the Service address below" >&2
  gateway_line="not running (no target/debug/gateway)"
fi

cat <<MSG

  session manager running (logs in .dev/logs/)
    api          http://$API_ADDR
    api key      $API_KEYS
    gateway      $gateway_line
    workspaces   $WORKSPACE_URL_PATTERN (*.localhost is loopback: no DNS setup)
    redis        $REDIS_URL (AOF in .dev/redis)
    cluster      KUBECONFIG=.dev/kubeconfig kubectl get deploy,pvc,svc,ingress -n workspaces
    worker       http://$WORKER_METRICS_ADDR/metrics
    pods         $STANDIN_KUBELET (volumes in .dev/volumes, pod logs in .dev/logs/pods)

  try:
    curl -s -X POST http://$API_ADDR/session/create -H "X-API-Key: $API_KEYS" \\
         -H 'Content-Type: application/json' -d '{"user_id":"you@example.com"}'
    then open its "access_url" in a browser (single use, 5 minutes). A new link any time:
    curl -s -X POST http://$API_ADDR/session/<uuid>/access -H "X-API-Key: $API_KEYS"
    Bypassing the gateway (no access check), the Service's local address:
    KUBECONFIG=.dev/kubeconfig kubectl get svc -n workspaces ws-<uuid> \\
         -o jsonpath='http://{.spec.clusterIP}:{.spec.ports[0].port}/{"\\n"}'

  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "a component exited; see .dev/logs/" >&2
