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
	return topicFilter{r}
}

type topicFilter struct{ gometrics.Registry }

func perTopic(name string) bool { return strings.Contains(name, "-for-topic-") }

// GetOrRegister returns a no-op metric of the kind asked for when name is per topic.
func (f topicFilter) GetOrRegister(name string, i any) any {
	if !perTopic(name) {
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

// Register drops per-topic metrics.
func (f topicFilter) Register(name string, i any) error {
	if perTopic(name) {
		return nil
	}
	return f.Registry.Register(name, i)
}
