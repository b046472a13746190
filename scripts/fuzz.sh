#!/usr/bin/env bash
# Runs every fuzz target for a short while (FUZZTIME, 20s by default). New failing inputs are
# written under the package's testdata/fuzz/ and then run as regular tests by go test.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${FUZZTIME:-20s}"
go test -run='^$' -fuzz='^FuzzLoad$' -fuzztime="$t" ./pkg/config
go test -run='^$' -fuzz='^FuzzRecordFrom$' -fuzztime="$t" ./pkg/record
go test -run='^$' -fuzz='^FuzzParseAndMap$' -fuzztime="$t" ./pkg/migrate
go test -run='^$' -fuzz='^FuzzDecode$' -fuzztime="$t" ./pkg/offsetmap
go test -run='^$' -fuzz='^FuzzDecodeUserData$' -fuzztime="$t" ./pkg/slots
