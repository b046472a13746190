#!/usr/bin/env bash
# The end-to-end suite: real Apache Kafka (KRaft) clusters from Maven Central, the real kmirror
# binary, kcat and franz-go as independent clients. Called by make e2e (after make build).
#
# With no arguments the suite runs as E2E_SHARDS (3) shards at once, each with clusters of its own
# (its own KMIRROR_E2E_PORT_BASE and KMIRROR_KAFKA_STATE): much of a test's time is spent waiting
# (fault windows, paced load). On 2 cores, two shards kept the machine 56% busy (/proc/stat,
# sampled every 2 s) and took 1,999 s; three kept it 74% busy, ran each test up to 2.0 times
# as long (median 1.07) and took 1,451 s. The
# tests that hold fixed resources (network namespaces, fixed /metrics ports) all run in shard 1;
# the others are dealt out in turn by name. Arguments (-run X, -skip Y, ...) run one go test as
# given, on the default ports.
# The full logs go to $E2E_LOG (and $E2E_LOG.<shard>); the summary (tests and the figures each
# printed) to stdout, and on failure the log's tail too.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log="${E2E_LOG:-/tmp/kmirror-e2e.log}"
shards="${E2E_SHARDS:-3}"
command -v kcat >/dev/null || { echo "e2e: kcat is needed (Debian package kcat: apt-get install -y kcat)" >&2; exit 1; }
command -v java >/dev/null || { echo "e2e: a Java 17+ runtime is needed to run Kafka" >&2; exit 1; }
scripts/kafka/fetch.sh 4.3.1 >/dev/null || exit 1
scripts/kafka/fetch.sh 3.9.2 >/dev/null || exit 1
[ -x bin/kmirror ] || make build || exit 1

summary() {
  grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok )|_test\.go:[0-9]+: (figures|killed|stopped|froze|restarted|grew|gave up|kmirror exited|kafka [0-9]|group stable|site cut|promtool)' "$1"
}

# failures prints, for each failed test, the lines its own code logged (file:line: message, the
# first line of each; at most 40 per test), so the reason shows even when the log's tail is
# another test's.
failures() {
  awk '
    /^=== RUN/ { split($3, n, "/"); if (n[1] != cur) { cur = n[1]; k = 0; delete buf } next }
    /^    [A-Za-z0-9_]+_test\.go:[0-9]+: / { if (k < 40) buf[k++] = $0; next }
    /^--- FAIL: / { print $0; for (i = 0; i < k; i++) print buf[i]; k = 0; delete buf }
  ' "$1"
}

if [ $# -gt 0 ] || [ "$shards" -le 1 ]; then
  go test -tags e2e -count=1 -timeout 75m -v ./e2e/... "$@" >"$log" 2>&1
  status=$?
  summary "$log"
  if [ $status -ne 0 ]; then
    echo "---- e2e failed; last 150 lines of $log:"
    tail -n 150 "$log"
    echo "---- e2e failures (each failed test's own lines):"
    failures "$log"
  fi
  exit $status
fi

# Tests that must share a shard: fixed namespace names (site cuts) and fixed listen ports.
pinned='^(TestSiteCut|TestSiteHelper|TestExactlyOnceSiteCut|TestExactlyOnceSiteHelper|TestActiveActiveHeartbeats|TestRefusedRecordPolicies|TestMetricsEndpointPassesPromtool)$'
go test -tags e2e -c -o "$log.test" ./e2e/ || exit 1
mapfile -t names < <("$log.test" -test.list '.*' | grep '^Test' | sort)
# Longest first, each to the shard with the least time so far (e2e/durations.txt: the seconds of
# the last full run; a test not listed counts 60 s); the pinned ones all go to shard 1.
declare -a lists load
for ((s = 0; s < shards; s++)); do load[$s]=0; done
mapfile -t ordered < <(
  for n in "${names[@]}"; do
    d=$(awk -v n="$n" '$2 == n { print $1; exit }' e2e/durations.txt)
    echo "${d:-60} $n"
  done | sort -rn
)
for pass in pinned others; do
  for line in "${ordered[@]}"; do
    d=${line%% *}
    n=${line#* }
    best=0
    if [[ "$n" =~ $pinned ]]; then
      [ $pass = pinned ] || continue
    else
      [ $pass = others ] || continue
      for ((s = 1; s < shards; s++)); do
        [ "${load[$s]}" -lt "${load[$best]}" ] && best=$s
      done
    fi
    load[$best]=$((load[best] + d))
    lists[$best]="${lists[$best]:-}${lists[$best]:+|}$n"
  done
done
echo "e2e: ${#names[@]} tests in $shards shards, expected seconds per shard: ${load[*]}"

declare -a pids
started=$(date +%s)
for ((s = 0; s < shards; s++)); do
  [ -n "${lists[$s]:-}" ] || continue
  (
    if [ "$s" -gt 0 ]; then
      # Shard 1 keeps the default ports (19000/29000/39000); the others sit below them.
      export KMIRROR_E2E_PORT_BASE=$((15000 - 4000 * (s - 1)))
      export KMIRROR_KAFKA_STATE="${KMIRROR_KAFKA_STATE:-/tmp/kmirror-kafka}-shard$((s + 1))"
    fi
    cd e2e && exec "$log.test" -test.count=1 -test.timeout=75m -test.v -test.run "^(${lists[$s]})\$"
  ) >"$log.$((s + 1))" 2>&1 &
  pids[$s]=$!
done
status=0
for ((s = 0; s < shards; s++)); do
  [ -n "${pids[$s]:-}" ] || continue
  wait "${pids[$s]}" || status=1
done
cat "$log".[0-9]* >"$log"
grep -hE '^--- (PASS|FAIL|SKIP): ' "$log" | sed -E 's/^--- [A-Z]+: (\S+) \(([0-9]+)\.[0-9]+s\)$/\2 \1/' | sort -k2 >"$log.durations"
for ((s = 0; s < shards; s++)); do
  [ -f "$log.$((s + 1))" ] || continue
  echo "==== e2e shard $((s + 1)) of $shards"
  summary "$log.$((s + 1))"
done
echo "e2e: $shards shards in $(($(date +%s) - started)) s"
if [ $status -ne 0 ]; then
  for ((s = 0; s < shards; s++)); do
    f="$log.$((s + 1))"
    [ -f "$f" ] && ! grep -q '^PASS$' "$f" || continue
    echo "---- e2e shard $((s + 1)) failed; last 150 lines of $f:"
    tail -n 150 "$f"
  done
  echo "---- e2e failures (each failed test's own lines):"
  for ((s = 0; s < shards; s++)); do
    [ -f "$log.$((s + 1))" ] && failures "$log.$((s + 1))"
  done
fi
exit $status
