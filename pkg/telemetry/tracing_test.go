package telemetry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// consumed turns produced headers into what a consumer of that record sees.
func consumed(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		h := hs[i]
		out[i] = &h
	}
	return out
}

func headerValues(hs []sarama.RecordHeader, key string) []string {
	var out []string
	for _, h := range hs {
		if strings.EqualFold(string(h.Key), key) {
			out = append(out, string(h.Value))
		}
	}
	return out
}

// TestMirrorSpanJoinsTheProducersTraceAndCarriesItOn follows one record: a producer in europe
// injects its span into the record, kmirror extracts it, starts its span as a child, and injects
// that into the mirrored record, where a consumer in us finds kmirror's span as its parent.
func TestMirrorSpanJoinsTheProducersTraceAndCarriesItOn(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := TracingWith(tp)

	// The producer in europe.
	pctx, producerSpan := tp.Tracer("producer").Start(context.Background(), "produce order")
	var source []sarama.RecordHeader
	tr.Inject(pctx, &source)
	producerSpan.End()
	if got := headerValues(source, "traceparent"); len(got) != 1 {
		t.Fatalf("producer record carries %d traceparent headers, want 1", len(got))
	}

	// kmirror.
	in := consumed(source)
	if !HasTraceparent(in) {
		t.Fatal("HasTraceparent = false for a record with a traceparent")
	}
	mctx, mirrorSpan := tr.Tracer.Start(tr.Extract(context.Background(), in), "kmirror.mirror")
	out := append([]sarama.RecordHeader(nil), source...) // the mirrored record's copy
	tr.Inject(mctx, &out)
	mirrorSpan.End()

	// The consumer in us.
	got := trace.SpanContextFromContext(tr.Extract(context.Background(), consumed(out)))
	if got.TraceID() != producerSpan.SpanContext().TraceID() {
		t.Fatalf("mirrored record's trace %s, want the producer's %s", got.TraceID(), producerSpan.SpanContext().TraceID())
	}
	if got.SpanID() != mirrorSpan.SpanContext().SpanID() {
		t.Fatalf("mirrored record's parent span %s, want kmirror's %s", got.SpanID(), mirrorSpan.SpanContext().SpanID())
	}
	if !got.IsRemote() || !got.IsSampled() {
		t.Fatalf("extracted context remote=%v sampled=%v, want both", got.IsRemote(), got.IsSampled())
	}

	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2", len(ended))
	}
	mirror := ended[1]
	if mirror.Name() != "kmirror.mirror" || mirror.Parent().SpanID() != producerSpan.SpanContext().SpanID() {
		t.Fatalf("span %q has parent %s, want kmirror.mirror under the producer's span %s",
			mirror.Name(), mirror.Parent().SpanID(), producerSpan.SpanContext().SpanID())
	}
}

func TestRecordWithoutTraceparentStartsANewRoot(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := TracingWith(tp)

	for name, headers := range map[string][]*sarama.RecordHeader{
		"no headers":      nil,
		"other headers":   {{Key: []byte("content-type"), Value: []byte("json")}},
		"bad traceparent": {{Key: []byte("traceparent"), Value: []byte("00-not-a-trace-01")}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := tr.Extract(context.Background(), headers)
			if trace.SpanContextFromContext(ctx).IsValid() {
				t.Fatal("extracted a span context from a record that has none")
			}
			_, span := tr.Tracer.Start(ctx, "kmirror.mirror")
			span.End()
			s := rec.Ended()[len(rec.Ended())-1]
			if s.Parent().IsValid() || !s.SpanContext().TraceID().IsValid() {
				t.Fatalf("span parent %v, trace %v: want a root span of a new trace", s.Parent(), s.SpanContext().TraceID())
			}
		})
	}
}

func TestInjectReplacesTraceHeadersInsteadOfAddingDuplicates(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := TracingWith(tp)
	ctx, span := tp.Tracer("t").Start(context.Background(), "kmirror.mirror")
	defer span.End()

	headers := []sarama.RecordHeader{
		{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{Key: []byte("tenant"), Value: []byte("acme")},
		{Key: []byte("Traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01")},
		{Key: []byte("tracestate"), Value: []byte("vendor=stale")},
		{Key: []byte("content-type"), Value: []byte("json")},
	}
	original := headers[0].Value
	tr.Inject(ctx, &headers)

	parents := headerValues(headers, "traceparent")
	if len(parents) != 1 {
		t.Fatalf("%d traceparent headers after Inject, want exactly 1: %q", len(parents), parents)
	}
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if parents[0] != want {
		t.Fatalf("traceparent %q, want %q", parents[0], want)
	}
	if got := headerValues(headers, "tracestate"); len(got) != 0 {
		t.Fatalf("stale tracestate %q kept next to a new traceparent", got)
	}
	var keys []string
	for _, h := range headers {
		keys = append(keys, string(h.Key))
	}
	if strings.Join(keys, ",") != "traceparent,tenant,content-type" {
		t.Fatalf("headers %v: the others must be kept, in order", keys)
	}
	if string(original) != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatal("Inject wrote into the old header's bytes, which the consumed record may share")
	}
}

