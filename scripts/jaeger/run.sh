#!/usr/bin/env bash
# Starts the Jaeger v2 all-in-one on loopback (OTLP gRPC 127.0.0.1:4317, OTLP HTTP :4318, query
# API and UI http://127.0.0.1:16686), waits until it is healthy, and leaves it running.
#   scripts/jaeger/run.sh start   # prints the PID file path
#   scripts/jaeger/run.sh stop
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${KMIRROR_JAEGER_STATE:-/tmp/kmirror-jaeger}"
pidfile="$state/jaeger.pid"
case "${1:-start}" in
start)
  bin="$("$here/build.sh")"
  mkdir -p "$state"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "jaeger already running (pid $(cat "$pidfile"))"
    exit 0
  fi
  "$bin" --config "$here/config.yaml" >"$state/jaeger.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if curl -fsS http://127.0.0.1:13133/status >/dev/null 2>&1 || curl -fsS http://127.0.0.1:16686/api/services >/dev/null 2>&1; then
      echo "jaeger ready: UI and API http://127.0.0.1:16686, OTLP gRPC 127.0.0.1:4317 (log $state/jaeger.log)"
      exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "jaeger exited; its log:" >&2
      tail -n 40 "$state/jaeger.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "jaeger did not become healthy within 60s; its log:" >&2
  tail -n 40 "$state/jaeger.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
