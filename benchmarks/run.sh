#!/usr/bin/env bash
# kmirror vs MirrorMaker 2 vs the clusters' ceiling, on real KRaft brokers (make bench).
# Flags go to benchmarks/compare: --records, --value-bytes, --partitions, --rounds, --kafka-version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x bin/kmirror ] || make build
go run ./benchmarks/compare --root "$root" "$@"
