#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary (cmd/jaeger of the Go module
# github.com/jaegertracing/jaeger, fetched through the Go module proxy) and prints its path.
#
# The binary is cached under .cache/jaeger/bin/ (git-ignored; KMIRROR_CACHE moves it); a second
# run builds nothing. A first build takes about 3.5 minutes on 2 cores, needs about 2.5 GiB of
# memory and 1.6 GiB of Go build cache.
#
# Why not `go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0`: Jaeger's go.mod has a
# replace directive, and go install refuses a module that has one. So the module is downloaded
# and built as the main module from a writable copy of its source.
#
# JAEGER_VERSION is the module's tag: the v1.x.y module tags carry the v2 binary in cmd/jaeger
# (OTLP receivers, --config, the query API on 16686).
set -euo pipefail
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${KMIRROR_CACHE:-$root/.cache}/jaeger"
bin="$cache/bin/jaeger-$JAEGER_VERSION"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/bin"
# Download outside any module, so the caller's go.mod and go.sum are never touched.
dir="$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "jaeger: could not download github.com/jaegertracing/jaeger@$JAEGER_VERSION from the Go module proxy" >&2
  exit 1
fi
src="$cache/src-$JAEGER_VERSION.$$"
trap 'rm -rf "$src" "$bin.$$.tmp"' EXIT
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
echo "jaeger: building $JAEGER_VERSION (cmd/jaeger), a few minutes the first time" >&2
start=$SECONDS
(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$bin.$$.tmp" ./cmd/jaeger)
mv "$bin.$$.tmp" "$bin"
echo "jaeger: built in $((SECONDS - start))s: $bin" >&2
echo "$bin"
