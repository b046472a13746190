#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary from its Go module (fetched through the Go module
# proxy) and prints its path. The binary is cached under .cache/jaeger/; a second run builds
# nothing. Jaeger's go.mod has replace directives, so it is built as the main module from a copy
# of its source rather than with `go install pkg@version`.
set -euo pipefail
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"   # the module tag that carries the v2 binary (cmd/jaeger)
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${KMIRROR_CACHE:-$root/.cache}/jaeger"
bin="$cache/bin/jaeger-$JAEGER_VERSION"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/bin"
dir="$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "jaeger: could not download github.com/jaegertracing/jaeger@$JAEGER_VERSION from the Go module proxy" >&2
  exit 1
fi
src="$cache/src-$JAEGER_VERSION"
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
echo "jaeger: building $JAEGER_VERSION (cmd/jaeger) — this takes a few minutes the first time" >&2
(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/jaeger)
mv "$bin.tmp" "$bin"
rm -rf "$src"
echo "$bin"
