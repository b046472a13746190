package telemetry

import (
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	gometrics "github.com/rcrowley/go-metrics"
)

// SaramaCollector exports sarama's go-metrics registries (sarama.Config.MetricRegistry: one per
// client — the consumer group, each worker's producer, the admins) as Prometheus metrics. It reads
// them at scrape time, so sarama's hot path is untouched and nothing is copied in between scrapes.
//
// Names are derived mechanically, so that a sarama upgrade that adds a metric needs no change here:
//
//   - prefix kmirror_sarama_, then the go-metrics name with every character outside [a-zA-Z0-9_]
//     turned into '_';
//   - a "-for-broker-N" suffix becomes a broker="N" label and a "-for-topic-X" suffix a topic="X"
//     label; the family gets a broker_ or topic_ prefix, because sarama also keeps the aggregate
//     under the bare name and one family must have one label set (and sum() must not count a
//     request twice): request-rate-for-broker-1 → kmirror_sarama_broker_request_total{broker="1"};
//   - "protocol-requests-rate-<api key>" gets an api_key label, "consumer-group-*-<group id>" a
//     group label, so no identifier ends up in a metric name;
//   - every series has a client label: the name given to Add ("consumer", "producer-3");
//   - milliseconds ("-in-ms") become seconds, Timer nanoseconds become seconds.
//
// Types: a Meter exports its count as a counter (<name minus "-rate">_total) and its one-minute
// rate as a gauge (<…>_rate1); a Histogram or Timer exports a summary (count, sum and the 0.5,
// 0.75, 0.95 and 0.99 quantiles of sarama's sample); a Gauge a gauge; a Counter (go-metrics
// counters can go down, like requests-in-flight) a gauge, or a counter when its name already ends
// in "total". When two go-metrics names map to the same Prometheus name with a different type or
// label set, the first one seen is exported and the other skipped, so a scrape never fails.
type SaramaCollector struct {
	mu         sync.Mutex
	registries map[string]gometrics.Registry
	families   map[string]*saramaFamily // by Prometheus name; remembered across scrapes
}

// saramaFamily is a Prometheus metric family built from go-metrics, with its Desc made once.
type saramaFamily struct {
	desc   *prometheus.Desc
	kind   familyKind
	labels string // label names joined by ",", to detect collisions
}

type familyKind uint8

const (
	kindCounter familyKind = iota
	kindGauge
	kindSummary
)

// saramaQuantiles are the quantiles exported from a go-metrics sample. sarama keeps 1028 samples
// per histogram, too few for a meaningful p999.
var saramaQuantiles = []float64{0.5, 0.75, 0.95, 0.99}

// NewSaramaCollector returns a collector with no registries; Add them as clients are built, and
// register the collector once on the Prometheus registry.
func NewSaramaCollector() *SaramaCollector {
	return &SaramaCollector{
		registries: make(map[string]gometrics.Registry),
		families:   make(map[string]*saramaFamily),
	}
}

// Add exports a client's go-metrics registry with client=name. Adding a name again replaces its
// registry; a nil registry is ignored.
func (c *SaramaCollector) Add(client string, r gometrics.Registry) {
	if r == nil {
		return
	}
	c.mu.Lock()
	c.registries[client] = r
	c.mu.Unlock()
}

// Remove stops exporting a client's registry (a producer that was closed).
func (c *SaramaCollector) Remove(client string) {
	c.mu.Lock()
	delete(c.registries, client)
	c.mu.Unlock()
}

// Describe implements prometheus.Collector. The set of sarama metrics grows as brokers and topics
// appear, so the collector is unchecked: it describes nothing.
func (c *SaramaCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *SaramaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clients := make([]string, 0, len(c.registries))
	for name := range c.registries {
		clients = append(clients, name)
	}
	sort.Strings(clients) // a stable order, so a collision resolves the same way every scrape
	seen := make(map[string]struct{})
	for _, client := range clients {
		c.registries[client].Each(func(name string, metric any) {
			c.collectOne(ch, seen, client, name, metric)
		})
	}
}

