# kmirror — build, test and operate.
GO        ?= go
BIN       ?= bin/kmirror
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/kmirror/kmirror/pkg/version.Version=$(VERSION)
PREFIX    ?= /usr/local
DESTDIR   ?=

.PHONY: all build demo test lint e2e kafka-fetch kafka-up kafka-down bench bench-wan bench-micro bench-scale deploy-check image install fuzz clean

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kmirror

## demo: mirror a generated workload between two embedded Kafka clusters and verify it.
demo:
	$(GO) run ./cmd/kmirror demo

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

image:
	buildah bud -f Containerfile -t kmirror:$(VERSION) .

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
	rm -rf bin
