#!/usr/bin/env bash
# kmirror vs MirrorMaker 2 (each at-least-once and exactly-once) vs bare franz-go and sarama
# mirrors vs the clusters' ceiling, on real KRaft brokers, then the same mirrors across a WAN (make
# bench; make bench-wan: --wan-only). Flags go to benchmarks/compare: --records, --value-bytes,
# --partitions, --rounds, --kafka-version,
# --contenders kmirror,bare,baresarama,kmirror-eos,mirrormaker2,mirrormaker2-eos, --only NAME,
# --rtts 0,20,80, --placements near-target,near-source, --wan-contenders, --wan-records,
# --wan-only, --port-base, --kafka-state (go run ./benchmarks/compare -h lists them all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x bin/kmirror ] || make build
go run ./benchmarks/compare --root "$root" "$@"
