#!/usr/bin/env bash
# Runs the Jaeger v2 all-in-one (built by build.sh, cached) on loopback, for local use and CI:
# OTLP gRPC 127.0.0.1:4317, OTLP HTTP 127.0.0.1:4318, query API and UI http://127.0.0.1:16686,
# in-memory storage (config.yaml).
#
#   scripts/jaeger/run.sh start    # build if needed, start, wait until healthy (bounded)
#   scripts/jaeger/run.sh stop     # stop the instance this script started
#   scripts/jaeger/run.sh status   # exit 0 when a healthy Jaeger answers on the ports
#   scripts/jaeger/run.sh env      # print the variables the gated Go tests read
#
# Ports can be moved with JAEGER_OTLP_GRPC_PORT, JAEGER_OTLP_HTTP_PORT, JAEGER_QUERY_HTTP_PORT,
# JAEGER_QUERY_GRPC_PORT and JAEGER_HEALTH_PORT. When a healthy Jaeger already serves those ports,
# start uses it and stop leaves it alone; a port held by anything else is an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${KMIRROR_JAEGER_STATE:-/tmp/kmirror-jaeger}"
pidfile="$state/jaeger.pid"
wait_seconds="${KMIRROR_JAEGER_WAIT:-60}"

export JAEGER_OTLP_GRPC_PORT="${JAEGER_OTLP_GRPC_PORT:-4317}"
export JAEGER_OTLP_HTTP_PORT="${JAEGER_OTLP_HTTP_PORT:-4318}"
export JAEGER_QUERY_HTTP_PORT="${JAEGER_QUERY_HTTP_PORT:-16686}"
export JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
export JAEGER_HEALTH_PORT="${JAEGER_HEALTH_PORT:-13133}"
ports=("$JAEGER_OTLP_GRPC_PORT" "$JAEGER_OTLP_HTTP_PORT" "$JAEGER_QUERY_HTTP_PORT" "$JAEGER_QUERY_GRPC_PORT" "$JAEGER_HEALTH_PORT")

healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$JAEGER_HEALTH_PORT/status" >/dev/null 2>&1 &&
    curl -fsS --max-time 2 "http://127.0.0.1:$JAEGER_QUERY_HTTP_PORT/api/services" >/dev/null 2>&1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ours_running() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "jaeger"
}

print_env() {
  echo "KMIRROR_JAEGER_URL=http://127.0.0.1:$JAEGER_QUERY_HTTP_PORT"
  echo "KMIRROR_JAEGER_OTLP=127.0.0.1:$JAEGER_OTLP_GRPC_PORT"
  echo "KMIRROR_JAEGER_OTLP_HTTP=127.0.0.1:$JAEGER_OTLP_HTTP_PORT"
}

start() {
  mkdir -p "$state"
  if ours_running && healthy; then
    echo "jaeger already running (pid $(cat "$pidfile")), query http://127.0.0.1:$JAEGER_QUERY_HTTP_PORT"
    return 0
  fi
  rm -f "$pidfile"
  local busy=()
  for p in "${ports[@]}"; do
    if port_busy "$p"; then busy+=("$p"); fi
  done
  if [ "${#busy[@]}" -gt 0 ]; then
    if healthy; then
      echo "jaeger: a healthy Jaeger not started by this script already serves ports ${busy[*]}; using it (stop will leave it running)"
      return 0
    fi
    echo "jaeger: 127.0.0.1 port(s) ${busy[*]} already in use by something that is not a healthy Jaeger;" \
      "free them or move Jaeger with JAEGER_*_PORT (see the top of $0)" >&2
    return 1
  fi

  local bin
  bin="$("$here/build.sh")"
  "$bin" --config "$here/config.yaml" >"$state/jaeger.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidfile"
  local deadline=$((SECONDS + wait_seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      echo "jaeger exited during start-up; the end of its log ($state/jaeger.log):" >&2
      tail -n 20 "$state/jaeger.log" >&2
      return 1
    fi
    if healthy; then
      echo "jaeger ready (pid $pid): query API and UI http://127.0.0.1:$JAEGER_QUERY_HTTP_PORT," \
        "OTLP gRPC 127.0.0.1:$JAEGER_OTLP_GRPC_PORT, OTLP HTTP 127.0.0.1:$JAEGER_OTLP_HTTP_PORT (log $state/jaeger.log)"
      return 0
    fi
    sleep 0.5
  done
  echo "jaeger did not become healthy within ${wait_seconds}s; stopping it. The end of its log:" >&2
  tail -n 20 "$state/jaeger.log" >&2
  stop
  return 1
}

stop() {
  if ! ours_running; then
    rm -f "$pidfile"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "jaeger (pid $pid) ignored SIGTERM for 10s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "jaeger stopped (pid $pid)"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) healthy ;;
env) print_env ;;
*)
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
  ;;
esac
