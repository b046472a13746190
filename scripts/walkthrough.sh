#!/usr/bin/env bash
# Runs the README's "Try it on your machine" block (the ```sh block after the
# "<!-- walkthrough" marker) line by line as it stands, and exits non-zero as soon as a step fails
# or the whole takes longer than WALKTHROUGH_TIMEOUT seconds (600). Whatever happens, kmirror is
# stopped and the clusters are taken down.
#
# To run beside other clusters on 19012/29012 and a /metrics endpoint on 9464 (the steps are then
# run with those addresses replaced, and kmirror is told them through KMIRROR_SOURCE_BOOTSTRAP,
# KMIRROR_TARGET_BOOTSTRAP and KMIRROR_TELEMETRY_LISTEN):
#   KAFKA_EUROPE_PORT_BASE=47000 KAFKA_US_PORT_BASE=47100 WALKTHROUGH_METRICS_PORT=47464 \
#   KMIRROR_KAFKA_STATE=/tmp/kk-walkthrough scripts/walkthrough.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

block="$(awk '/^<!-- walkthrough/ { marked = 1; next }
              marked && /^```sh/ { inside = 1; next }
              inside && /^```/ { exit }
              inside { print }' README.md)"
[ -n "$block" ] || { echo "walkthrough: no block after <!-- walkthrough in README.md" >&2; exit 1; }

europe=127.0.0.1:19012 us=127.0.0.1:29012 metrics=9464
if [ -n "${KAFKA_EUROPE_PORT_BASE:-}" ]; then
  europe="127.0.0.1:$((KAFKA_EUROPE_PORT_BASE + 12))"
  export KAFKA_EUROPE_PORT_BASE KMIRROR_SOURCE_BOOTSTRAP="$europe"
fi
if [ -n "${KAFKA_US_PORT_BASE:-}" ]; then
  us="127.0.0.1:$((KAFKA_US_PORT_BASE + 12))"
  export KAFKA_US_PORT_BASE KMIRROR_TARGET_BOOTSTRAP="$us"
fi
if [ -n "${WALKTHROUGH_METRICS_PORT:-}" ]; then
  metrics="$WALKTHROUGH_METRICS_PORT"
  export KMIRROR_TELEMETRY_LISTEN=":$metrics"
fi
steps="$(printf '%s\n' "$block" |
  sed "s/127\.0\.0\.1:19012/$europe/g; s/127\.0\.0\.1:29012/$us/g; s/localhost:9464/localhost:$metrics/g")"

# The steps run in one bash, traced; its EXIT trap stops what they started if one fails.
script="$(mktemp)"
trap 'rm -f "$script"' EXIT
{
  echo 'set -euo pipefail'
  echo 'cleanup() { for p in $(jobs -p); do kill -9 "$p" 2>/dev/null || true; done; make -s kafka-down >/dev/null 2>&1 || true; }'
  echo 'trap cleanup EXIT'
  echo 'trap "exit 124" TERM'
  echo 'set -x'
  printf '%s\n' "$steps"
} >"$script"

if timeout "${WALKTHROUGH_TIMEOUT:-600}" bash "$script"; then
  echo "walkthrough: every step of the README's block passed"
else
  code=$?
  echo "walkthrough: a step of the README's block failed (exit $code); see the trace above" >&2
  exit "$code"
fi
