#!/usr/bin/env bash
# The end-to-end suite: real Apache Kafka (KRaft) clusters from Maven Central, the real kmirror
# binary, kcat and franz-go as independent clients. Called by make e2e (after make build).
# The full log goes to $E2E_LOG; the summary (tests and the figures each printed) to stdout, and
# on failure the log's tail too.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log="${E2E_LOG:-/tmp/kmirror-e2e.log}"
command -v kcat >/dev/null || { echo "e2e: kcat is needed (Debian package kcat: apt-get install -y kcat)" >&2; exit 1; }
command -v java >/dev/null || { echo "e2e: a Java 17+ runtime is needed to run Kafka" >&2; exit 1; }
scripts/kafka/fetch.sh 4.3.1 >/dev/null || exit 1
scripts/kafka/fetch.sh 3.9.2 >/dev/null || exit 1
[ -x bin/kmirror ] || make build || exit 1
go test -tags e2e -count=1 -timeout 75m -v ./e2e/... "$@" >"$log" 2>&1
status=$?
grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok )|_test\.go:[0-9]+: (figures|killed|stopped|froze|restarted|grew|gave up|kmirror exited|kafka [0-9]|group stable|site cut|promtool)' "$log"
if [ $status -ne 0 ]; then
  echo "---- e2e failed; last 150 lines of $log:"
  tail -n 150 "$log"
fi
exit $status
