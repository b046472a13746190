package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gometrics "github.com/rcrowley/go-metrics"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

func TestSaramaMetricsAreBridgedWithLabels(t *testing.T) {
	r := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate-for-broker-3", r).Mark(7)
	gometrics.GetOrRegisterHistogram("batch-size-for-topic-orders", r, gometrics.NewUniformSample(10)).Update(42)
	gometrics.GetOrRegisterCounter("requests-in-flight", r).Inc(2)
	gometrics.GetOrRegisterHistogram("request-latency-in-ms-for-broker-3", r, gometrics.NewUniformSample(10)).Update(250)
	c := NewSaramaCollector()
	c.Add("producer-0", r)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	gometrics.GetOrRegisterMeter("request-rate", r).Mark(9) // sarama's aggregate beside the per-broker one
	c.Add("consumer", r2(t))
	want := `
# HELP kmirror_sarama_broker_request_rate_total sarama's broker-request-rate (go-metrics)
# TYPE kmirror_sarama_broker_request_rate_total counter
kmirror_sarama_broker_request_rate_total{broker="3",client="producer-0"} 7
# HELP kmirror_sarama_request_rate_total sarama's request-rate (go-metrics)
# TYPE kmirror_sarama_request_rate_total counter
kmirror_sarama_request_rate_total{client="consumer"} 1
kmirror_sarama_request_rate_total{client="producer-0"} 9
# HELP kmirror_sarama_requests_in_flight sarama's requests-in-flight (go-metrics)
# TYPE kmirror_sarama_requests_in_flight gauge
kmirror_sarama_requests_in_flight{client="producer-0"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"kmirror_sarama_broker_request_rate_total", "kmirror_sarama_request_rate_total", "kmirror_sarama_requests_in_flight"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "kmirror_sarama_broker_request_latency_seconds"); n != 1 {
		t.Fatal("millisecond metrics must be exported in seconds")
	}
	n, err := testutil.GatherAndCount(reg, "kmirror_sarama_topic_batch_size")
	if err != nil || n != 1 {
		t.Fatalf("batch size summary: %d series, %v", n, err)
	}
}

func r2(t *testing.T) gometrics.Registry {
	t.Helper()
	r := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate", r).Mark(1)
	return r
}

func TestKmirrorMetricsPassTheLinter(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Topic("orders").Records.Inc()
	m.SetLag("orders", 3, 10)
	m.ProduceErrors.WithLabelValues("fatal").Inc()
	m.ReplicationLatency.Observe(0.01)
	if err := m.RegisterWorkerGauges(2, func(int) float64 { return 1 }, func(int) float64 { return 2 }, func(int) float64 { return 3 }); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "kmirror_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	if got := testutil.ToFloat64(m.ConsumerLag.WithLabelValues("orders", "3")); got != 10 {
		t.Fatalf("lag = %v", got)
	}
	m.ForgetPartition("orders", 3)
	if n := testutil.CollectAndCount(m.ConsumerLag); n != 0 {
		t.Fatalf("a revoked partition's lag series is still exported (%d series)", n)
	}
}

func TestTraceContextRoundTripsThroughRecordHeaders(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	tr := TracingWith(tp)
	ctx, span := tp.Tracer("test").Start(context.Background(), "producer")
	defer span.End()

	var out []sarama.RecordHeader
	out = append(out, sarama.RecordHeader{Key: []byte("traceparent"), Value: []byte("00-stale-stale-01")})
	out = append(out, sarama.RecordHeader{Key: []byte("other"), Value: []byte("x")})
	tr.Inject(ctx, &out)
	n := 0
	for _, h := range out {
		if string(h.Key) == "traceparent" {
			n++
		}
	}
	if n != 1 || len(out) != 2 {
		t.Fatalf("traceparent headers = %d, headers = %d: injection must replace, not append", n, len(out))
	}

	in := make([]*sarama.RecordHeader, len(out))
	for i := range out {
		in[i] = &out[i]
	}
	if !HasTraceparent(in) {
		t.Fatal("HasTraceparent = false")
	}
	got := trace.SpanContextFromContext(tr.Extract(context.Background(), in))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("extracted %v, want %v", got, span.SpanContext())
	}
	if trace.SpanContextFromContext(tr.Extract(context.Background(), nil)).IsValid() {
		t.Fatal("a record without headers must start no trace context")
	}
}

func TestTracingOffIsANoop(t *testing.T) {
	tr, err := NewTracing(context.Background(), TracingConfig{}, ResourceInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled {
		t.Fatal("tracing with no endpoint must be off")
	}
	_, s := tr.Tracer.Start(context.Background(), "x")
	if s.IsRecording() {
		t.Fatal("a span recorded with tracing off")
	}
}

func TestServerHealthReadinessMetricsAndPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	readyErr := errors.New("not in a consumer-group session")
	ready := func() error { return readyErr }
	for _, pprofOn := range []bool{false, true} {
		srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0", Pprof: pprofOn}, reg, func() error { return ready() }, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + srv.Addr() + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get("/healthz"); code != 200 {
			t.Fatalf("/healthz = %d", code)
		}
		readyErr = errors.New("not in a consumer-group session")
		if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "consumer-group session") {
			t.Fatalf("/readyz = %d %q, want 503 with the reason", code, body)
		}
		readyErr = nil
		if code, _ := get("/readyz"); code != 200 {
			t.Fatalf("/readyz = %d once ready", code)
		}
		if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "kmirror_build_info") {
			t.Fatalf("/metrics = %d, build info missing", code)
		}
		code, _ := get("/debug/pprof/")
		if pprofOn && code != 200 || !pprofOn && code != 404 {
			t.Fatalf("pprof %v: /debug/pprof/ = %d", pprofOn, code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
