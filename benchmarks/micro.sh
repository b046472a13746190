#!/usr/bin/env bash
# kmirror's Go micro-benchmarks, each beside its reference, run on this machine in this run
# (make bench-micro). Machines are noisy: every benchmark runs COUNT times (default 6) and
# benchstat reports the median and its spread, and the ratio to the reference where there is one:
#
#   ring vs channel    pkg/ring     BenchmarkHandoff     the lock-free queue against a buffered channel
#   pool vs alloc      pkg/record   BenchmarkConvert     recycled records against a new one per record
#   tracker            pkg/offsets  BenchmarkRegisterAck, BenchmarkAckOutOfOrder
#   workers            benchmarks   BenchmarkPipelineCatchUp   the whole pipeline on in-process clusters
#   tracing            benchmarks   BenchmarkTracingOverhead   off, 1% and 100% of records sampled
#   offset map         benchmarks   BenchmarkOffsetMapOverhead off and on (the default)
#   map recorder       pkg/offsetmap BenchmarkRecorderCopied   one acknowledgement recorded
#   fetch              pkg/fetch    BenchmarkFetch     pkg/fetch against sarama's PartitionConsumer
#                                                      and franz-go's consumer on kfake (records/s)
#   checksum           benchmarks   BenchmarkChecksum  CRC-32C of 1 MiB pieces from memory against
#                                                      the same piece in the CPU's caches
#
# The raw output and the tables are written to benchmarks/results/micro-<time>.txt.
#   benchmarks/micro.sh [COUNT]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
count="${1:-${COUNT:-6}}"
benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)
out="benchmarks/results/micro-$(date -u +%Y-%m-%dT%H%M).txt"
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT

run() { go test -run '^$' -count "$count" -benchmem "$@" | tee -a "$raw" | grep -E '^(Benchmark|ok|FAIL)' >&2; }
run -bench '^BenchmarkHandoff$' -benchtime 2000000x ./pkg/ring/
run -bench '^BenchmarkConvert$' -benchtime 2000000x ./pkg/record/
run -bench '^(BenchmarkRegisterAck|BenchmarkAckOutOfOrder)$' -benchtime 200000x ./pkg/offsets/
run -bench '^BenchmarkRecorderCopied$' ./pkg/offsetmap/
run -bench '^BenchmarkFetch$' -benchtime 3x ./pkg/fetch/
run -bench '^BenchmarkChecksum$' ./benchmarks/
run -bench '^(BenchmarkPipelineCatchUp|BenchmarkTracingOverhead|BenchmarkOffsetMapOverhead)$' -benchtime 200000x -timeout 30m ./benchmarks/

{
  echo "# kmirror micro-benchmarks — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# $(go version), $(nproc) CPUs, $count runs each; medians ± 95% interval (benchstat)"
  echo
  echo "## ring vs channel (reference: channel)"
  "${benchstat[@]}" -filter '.name:Handoff' -col /impl@'(channel ring)' "$raw"
  echo
  echo "## record conversion: pool vs alloc (reference: alloc)"
  "${benchstat[@]}" -filter '.name:Convert' -col /impl@'(alloc pool)' "$raw"
  echo
  echo "## tracker"
  "${benchstat[@]}" -filter '.name:(RegisterAck OR AckOutOfOrder)' "$raw"
  echo
  echo "## pipeline catch-up by worker count (reference: 1 worker)"
  "${benchstat[@]}" -filter '.name:PipelineCatchUp' -col /workers "$raw"
  echo
  echo "## tracing overhead (reference: off)"
  "${benchstat[@]}" -filter '.name:TracingOverhead' -col /sampled@'(off 0.01 1)' "$raw"
  echo
  echo "## offset map overhead (reference: off)"
  "${benchstat[@]}" -filter '.name:OffsetMapOverhead' -col /offset_map@'(false true)' "$raw"
  echo
  echo "## offset map recorder"
  "${benchstat[@]}" -filter '.name:RecorderCopied' "$raw"
  echo
  echo "## fetch: pkg/fetch vs sarama's PartitionConsumer and franz-go (reference: sarama)"
  "${benchstat[@]}" -filter '.name:Fetch' -col /impl@'(sarama kgo fetch)' "$raw"
  echo
  echo "## CRC-32C of 1 MiB pieces: from memory vs cached (reference: cached)"
  "${benchstat[@]}" -filter '.name:Checksum' -col /from@'(cached memory)' "$raw"
  echo
  echo "## raw"
  cat "$raw"
} >"$out"
sed -n '/^## raw/q;p' "$out"
echo "written to $out" >&2
