package telemetry

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	gometrics "github.com/rcrowley/go-metrics"
)

// SaramaCollector exports sarama's go-metrics registries (one per client: the consumer, each
// producer, the admins) as Prometheus metrics, read at scrape time.
//
// A sarama name such as "request-latency-in-ms-for-broker-3" becomes
// kmirror_sarama_request_latency_in_ms{client="producer-0",broker="3"}; "-for-topic-X" becomes a
// topic label. Meters export their count as a counter (_total); histograms and timers export a
// summary of their sample; counters and gauges a gauge.
type SaramaCollector struct {
	mu         sync.Mutex
	registries map[string]gometrics.Registry
}

// NewSaramaCollector returns an empty collector; Add registries to it.
func NewSaramaCollector() *SaramaCollector {
	return &SaramaCollector{registries: make(map[string]gometrics.Registry)}
}

// Add exports a client's registry under the client label.
func (c *SaramaCollector) Add(client string, r gometrics.Registry) {
	if r == nil {
		return
	}
	c.mu.Lock()
	c.registries[client] = r
	c.mu.Unlock()
}

// Describe implements prometheus.Collector. The set of sarama metrics grows as brokers and
// topics appear, so the collector is unchecked: it describes nothing.
func (c *SaramaCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *SaramaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	regs := make(map[string]gometrics.Registry, len(c.registries))
	for k, v := range c.registries {
		regs[k] = v
	}
	c.mu.Unlock()
	for client, reg := range regs {
		reg.Each(func(name string, metric any) {
			base, labelNames, labelValues := splitSaramaName(name)
			// Prometheus wants base units: sarama's millisecond metrics become seconds.
			scale := 1.0
			if strings.HasSuffix(base, "_in_ms") {
				base, scale = strings.TrimSuffix(base, "_in_ms")+"_seconds", 0.001
			}
			labelNames = append(labelNames, "client")
			labelValues = append(labelValues, client)
			fq := "kmirror_sarama_" + base
			help := "sarama's " + strings.ReplaceAll(base, "_", "-") + " (go-metrics)"
			switch m := metric.(type) {
			case gometrics.Meter:
				d := prometheus.NewDesc(fq+"_total", help, labelNames, nil)
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(m.Snapshot().Count()), labelValues...)
			case gometrics.Counter:
				d := prometheus.NewDesc(fq, help, labelNames, nil)
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(m.Snapshot().Count()), labelValues...)
			case gometrics.Gauge:
				d := prometheus.NewDesc(fq, help, labelNames, nil)
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(m.Snapshot().Value())*scale, labelValues...)
			case gometrics.GaugeFloat64:
				d := prometheus.NewDesc(fq, help, labelNames, nil)
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, m.Snapshot().Value(), labelValues...)
			case gometrics.Histogram:
				s := m.Snapshot()
				ch <- summary(fq, help, labelNames, labelValues, s.Count(), float64(s.Sum())*scale, scaled(s.Percentiles(quantiles), scale))
			case gometrics.Timer:
				s := m.Snapshot()
				ch <- summary(fq, help, labelNames, labelValues, s.Count(), float64(s.Sum()), s.Percentiles(quantiles))
			}
		})
	}
}

var quantiles = []float64{0.5, 0.95, 0.99}

func scaled(v []float64, by float64) []float64 {
	for i := range v {
		v[i] *= by
	}
	return v
}

func summary(name, help string, labelNames, labelValues []string, count int64, sum float64, ps []float64) prometheus.Metric {
	q := make(map[float64]float64, len(quantiles))
	for i, p := range quantiles {
		q[p] = ps[i]
	}
	d := prometheus.NewDesc(name, help, labelNames, nil)
	return prometheus.MustNewConstSummary(d, uint64(count), sum, q, labelValues...)
}

// splitSaramaName turns "record-send-rate-for-topic-orders" into ("topic_record_send_rate",
// ["topic"], ["orders"]). Per-broker and per-topic variants get their own metric names, so that
// every metric family has one set of labels (sarama also keeps an aggregate without the suffix).
func splitSaramaName(name string) (string, []string, []string) {
	var names, values []string
	prefix := ""
	for _, kind := range []string{"broker", "topic"} {
		marker := "-for-" + kind + "-"
		if i := strings.Index(name, marker); i >= 0 {
			names = append(names, kind)
			values = append(values, name[i+len(marker):])
			name = name[:i]
			prefix = kind + "_" + prefix
		}
	}
	return prefix + sanitize(name), names, values
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
