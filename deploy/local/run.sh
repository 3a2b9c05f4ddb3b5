#!/usr/bin/env bash
# `make run`: the whole stack on one machine, in the foreground.
#   redis-server (AOF, data under .dev/redis), the stand-in cluster
#   (kubeconfig at .dev/kubeconfig), one worker, and the api on $API_ADDR.
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
bin=$root/target/debug

if [[ -z "${API_KEYS:-}" ]]; then
  if [[ -s $dev/api-key ]]; then API_KEYS=$(cat "$dev/api-key"); else
    API_KEYS=dev-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    (umask 077; printf '%s' "$API_KEYS" > "$dev/api-key")
  fi
fi
export API_KEYS

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

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dev/redis" --appendonly yes \
  --appendfsync everysec --save "" --maxmemory-policy noeviction --logfile "$dev/logs/redis.log" &
pids+=($!)
wait_for redis redis-cli -p "$REDIS_PORT" ping
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/

rm -f "$dev/kubeconfig" "$dev/standin.addr"
STANDIN_ADDR=$STANDIN_ADDR STANDIN_KUBECONFIG_OUT=$dev/kubeconfig STANDIN_ADDR_FILE=$dev/standin.addr \
  "$bin/kube-standin" >"$dev/logs/standin.log" 2>&1 &
pids+=($!)
# The address file is written after the kubeconfig, once the server listens.
wait_for stand-in test -s "$dev/standin.addr"

KUBECONFIG=$dev/kubeconfig WORKER_METRICS_ADDR=$WORKER_METRICS_ADDR \
  "$bin/worker" >"$dev/logs/worker.log" 2>&1 &
pids+=($!)

API_ADDR=$API_ADDR "$bin/api" >"$dev/logs/api.log" 2>&1 &
pids+=($!)
wait_for api curl -fsS "http://$API_ADDR/livez"

cat <<MSG

  session manager running (logs in .dev/logs/)
    api          http://$API_ADDR
    api key      $API_KEYS
    redis        $REDIS_URL (AOF in .dev/redis)
    cluster      KUBECONFIG=.dev/kubeconfig kubectl get deploy,pvc,svc,ingress -n workspaces
    worker       http://$WORKER_METRICS_ADDR/metrics

  try:
    curl -s -X POST http://$API_ADDR/session/create -H "X-API-Key: $API_KEYS" \\
         -H 'Content-Type: application/json' -d '{"user_id":"you@example.com"}'

  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "a component exited; see .dev/logs/" >&2
