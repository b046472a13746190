#!/usr/bin/env bash
# Builds the kmirror binary of an earlier commit (the previous release) for the rolling-upgrade
# e2e tests, and prints its path. The build is cached under $KMIRROR_KAFKA_STATE (or
# /tmp/kmirror-kafka) by commit, so a second run reuses it.
#   scripts/previous-release.sh <commit>
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$root" rev-parse --verify "${1:?usage: previous-release.sh <commit>}^{commit}")"
out="${KMIRROR_KAFKA_STATE:-/tmp/kmirror-kafka}/kmirror-release-${commit:0:12}"
bin="$out/kmirror"
if [ ! -x "$bin" ]; then
  src="$(mktemp -d)"
  trap 'rm -rf "$src"' EXIT
  git -C "$root" archive "$commit" | tar -x -C "$src"
  mkdir -p "$out"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/kmirror)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
