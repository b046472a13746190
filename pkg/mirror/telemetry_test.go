package mirror

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/telemetry"
)

// TestTracesJoinTheProducersTraceAndCarryOn produces records whose traceparent header belongs to
// a producer's span, mirrors them with tracing on and telemetry.tracing.propagate_to_target set,
// and checks that kmirror's spans are children of the producer's span, that each stage is
// recorded with a sane duration, and that the mirrored record carries kmirror's span context so
// the target's consumer continues the same trace. The metrics must count exactly the mirrored
// records.
func TestTracesJoinTheProducersTraceAndCarryOn(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "traced", 2, nil)

	producerTP := sdktrace.NewTracerProvider()
	pctx, producerSpan := producerTP.Tracer("producer").Start(context.Background(), "produce order")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(pctx, carrier)
	recs := numbered("traced", 2, 0, 20)
	for _, r := range recs[:10] { // half carry a trace context, half do not
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(carrier["traceparent"])})
	}
	produce(t, p.europe, recs...)
	producerSpan.End()

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	reg := prometheus.NewPedanticRegistry()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tracing := telemetry.TracingWith(tp)
	tracing.PropagateToTarget = true
	m, err := New(p.config("traced"), Options{Log: zaptest.NewLogger(t), Metrics: metrics, Tracing: tracing})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, "records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "traced") == 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range recorder.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	mirrors := byName["kmirror.mirror"]
	if len(mirrors) != 10 {
		t.Fatalf("%d kmirror.mirror spans, want 10 (one per record that carried a sampled trace context)", len(mirrors))
	}
	want := producerSpan.SpanContext()
	mirrorIDs := map[trace.SpanID]bool{}
	for _, s := range mirrors {
		if s.Parent().SpanID() != want.SpanID() || s.SpanContext().TraceID() != want.TraceID() {
			t.Fatalf("kmirror.mirror parent %v, want the producer's span %v", s.Parent(), want)
		}
		mirrorIDs[s.SpanContext().SpanID()] = true
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if attrs["messaging.system"] != "kafka" || attrs["messaging.source.name"] != "traced" ||
			attrs["messaging.destination.name"] != "traced" || attrs["messaging.kafka.message.offset"] == "" ||
			attrs["messaging.kafka.source.partition"] == "" {
			t.Fatalf("kmirror.mirror attributes = %v, want the source topic, partition and offset and the target topic", attrs)
		}
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Fatalf("kmirror.mirror kind = %v, want consumer", s.SpanKind())
		}
	}
	for _, stage := range []string{"kmirror.consume", "kmirror.queue", "kmirror.produce"} {
		if len(byName[stage]) != 10 {
			t.Fatalf("%d %s spans, want 10", len(byName[stage]), stage)
		}
		for _, s := range byName[stage] {
			if !mirrorIDs[s.Parent().SpanID()] {
				t.Fatalf("%s is not a child of a kmirror.mirror span", stage)
			}
			if d := s.EndTime().Sub(s.StartTime()); d < 0 || d > 30*time.Second {
				t.Fatalf("%s lasted %s", stage, d)
			}
		}
	}

	// The mirrored records carry kmirror's span context onward; the others carry none.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(p.us.Addrs()...), kgo.ConsumeTopics("traced"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	seen, carried := 0, 0
	for seen < 20 {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatal("reading the target timed out")
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			for _, h := range r.Headers {
				if h.Key != "traceparent" {
					continue
				}
				carried++
				sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
					propagation.MapCarrier{"traceparent": string(h.Value)}))
				if sc.TraceID() != want.TraceID() || !mirrorIDs[sc.SpanID()] {
					t.Fatalf("mirrored traceparent %s does not point at a kmirror span of the producer's trace", h.Value)
				}
			}
		})
	}
	if carried != 10 {
		t.Fatalf("%d mirrored records carry a traceparent, want 10", carried)
	}

	if got := testutil.ToFloat64(metrics.Topic("traced").Records); got != 20 {
		t.Fatalf("kmirror_records_mirrored_total = %v, want 20", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		if strings.HasPrefix(pr.Metric, "kmirror_") {
			t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
		}
	}
}

// TestTracedRecordsKeepTheirHeadersByteForByte mirrors records whose headers hold duplicate and
// mixed-case traceparent and tracestate keys, with every record sampled and traced (ratio 1) and
// propagate_to_target left at its default: every copy must carry exactly the source's headers, in
// the same order, duplicates and case included, while kmirror's spans still join the producer's
// trace.
func TestTracedRecordsKeepTheirHeadersByteForByte(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "headers", 2, nil)

	const (
		tp1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		tp2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	)
	shapes := [][]kgo.RecordHeader{
		{{Key: "traceparent", Value: []byte(tp1)}, {Key: "traceparent", Value: []byte(tp2)}},
		{{Key: "TraceParent", Value: []byte(tp1)}, {Key: "a", Value: []byte("1")}, {Key: "TRACESTATE", Value: []byte("vendor=x")}},
		{{Key: "tracestate", Value: []byte("k=v")}, {Key: "traceparent", Value: []byte(tp2)}, {Key: "tracestate", Value: []byte("k2=v2")},
			{Key: "Traceparent", Value: []byte(tp1)}, {Key: "empty", Value: []byte{}}, {Key: "null", Value: nil}},
		{{Key: "traceparent", Value: []byte(tp1)}},
		{{Key: "no-trace", Value: []byte("x")}},
		nil,
	}
	recs := numbered("headers", 2, 0, 60)
	for i, r := range recs {
		r.Headers = shapes[i%len(shapes)]
	}
	produce(t, p.europe, recs...)

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1))))
	m, err := New(p.config("headers"), Options{Log: zaptest.NewLogger(t), Tracing: telemetry.TracingWith(tp)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, "records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "headers") == 60 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mirrors := 0
	for _, s := range recorder.Ended() {
		if s.Name() == "kmirror.mirror" {
			mirrors++
		}
	}
	if mirrors != 60 {
		t.Fatalf("%d kmirror.mirror spans, want 60: every record must be traced for this test to mean anything", mirrors)
	}
	rep := compare(t, p, map[string]string{"headers": "headers"})
	if !rep.Exact() {
		t.Fatalf("copies differ from the source (headers rewritten?):\n%s", rep)
	}
	s, d, _, _, _ := rep.Totals()
	t.Logf("figures: source %d, target %d, byte-identical", s, d)
}
