package telemetry

import (
	"strings"

	gometrics "github.com/rcrowley/go-metrics"
)

// WithoutTopicMetrics wraps a sarama client's go-metrics registry so that sarama's per-topic
// metrics ("…-for-topic-<topic>": a meter and three histograms per topic and client) are never
// made: sarama gets a no-op metric for them, and nothing is registered, sampled or exported.
//
// Why: each client keeps them for every topic it touches, each histogram with a sample of 1028
// values and each meter ticked every 5 s by go-metrics; with a thousand topics and a producer per
// worker that is thousands of live metrics, tens of thousands of series in every scrape, and CPU
// spent while no record moves. The per-topic kmirror_ families and the per-broker sarama
// families carry what an operator acts on.
func WithoutTopicMetrics(r gometrics.Registry) gometrics.Registry {
	if r == nil {
		return nil
	}
	return filter{r, func(name string) bool { return strings.Contains(name, "-for-topic-") }}
}

// WithoutConsumerBatchSize wraps a sarama client's go-metrics registry so that sarama's
// consumer-batch-size histogram (records per partition per fetch response) is never made.
//
// Why: sarama looks it up in the registry and updates its sample once for every partition of
// every fetch response, records or not, under two locks. At 10,000 partitions that is 10,000
// times per fetch, nearly all with 0, and a tenth of an idle kmirror's CPU there
// (benchmarks/results/scale-2026-12-01.md); what it says is in kmirror_records_mirrored_total and
// sarama's fetch request rate (kmirror_sarama_protocol_requests_total{api_key="1"}).
func WithoutConsumerBatchSize(r gometrics.Registry) gometrics.Registry {
	if r == nil {
		return nil
	}
	return filter{r, func(name string) bool { return name == "consumer-batch-size" }}
}

// WithoutAny wraps a sarama client's go-metrics registry so that sarama makes none of its metrics:
// every one is a no-op, nothing is registered, sampled or ticked.
//
// Why: bridged, sarama's metrics are most of a scrape (per client, per broker, per API key: 816
// of 1,223 lines of a small deployment) and cost sarama's goroutines a lock and a sample per
// request, while the kmirror_ families carry what an operator acts on. telemetry.sarama_metrics
// turns them back on for a client-level investigation.
func WithoutAny(r gometrics.Registry) gometrics.Registry {
	if r == nil {
		return nil
	}
	return filter{r, func(string) bool { return true }}
}

// filter is a registry in which the metrics named by drop are no-ops that are never registered.
type filter struct {
	gometrics.Registry
	drop func(name string) bool
}

// GetOrRegister returns a no-op metric of the kind asked for when name is dropped.
func (f filter) GetOrRegister(name string, i any) any {
	if !f.drop(name) {
		return f.Registry.GetOrRegister(name, i)
	}
	switch i.(type) {
	case func() gometrics.Meter, gometrics.Meter:
		return gometrics.NilMeter{}
	case func() gometrics.Histogram, gometrics.Histogram:
		return gometrics.NilHistogram{}
	case func() gometrics.Counter, gometrics.Counter:
		return gometrics.NilCounter{}
	case func() gometrics.Gauge, gometrics.Gauge:
		return gometrics.NilGauge{}
	case func() gometrics.Timer, gometrics.Timer:
		return gometrics.NilTimer{}
	}
	return f.Registry.GetOrRegister(name, i) // a kind sarama does not use today: kept
}

// Register leaves dropped metrics out.
func (f filter) Register(name string, i any) error {
	if f.drop(name) {
		return nil
	}
	return f.Registry.Register(name, i)
}
