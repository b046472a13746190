package telemetry

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gometrics "github.com/rcrowley/go-metrics"
)

func lint(t *testing.T, c prometheus.Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestSaramaNamesBecomeLabelledPrometheusNames(t *testing.T) {
	for _, c := range []struct {
		name                string
		prefix, base        string
		labelNames, lValues string
	}{
		{"request-rate", "", "request_rate", "", ""},
		{"request-rate-for-broker-1", "broker_", "request_rate", "broker", "1"},
		{"batch-size-for-topic-orders_eu", "topic_", "batch_size", "topic", "orders_eu"},
		{"batch-size-for-topic-a-for-broker-1", "topic_", "batch_size", "topic", "a-for-broker-1"},
		{"protocol-requests-rate-18", "", "protocol_requests_rate", "api_key", "18"},
		{"protocol-requests-rate-3-for-broker-2", "broker_", "protocol_requests_rate", "broker,api_key", "2,3"},
		{"consumer-group-join-total-kmirror.europe", "", "consumer_group_join_total", "group", "kmirror.europe"},
		{"request-latency-in-ms", "", "request_latency_in_ms", "", ""},
		{"Weird Name!", "", "weird_name", "", ""},
	} {
		n := parseSaramaName(c.name)
		if n.prefix != c.prefix || n.base != c.base || strings.Join(n.labelNames, ",") != c.labelNames ||
			strings.Join(n.labelValues, ",") != c.lValues {
			t.Errorf("%q → prefix %q base %q labels %v=%v; want %q %q %s=%s",
				c.name, n.prefix, n.base, n.labelNames, n.labelValues, c.prefix, c.base, c.labelNames, c.lValues)
		}
	}
}

func TestSaramaMetricsAreBridgedWithLabels(t *testing.T) {
	producer := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate", producer).Mark(9)
	gometrics.GetOrRegisterMeter("request-rate-for-broker-3", producer).Mark(7)
	gometrics.GetOrRegisterMeter("outgoing-byte-rate", producer).Mark(1024)
	gometrics.GetOrRegisterCounter("requests-in-flight", producer).Inc(2)
	gometrics.GetOrRegisterCounter("consumer-group-join-total-mirror", producer).Inc(4)
	gometrics.GetOrRegisterGauge("buffer-in-ms", producer).Update(1500)
	gometrics.GetOrRegisterGaugeFloat64("ratio", producer).Update(0.25)
	h := gometrics.GetOrRegisterHistogram("request-latency-in-ms-for-broker-3", producer, gometrics.NewUniformSample(100))
	for _, v := range []int64{100, 200, 300, 400} {
		h.Update(v)
	}
	gometrics.GetOrRegisterHistogram("batch-size-for-topic-orders", producer, gometrics.NewUniformSample(10)).Update(42)
	gometrics.GetOrRegisterTimer("flush", producer).Update(250 * time.Millisecond)

	consumer := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate", consumer).Mark(1)

	c := NewSaramaCollector()
	c.Add("producer-0", producer)
	c.Add("consumer", consumer)
	c.Add("nil", nil)

	want := `
# HELP kmirror_sarama_request_total sarama go-metrics meter request-rate: count of events.
# TYPE kmirror_sarama_request_total counter
kmirror_sarama_request_total{client="consumer"} 1
kmirror_sarama_request_total{client="producer-0"} 9
# HELP kmirror_sarama_broker_request_total sarama go-metrics meter request-rate: count of events, per broker.
# TYPE kmirror_sarama_broker_request_total counter
kmirror_sarama_broker_request_total{broker="3",client="producer-0"} 7
# HELP kmirror_sarama_outgoing_bytes_total sarama go-metrics meter outgoing-byte-rate: count of events.
# TYPE kmirror_sarama_outgoing_bytes_total counter
kmirror_sarama_outgoing_bytes_total{client="producer-0"} 1024
# HELP kmirror_sarama_requests_in_flight sarama go-metrics counter requests-in-flight: current value.
# TYPE kmirror_sarama_requests_in_flight gauge
kmirror_sarama_requests_in_flight{client="producer-0"} 2
# HELP kmirror_sarama_consumer_group_join_total sarama go-metrics counter consumer-group-join-total: count.
# TYPE kmirror_sarama_consumer_group_join_total counter
kmirror_sarama_consumer_group_join_total{client="producer-0",group="mirror"} 4
# HELP kmirror_sarama_buffer_seconds sarama go-metrics gauge buffer-in-ms: current value.
# TYPE kmirror_sarama_buffer_seconds gauge
kmirror_sarama_buffer_seconds{client="producer-0"} 1.5
# HELP kmirror_sarama_ratio sarama go-metrics gauge ratio: current value.
# TYPE kmirror_sarama_ratio gauge
kmirror_sarama_ratio{client="producer-0"} 0.25
# HELP kmirror_sarama_broker_request_latency_seconds sarama go-metrics histogram request-latency-in-ms: distribution of sarama's recent sample, per broker.
# TYPE kmirror_sarama_broker_request_latency_seconds summary
kmirror_sarama_broker_request_latency_seconds{broker="3",client="producer-0",quantile="0.5"} 0.25
kmirror_sarama_broker_request_latency_seconds{broker="3",client="producer-0",quantile="0.75"} 0.375
kmirror_sarama_broker_request_latency_seconds{broker="3",client="producer-0",quantile="0.95"} 0.4
kmirror_sarama_broker_request_latency_seconds{broker="3",client="producer-0",quantile="0.99"} 0.4
kmirror_sarama_broker_request_latency_seconds_sum{broker="3",client="producer-0"} 1
kmirror_sarama_broker_request_latency_seconds_count{broker="3",client="producer-0"} 4
# HELP kmirror_sarama_topic_batch_size sarama go-metrics histogram batch-size: distribution of sarama's recent sample, per topic.
# TYPE kmirror_sarama_topic_batch_size summary
kmirror_sarama_topic_batch_size{client="producer-0",topic="orders",quantile="0.5"} 42
kmirror_sarama_topic_batch_size{client="producer-0",topic="orders",quantile="0.75"} 42
kmirror_sarama_topic_batch_size{client="producer-0",topic="orders",quantile="0.95"} 42
kmirror_sarama_topic_batch_size{client="producer-0",topic="orders",quantile="0.99"} 42
kmirror_sarama_topic_batch_size_sum{client="producer-0",topic="orders"} 42
kmirror_sarama_topic_batch_size_count{client="producer-0",topic="orders"} 1
# HELP kmirror_sarama_flush_seconds sarama go-metrics timer flush: durations in sarama's recent sample.
# TYPE kmirror_sarama_flush_seconds summary
kmirror_sarama_flush_seconds{client="producer-0",quantile="0.5"} 0.25
kmirror_sarama_flush_seconds{client="producer-0",quantile="0.75"} 0.25
kmirror_sarama_flush_seconds{client="producer-0",quantile="0.95"} 0.25
kmirror_sarama_flush_seconds{client="producer-0",quantile="0.99"} 0.25
kmirror_sarama_flush_seconds_sum{client="producer-0"} 0.25
kmirror_sarama_flush_seconds_count{client="producer-0"} 1
`
	names := []string{
		"kmirror_sarama_request_total", "kmirror_sarama_broker_request_total", "kmirror_sarama_outgoing_bytes_total",
		"kmirror_sarama_requests_in_flight", "kmirror_sarama_consumer_group_join_total", "kmirror_sarama_buffer_seconds",
		"kmirror_sarama_ratio", "kmirror_sarama_broker_request_latency_seconds", "kmirror_sarama_topic_batch_size",
		"kmirror_sarama_flush_seconds",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// The meter's one-minute rate is there too (its value depends on go-metrics' ticker).
	if n := testutil.CollectAndCount(c, "kmirror_sarama_request_rate1"); n != 2 {
		t.Fatalf("%d kmirror_sarama_request_rate1 series, want 2 (one per client)", n)
	}
	lint(t, c)

	c.Remove("consumer")
	if n := testutil.CollectAndCount(c, "kmirror_sarama_request_total"); n != 1 {
		t.Fatalf("%d series after removing the consumer, want 1", n)
	}
}

// TestSaramaCollisionsAreSkippedNotFatal: two go-metrics names that map to one Prometheus name
// with another type must not make the scrape fail.
func TestSaramaCollisionsAreSkippedNotFatal(t *testing.T) {
	r := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate", r).Mark(3)    // → kmirror_sarama_request_total (counter)
	gometrics.GetOrRegisterCounter("request-total", r).Inc(5)  // → the same name, same type, same labels
	gometrics.GetOrRegisterGauge("request-rate1", r).Update(1) // → kmirror_sarama_request_rate1, like the meter's rate
	gometrics.GetOrRegisterCounter("broker-x", r).Inc(1)       // → kmirror_sarama_broker_x without a broker label
	gometrics.GetOrRegisterCounter("x-for-broker-1", r).Inc(1) // → kmirror_sarama_broker_x with one
	gometrics.GetOrRegisterGauge("odd--name--", r).Update(2)   // → kmirror_sarama_odd__name
	gometrics.GetOrRegisterHistogram("empty", r, gometrics.NewUniformSample(4))
	c := NewSaramaCollector()
	c.Add("admin", r)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for range 3 { // the same outcome on every scrape
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("a name collision failed the scrape: %v", err)
		}
		counts := map[string]int{}
		for _, mf := range mfs {
			counts[mf.GetName()] = len(mf.GetMetric())
		}
		if counts["kmirror_sarama_request_total"] != 1 || counts["kmirror_sarama_request_rate1"] != 1 ||
			counts["kmirror_sarama_broker_x"] != 1 || counts["kmirror_sarama_empty"] != 1 {
			t.Fatalf("series per family %v: want one of each, the first seen", counts)
		}
	}
	lint(t, c)
}

// TestRealSaramaClientMetricsAreBridged talks to sarama's mock broker with a real client, so the
// names are the ones this sarama version registers, and lints what comes out.
func TestRealSaramaClientMetricsAreBridged(t *testing.T) {
	broker := sarama.NewMockBroker(t, 1)
	defer broker.Close()
	broker.SetHandlerByMap(map[string]sarama.MockResponse{
		"MetadataRequest": sarama.NewMockMetadataResponse(t).
			SetBroker(broker.Addr(), broker.BrokerID()).
			SetLeader("orders", 0, broker.BrokerID()),
	})
	cfg := sarama.NewConfig()
	cfg.MetricRegistry = gometrics.NewRegistry()
	cfg.Version = sarama.V1_0_0_0 // what the mock broker speaks without version negotiation
	cfg.ApiVersionsRequest = false
	cfg.Metadata.Retry.Max = 0
	client, err := sarama.NewClient([]string{broker.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.RefreshMetadata("orders"); err != nil {
		t.Fatal(err)
	}

	c := NewSaramaCollector()
	c.Add("consumer", cfg.MetricRegistry)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if !strings.HasPrefix(mf.GetName(), "kmirror_sarama_") {
			t.Errorf("%s lacks the kmirror_sarama_ prefix", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			if lp := m.GetLabel(); len(lp) == 0 || lp[0].GetName() != "broker" && lp[0].GetName() != "client" &&
				lp[0].GetName() != "api_key" && lp[0].GetName() != "topic" && lp[0].GetName() != "group" {
				t.Errorf("%s has labels %v", mf.GetName(), lp)
			}
		}
	}
	for _, name := range []string{
		"kmirror_sarama_request_total", "kmirror_sarama_broker_request_total",
		"kmirror_sarama_broker_request_latency_seconds", "kmirror_sarama_incoming_bytes_total",
		"kmirror_sarama_requests_in_flight", "kmirror_sarama_protocol_requests_total",
	} {
		if !found[name] {
			t.Errorf("%s missing from a real client's metrics; got %v", name, found)
		}
	}
	lint(t, c)
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("families from a real sarama client: %s", strings.Join(names, " "))
}

func BenchmarkSaramaCollect(b *testing.B) {
	r := gometrics.NewRegistry()
	for _, name := range []string{"request-rate", "incoming-byte-rate", "outgoing-byte-rate", "response-rate"} {
		gometrics.GetOrRegisterMeter(name, r).Mark(1)
		for _, broker := range []string{"1", "2", "3"} {
			gometrics.GetOrRegisterMeter(name+"-for-broker-"+broker, r).Mark(1)
		}
	}
	gometrics.GetOrRegisterHistogram("request-latency-in-ms", r, gometrics.NewExpDecaySample(1028, 0.015)).Update(3)
	c := NewSaramaCollector()
	c.Add("producer-0", r)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
