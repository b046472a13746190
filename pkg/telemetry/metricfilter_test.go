package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gometrics "github.com/rcrowley/go-metrics"
)

func TestWithoutTopicMetricsKeepsBrokerAndAggregateFamiliesOnly(t *testing.T) {
	r := WithoutTopicMetrics(gometrics.NewRegistry())
	// The calls sarama makes (metrics.go: getOrRegisterTopicMeter, getOrRegisterHistogram).
	gometrics.GetOrRegisterMeter("record-send-rate-for-topic-orders", r).Mark(5)
	r.GetOrRegister("batch-size-for-topic-orders", func() gometrics.Histogram {
		return gometrics.NewHistogram(gometrics.NewExpDecaySample(1028, 0.015))
	}).(gometrics.Histogram).Update(100)
	gometrics.GetOrRegisterMeter("record-send-rate", r).Mark(5)
	gometrics.GetOrRegisterMeter("request-rate-for-broker-1", r).Mark(2)

	var names []string
	r.Each(func(name string, _ any) { names = append(names, name) })
	if len(names) != 2 || strings.Contains(strings.Join(names, " "), "for-topic") {
		t.Fatalf("registered %v, want only record-send-rate and request-rate-for-broker-1", names)
	}

	c := NewSaramaCollector()
	c.Add("producer-0", r)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "kmirror_sarama_topic_") {
			t.Errorf("exported %s, want no per-topic sarama family", f.GetName())
		}
	}
	if n := testutil.CollectAndCount(c, "kmirror_sarama_record_send_total"); n != 1 {
		t.Errorf("kmirror_sarama_record_send_total has %d series, want 1", n)
	}
}

func TestWithoutConsumerBatchSizeKeepsTheOtherConsumerMetrics(t *testing.T) {
	r := WithoutTopicMetrics(WithoutConsumerBatchSize(gometrics.NewRegistry()))
	// As sarama's parseResponse asks for it, once per partition of each fetch response.
	h := r.GetOrRegister("consumer-batch-size", func() gometrics.Histogram {
		return gometrics.NewHistogram(gometrics.NewExpDecaySample(1028, 0.015))
	}).(gometrics.Histogram)
	h.Update(0)
	if _, ok := h.(gometrics.NilHistogram); !ok {
		t.Errorf("consumer-batch-size is a %T, want a no-op histogram", h)
	}
	gometrics.GetOrRegisterMeter("consumer-fetch-rate", r).Mark(1)
	gometrics.GetOrRegisterMeter("consumer-fetch-rate-for-topic-orders", r).Mark(1)

	var names []string
	r.Each(func(name string, _ any) { names = append(names, name) })
	if len(names) != 1 || names[0] != "consumer-fetch-rate" {
		t.Fatalf("registered %v, want only consumer-fetch-rate", names)
	}
}

// TestWithoutAnyMakesNoSaramaMetric: with telemetry.sarama_metrics off, every metric sarama asks
// for is a no-op and nothing is registered (so nothing is sampled, ticked or exported).
func TestWithoutAnyMakesNoSaramaMetric(t *testing.T) {
	r := WithoutAny(gometrics.NewRegistry())
	m := gometrics.GetOrRegisterMeter("request-rate-for-broker-1", r)
	m.Mark(2)
	if _, ok := m.(gometrics.NilMeter); !ok {
		t.Errorf("request-rate-for-broker-1 is a %T, want a no-op meter", m)
	}
	r.GetOrRegister("request-latency-in-ms", func() gometrics.Histogram {
		return gometrics.NewHistogram(gometrics.NewExpDecaySample(1028, 0.015))
	}).(gometrics.Histogram).Update(3)
	gometrics.GetOrRegisterCounter("requests-in-flight", r).Inc(1)
	var names []string
	r.Each(func(name string, _ any) { names = append(names, name) })
	if len(names) != 0 {
		t.Fatalf("registered %v, want nothing", names)
	}
	c := NewSaramaCollector()
	c.Add("consumer", r)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("the bridge exports %d series of a WithoutAny registry, want 0", n)
	}
}