func TestInjectCarriesTracestate(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := TracingWith(tp)
	in := []*sarama.RecordHeader{
		{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{Key: []byte("tracestate"), Value: []byte("vendor=abc")},
	}
	ctx, span := tr.Tracer.Start(tr.Extract(context.Background(), in), "kmirror.mirror")
	defer span.End()
	out := []sarama.RecordHeader{*in[0], *in[1]}
	tr.Inject(ctx, &out)
	if got := headerValues(out, "tracestate"); len(got) != 1 || got[0] != "vendor=abc" {
		t.Fatalf("tracestate %q, want the producer's vendor=abc carried on once", got)
	}
	if got := headerValues(out, "traceparent"); len(got) != 1 || got[0] == string(in[0].Value) {
		t.Fatalf("traceparent %q: want kmirror's span in place of the producer's", got)
	}
}

func TestInjectWithoutASpanLeavesHeadersAlone(t *testing.T) {
	tr := TracingWith(sdktrace.NewTracerProvider())
	headers := []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte("x")}}
	tr.Inject(context.Background(), &headers)
	if len(headers) != 1 || string(headers[0].Value) != "x" {
		t.Fatalf("headers changed without a span context: %v", headers)
	}
}

func TestCarriersImplementTextMapCarrier(t *testing.T) {
	var out []sarama.RecordHeader
	p := (*ProducerHeaders)(&out)
	p.Set("a", "1")
	p.Set("b", "2")
	p.Set("A", "3")
	if len(out) != 2 || p.Get("a") != "3" || p.Get("b") != "2" {
		t.Fatalf("producer headers %v", out)
	}
	if strings.Join(p.Keys(), ",") != "A,b" {
		t.Fatalf("keys %v", p.Keys())
	}
	c := ConsumerHeaders(consumed(out))
	c.Set("a", "ignored")
	if c.Get("A") != "3" || c.Get("missing") != "" || strings.Join(c.Keys(), ",") != "A,b" {
		t.Fatalf("consumer headers: Get(A)=%q keys %v", c.Get("A"), c.Keys())
	}
	if ConsumerHeaders([]*sarama.RecordHeader{nil}).Get("a") != "" || HasTraceparent([]*sarama.RecordHeader{nil}) {
		t.Fatal("a nil header must be skipped")
	}
	// What otel's propagator would do with them.
	var prop propagation.TraceContext
	if len(prop.Fields()) != 2 {
		t.Fatalf("fields %v", prop.Fields())
	}
}

func TestKeyComparisonIgnoresASCIICaseOnly(t *testing.T) {
	for _, c := range []struct {
		k, name string
		want    bool
	}{
		{"traceparent", "traceparent", true},
		{"TraceParent", "traceparent", true},
		{"traceparenT", "traceparent", true},
		{"traceparent ", "traceparent", false},
		{"tracestate", "traceparent", false},
		{"a-b", "a\rb", false}, // '-'|0x20 == '\r'|0x20 but they are not letters
		{"", "", true},
	} {
		if got := keyIs([]byte(c.k), c.name); got != c.want {
			t.Errorf("keyIs(%q, %q) = %v, want %v", c.k, c.name, got, c.want)
		}
	}
}

