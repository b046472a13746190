#!/usr/bin/env bash
# The end-to-end suite: real Apache Kafka (KRaft) clusters from Maven Central, the real kmirror
# binary, kcat and franz-go as independent clients. Called by make e2e (after make build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v kcat >/dev/null || { echo "e2e: kcat is needed (Debian package kcat: apt-get install -y kcat)" >&2; exit 1; }
command -v java >/dev/null || { echo "e2e: a Java 17+ runtime is needed to run Kafka" >&2; exit 1; }
scripts/kafka/fetch.sh 4.3.1 >/dev/null
scripts/kafka/fetch.sh 3.9.2 >/dev/null
[ -x bin/kmirror ] || make build
go test -tags e2e -count=1 -timeout 30m -v ./e2e/... "$@" 2>&1 | tee "${E2E_LOG:-/tmp/kmirror-e2e.log}" | grep -E '^(=== RUN|--- |\s+\S+_test\.go:[0-9]+: (figures|killed|stopped|kafka|group|site|.*mirrored)|PASS|FAIL|ok )'
exit "${PIPESTATUS[0]}"