func (c *SaramaCollector) collectOne(ch chan<- prometheus.Metric, seen map[string]struct{}, client, name string, metric any) {
	n := parseSaramaName(name)
	labelValues := append(n.labelValues, client)
	// emit sends one series unless its family collides with an earlier one or the series was
	// already sent this scrape.
	emit := func(fq string, kind familyKind, help string, build func(*prometheus.Desc) (prometheus.Metric, error)) {
		f := c.family(fq, kind, help, n.labelNames)
		if f == nil {
			return
		}
		key := fq + "\xff" + strings.Join(labelValues, "\xff")
		if _, dup := seen[key]; dup {
			return
		}
		seen[key] = struct{}{}
		if m, err := build(f.desc); err == nil {
			ch <- m
		}
	}
	base, scale := n.base, 1.0
	if b, ok := millisToSeconds(base); ok {
		base, scale = b, 0.001
	}
	fq := "kmirror_sarama_" + n.prefix + base
	switch m := metric.(type) {
	case gometrics.Meter:
		s := m.Snapshot()
		mb := meterBase(n.prefix + n.base)
		emit("kmirror_sarama_"+mb+"_total", kindCounter, n.help("meter", "count of events"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return prometheus.NewConstMetric(d, prometheus.CounterValue, float64(s.Count()), labelValues...)
		})
		emit("kmirror_sarama_"+mb+"_rate1", kindGauge, n.help("meter", "events per second, one-minute moving average"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return prometheus.NewConstMetric(d, prometheus.GaugeValue, s.Rate1(), labelValues...)
		})
	case gometrics.Counter:
		v := m.Snapshot().Count()
		if strings.HasSuffix(fq, "_total") && v >= 0 {
			emit(fq, kindCounter, n.help("counter", "count"), func(d *prometheus.Desc) (prometheus.Metric, error) {
				return prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), labelValues...)
			})
			return
		}
		emit(strings.TrimSuffix(fq, "_total"), kindGauge, n.help("counter", "current value"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return prometheus.NewConstMetric(d, prometheus.GaugeValue, float64(v), labelValues...)
		})
	case gometrics.Gauge:
		v := float64(m.Snapshot().Value()) * scale
		emit(fq, kindGauge, n.help("gauge", "current value"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labelValues...)
		})
	case gometrics.GaugeFloat64:
		v := m.Snapshot().Value() * scale
		emit(fq, kindGauge, n.help("gauge", "current value"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labelValues...)
		})
	case gometrics.Histogram:
		s := m.Snapshot()
		emit(fq, kindSummary, n.help("histogram", "distribution of sarama's recent sample"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return constSummary(d, s.Count(), float64(s.Sum())*scale, s.Percentiles(saramaQuantiles), scale, labelValues)
		})
	case gometrics.Timer:
		s := m.Snapshot()
		if !strings.HasSuffix(fq, "_seconds") {
			fq += "_seconds"
		}
		const nanos = 1e-9
		emit(fq, kindSummary, n.help("timer", "durations in sarama's recent sample"), func(d *prometheus.Desc) (prometheus.Metric, error) {
			return constSummary(d, s.Count(), float64(s.Sum())*nanos, s.Percentiles(saramaQuantiles), nanos, labelValues)
		})
	}
}

// family returns the family of a Prometheus name, creating it on first sight, or nil when the name
// is already taken by a family of another type or label set.
func (c *SaramaCollector) family(fq string, kind familyKind, help string, labelNames []string) *saramaFamily {
	names := append(labelNames[:len(labelNames):len(labelNames)], "client")
	sig := strings.Join(names, ",")
	if f, ok := c.families[fq]; ok {
		if f.kind != kind || f.labels != sig {
			return nil
		}
		return f
	}
	f := &saramaFamily{desc: prometheus.NewDesc(fq, help, names, nil), kind: kind, labels: sig}
	c.families[fq] = f
	return f
}

func constSummary(d *prometheus.Desc, count int64, sum float64, ps []float64, scale float64, labelValues []string) (prometheus.Metric, error) {
	q := make(map[float64]float64, len(saramaQuantiles))
	for i, p := range saramaQuantiles {
		q[p] = ps[i] * scale
	}
	if count < 0 {
		count = 0
	}
	return prometheus.NewConstSummary(d, uint64(count), sum, q, labelValues...)
}

// saramaName is a go-metrics name taken apart.
type saramaName struct {
	prefix      string // "broker_", "topic_" or ""
	base        string // sanitised, without the parts that became labels
	source      string // the go-metrics name without the parts that became labels, for HELP
	labelNames  []string
	labelValues []string
}

func (n saramaName) help(kind, what string) string {
	h := "sarama go-metrics " + kind + " " + n.source + ": " + what
	switch n.prefix {
	case "broker_":
		h += ", per broker"
	case "topic_":
		h += ", per topic"
	}
	return h + "."
}

// saramaSuffixLabels are go-metrics names that end in an identifier: the prefix is kept as the
// name, the rest becomes the label.
var saramaSuffixLabels = []struct{ prefix, label string }{
	{"protocol-requests-rate-", "api_key"},
	{"consumer-group-join-total-", "group"},
	{"consumer-group-join-failed-", "group"},
	{"consumer-group-sync-total-", "group"},
	{"consumer-group-sync-failed-", "group"},
}

// parseSaramaName takes "record-send-rate-for-topic-orders" apart into base "record_send_rate",
// prefix "topic_" and the label topic="orders". The topic marker is looked for first, because a
// topic name runs to the end of the string and may itself contain "-for-broker-".
func parseSaramaName(name string) saramaName {
	var n saramaName
	for _, kind := range []string{"topic", "broker"} {
		marker := "-for-" + kind + "-"
		if i := strings.Index(name, marker); i > 0 {
			n.labelNames = append(n.labelNames, kind)
			n.labelValues = append(n.labelValues, name[i+len(marker):])
			name = name[:i]
			n.prefix = kind + "_" + n.prefix
		}
	}
	for _, s := range saramaSuffixLabels {
		if strings.HasPrefix(name, s.prefix) && len(name) > len(s.prefix) {
			n.labelNames = append(n.labelNames, s.label)
			n.labelValues = append(n.labelValues, name[len(s.prefix):])
			name = strings.TrimSuffix(s.prefix, "-")
			break
		}
	}
	n.source = name
	n.base = sanitizeMetricName(name)
	return n
}

// meterBase names a meter's family: sarama calls its meters "…-rate", but the family holds the
// count of events ("request-rate" → "request"), and a byte meter counts bytes.
func meterBase(base string) string {
	base = strings.TrimSuffix(base, "_rate")
	if strings.HasSuffix(base, "_byte") {
		base += "s"
	}
	return base
}

// millisToSeconds renames a millisecond metric ("request_latency_in_ms") to base units.
func millisToSeconds(base string) (string, bool) {
	for _, suffix := range []string{"_in_ms", "_ms"} {
		if b, ok := strings.CutSuffix(base, suffix); ok {
			return b + "_seconds", true
		}
	}
	return base, false
}

func sanitizeMetricName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return strings.Trim(string(b), "_")
}
