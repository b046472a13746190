# kmirror — build, test and operate.
GO        ?= go
BIN       ?= bin/kmirror
# VERSION is the v* tag when the tree is exactly at one, git describe's v0.2.0-3-gabc1234[-dirty]
# past one, "dev" before the first; the commit and build date are stamped beside it.
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG      := github.com/kmirror/kmirror/pkg/version
LDFLAGS   := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT) -X $(VPKG).Date=$(DATE)
PREFIX    ?= /usr/local
DESTDIR   ?=

.PHONY: all build demo test lint e2e kafka-fetch kafka-up kafka-down bench bench-wan bench-micro bench-scale deploy-check image install fuzz clean release release-snapshot release-check release-tool

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kmirror

## demo: mirror a generated workload between two embedded Kafka clusters and verify it.
## DEMO_ARGS passes flags (--records, --rate, ...; the docs' test runs a smaller demo so).
DEMO_ARGS ?=
demo:
	$(GO) run ./cmd/kmirror demo $(DEMO_ARGS)

## test: the hermetic suite (in-process Kafka clusters), with the race detector; then the
## allocation tests again without it (the race detector makes sync.Pool drop items on purpose,
## so the pool's zero-allocation test skips itself under -race).
test:
	$(GO) test -race -timeout 15m ./...
	$(GO) test -count=1 -run 'Alloc' ./pkg/record/ ./pkg/telemetry/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) -C build/release vet ./...
	$(GO) -C build/release mod tidy -diff

## fuzz: a short run of every fuzz target.
fuzz:
	./scripts/fuzz.sh

## e2e: the end-to-end suite against real Apache Kafka (KRaft) brokers from Maven Central.
e2e: build
	./scripts/e2e.sh

kafka-fetch:
	./scripts/kafka/fetch.sh

## kafka-up: europe on 127.0.0.1:19012 and us on 127.0.0.1:29012; KAFKA_EUROPE_PORT_BASE and
## KAFKA_US_PORT_BASE move them (scripts/kafka/cluster.sh: node 1 listens on base + 12).
kafka-up:
	KAFKA_PORT_BASE=$(KAFKA_EUROPE_PORT_BASE) ./scripts/kafka/cluster.sh up europe
	KAFKA_PORT_BASE=$(KAFKA_US_PORT_BASE) ./scripts/kafka/cluster.sh up us

kafka-down:
	./scripts/kafka/cluster.sh down us
	./scripts/kafka/cluster.sh down europe

## bench: kmirror vs MirrorMaker 2 vs a bare franz-go mirror vs the cluster's ceiling, on real
## brokers; then kmirror and MirrorMaker 2 across a WAN (a latency proxy at 0, 20, 80 ms RTT, the
## mirror near the target and near the source).
bench: build
	./benchmarks/run.sh

## bench-wan: the WAN section alone. BENCH_ARGS passes flags (go run ./benchmarks/compare -h).
bench-wan: build
	./benchmarks/run.sh --wan-only $(BENCH_ARGS)

## bench-micro: the Go micro-benchmarks, each beside its reference (benchstat medians).
bench-micro:
	./benchmarks/micro.sh

## bench-scale: 1,000 topics × 10 partitions in one kmirror process on real brokers (time to all
## flowing, memory, idle and steady CPU, the /metrics scrape, profiles); then the pauses of a
## member joining, leaving and restarting, with and without consumer.group_instance_id.
## SCALE_ARGS passes flags (go run ./benchmarks/scale -h).
bench-scale: build
	go run ./benchmarks/scale $(SCALE_ARGS)
	go run ./benchmarks/scale --mode pause

## deploy-check: validate every manifest under deploy/ offline against the real schemas.
deploy-check:
	./scripts/deploy-check.sh

## release: from a clean tree exactly at a v* tag, into dist/: static linux/amd64 and linux/arm64
## binaries, a CycloneDX SBOM for each, the multi-arch OCI image (an OCI layout, dist/oci, and its
## tarball) and SHA256SUMS. No container engine or registry needed; docs/releasing.md.
## The tool (build/release, its own module so its dependencies stay out of kmirror's go.mod) wires
## go-containerregistry (the library behind crane and ko) and cyclonedx-gomod. goreleaser was
## weighed: its image steps need a Docker engine or ko pulling a base image from a registry, which
## this builder cannot reach, and it is a far heavier build than the few files it would replace.
## release-snapshot: the same from any tree (untagged, uncommitted): the version says which.
## release-check: a snapshot, then verifies it (build/release/release_test.go, sha256sum -c).
RELEASE_TOOL := $(CURDIR)/bin/kmirror-release
DIST         ?= dist

release-tool:
	$(GO) -C build/release build -o $(RELEASE_TOOL) .

release: release-tool
	cd build/release && $(RELEASE_TOOL) -root $(CURDIR) -dist $(abspath $(DIST))

release-snapshot: release-tool
	cd build/release && $(RELEASE_TOOL) -snapshot -root $(CURDIR) -dist $(abspath $(DIST))

release-check: release-snapshot
	cd $(DIST) && sha256sum --strict -c SHA256SUMS
	KMIRROR_DIST=$(abspath $(DIST)) $(GO) -C build/release test -count=1 -v .

## image: for a networked builder with buildah, after `make release`: the same binaries on UBI
## micro (pinned by digest in the Containerfile), both architectures, as one manifest list.
image:
	@if grep -q 'PIN-ME' Containerfile; then \
	  echo "Containerfile: the ubi-micro digest is a placeholder; pin it first (docs/releasing.md)"; exit 1; fi
	@test -e $(DIST)/kmirror-$(VERSION)-linux-amd64 || { echo "no $(DIST)/kmirror-$(VERSION)-linux-amd64: run make release first"; exit 1; }
	buildah build -f Containerfile --platform linux/amd64,linux/arm64 --build-arg VERSION=$(VERSION) \
	  --manifest kmirror:$(VERSION) .

## install: the binary, the systemd units (kmirror.service, the kmirror@.service template), and /etc/kmirror/kmirror.yaml unless one is there already.
## The configuration is 0644: the unit's dynamic user must read it; secrets belong in
## /etc/kmirror/kmirror.env (0600, read by systemd) or in credentials (see deploy/README.md).
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kmirror
	install -D -m 0644 deploy/systemd/kmirror.service $(DESTDIR)/etc/systemd/system/kmirror.service
	install -D -m 0644 deploy/systemd/kmirror@.service $(DESTDIR)/etc/systemd/system/kmirror@.service
	install -d -m 0755 $(DESTDIR)/etc/kmirror
	@if [ -e $(DESTDIR)/etc/kmirror/kmirror.yaml ]; then \
	  echo "kept the existing $(DESTDIR)/etc/kmirror/kmirror.yaml (the example is configs/kmirror.yaml)"; \
	else \
	  install -m 0644 configs/kmirror.yaml $(DESTDIR)/etc/kmirror/kmirror.yaml; \
	fi

clean:
	rm -rf bin dist