func TestHasTraceparentDoesNotAllocate(t *testing.T) {
	headers := []*sarama.RecordHeader{
		{Key: []byte("content-type"), Value: []byte("json")},
		{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
	}
	if n := testing.AllocsPerRun(100, func() { HasTraceparent(headers) }); n != 0 {
		t.Fatalf("HasTraceparent allocates %v times", n)
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
	if s.IsRecording() || s.SpanContext().IsValid() {
		t.Fatal("a span was recorded with tracing off")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var zero Tracing
	if zero.Enabled || zero.Shutdown(context.Background()) != nil {
		t.Fatal("the zero Tracing must be off and shut down cleanly")
	}
}

func TestTracingConfigErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		cfg  TracingConfig
		want string
	}{
		{TracingConfig{Endpoint: "127.0.0.1:4317", Protocol: "thrift", SampleRatio: 1}, "telemetry.tracing.protocol"},
		{TracingConfig{Endpoint: "127.0.0.1:4317", SampleRatio: 1.5}, "telemetry.tracing.sample_ratio"},
		{TracingConfig{Endpoint: "127.0.0.1:4317", SampleRatio: -0.1}, "telemetry.tracing.sample_ratio"},
	} {
		_, _, err := NewTracerProvider(context.Background(), c.cfg, ResourceInfo{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.want)
		}
	}
}

// otlpSink is an in-process OTLP/HTTP receiver: it keeps each export's request headers and body.
type otlpSink struct {
	mu      sync.Mutex
	exports []http.Request
	bodies  [][]byte
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.exports = append(s.exports, *r)
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (s *otlpSink) received() ([]http.Request, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Request(nil), s.exports...), bytes.Join(s.bodies, nil)
}

// TestTracerProviderExportsOverOTLPHTTP exports through a real OTLP/HTTP exporter to an
// in-process receiver: the request goes to /v1/traces with the headers of the standard
// OTEL_EXPORTER_OTLP_HEADERS variable (how an authorisation token reaches a hosted collector),
// and carries
// the resource (service name, version, instance, cluster aliases) and the spans. The sampler is
// parent-based with ratio 0: a record whose producer sampled its trace is followed, a record
// without a trace is not.
func TestTracerProviderExportsOverOTLPHTTP(t *testing.T) {
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20t0ken")

	ctx := context.Background()
	tp, shutdown, err := NewTracerProvider(ctx, TracingConfig{
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), Protocol: "http", Insecure: true, SampleRatio: 0,
	}, ResourceInfo{ServiceVersion: "v9.9.9", SourceAlias: "europe", TargetAlias: "us", InstanceID: "host-a-42"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(*sdktrace.TracerProvider); !ok {
		t.Fatalf("provider %T, want the SDK's when an endpoint is set", tp)
	}
	tracer := tp.Tracer(instrumentationName)

	sampledParent := ConsumerHeaders{{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
	pctx := propagation.TraceContext{}.Extract(ctx, sampledParent)
	_, followed := tracer.Start(pctx, "kmirror.mirror.followed")
	followed.End()
	_, unsampled := tracer.Start(ctx, "kmirror.mirror.unsampled")
	unsampled.End()
	if !followed.SpanContext().IsSampled() || unsampled.SpanContext().IsSampled() {
		t.Fatalf("sampled: followed=%v unsampled=%v; want a sampled parent followed and ratio 0 for roots",
			followed.SpanContext().IsSampled(), unsampled.SpanContext().IsSampled())
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		t.Fatalf("shutdown (flush): %v", err)
	}
	reqs, body := sink.received()
	if len(reqs) == 0 {
		t.Fatal("no OTLP export received")
	}
	if reqs[0].URL.Path != "/v1/traces" || reqs[0].Header.Get("Authorization") != "Bearer t0ken" ||
		reqs[0].Header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("export to %s with Authorization %q, Content-Type %q", reqs[0].URL.Path,
			reqs[0].Header.Get("Authorization"), reqs[0].Header.Get("Content-Type"))
	}
	// Protobuf keeps strings as they are: the resource and span names can be found in the body.
	for _, want := range []string{"service.name", "kmirror", "service.version", "v9.9.9", "service.instance.id",
		"host-a-42", "kmirror.source.alias", "europe", "kmirror.target.alias", "us", "kmirror.mirror.followed"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("export lacks %q", want)
		}
	}
	if bytes.Contains(body, []byte("kmirror.mirror.unsampled")) {
		t.Error("an unsampled root span was exported")
	}
}

func TestTracingWithEndpointIsEnabled(t *testing.T) {
	srv := httptest.NewServer(&otlpSink{})
	defer srv.Close()
	tr, err := NewTracing(context.Background(), TracingConfig{Endpoint: srv.URL + "/v1/traces", Protocol: "http", SampleRatio: 1}, ResourceInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	_, s := tr.Tracer.Start(context.Background(), "x")
	defer s.End()
	if !tr.Enabled || !s.IsRecording() {
		t.Fatalf("enabled=%v recording=%v, want both with an endpoint (a URL) and ratio 1", tr.Enabled, s.IsRecording())
	}
}

func BenchmarkExtractInject(b *testing.B) {
	tr := TracingWith(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())))
	in := []*sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
	out := []sarama.RecordHeader{*in[0]}
	b.ReportAllocs()
	for b.Loop() {
		ctx := tr.Extract(context.Background(), in)
		tr.Inject(ctx, &out)
	}
}
