#!/usr/bin/env bash
# kmirror vs MirrorMaker 2 (each at-least-once and exactly-once) vs a bare franz-go mirror vs the
# clusters' ceiling, on real KRaft brokers (make bench). Flags go to benchmarks/compare: --records,
# --value-bytes, --partitions, --rounds, --kafka-version,
# --contenders kmirror,bare,kmirror-eos,mirrormaker2,mirrormaker2-eos,
# --only NAME (go run ./benchmarks/compare -h lists them all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x bin/kmirror ] || make build
go run ./benchmarks/compare --root "$root" "$@"
