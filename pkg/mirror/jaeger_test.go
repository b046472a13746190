package mirror

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/jaegertest"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

// TestTraceInRealJaeger exports kmirror's spans over OTLP to a real Jaeger (scripts/jaeger/run.sh
// starts one) and reads the trace back through Jaeger's query API: the producer's span, kmirror's
// mirror span under it, and the consume, queue and produce stages under that, each with a duration.
// It runs when KMIRROR_JAEGER_URL (the query API, e.g. http://127.0.0.1:16686) and
// KMIRROR_JAEGER_OTLP (OTLP gRPC, e.g. 127.0.0.1:4317) are set.
func TestTraceInRealJaeger(t *testing.T) {
	query, otlp := os.Getenv("KMIRROR_JAEGER_URL"), os.Getenv("KMIRROR_JAEGER_OTLP")
	if query == "" || otlp == "" {
		t.Skip("set KMIRROR_JAEGER_URL and KMIRROR_JAEGER_OTLP to test against a real Jaeger (scripts/jaeger/run.sh start)")
	}
	p := newPair(t)
	createTopic(t, p.europe, "jaeger", 1, nil)

	// The "europe producer": its own service, exported to the same Jaeger.
	ctx := context.Background()
	producerTracing, err := telemetry.NewTracing(ctx, telemetry.TracingConfig{Endpoint: otlp, Protocol: "grpc", Insecure: true, SampleRatio: 1},
		telemetry.ResourceInfo{ServiceVersion: "test", SourceAlias: "europe-producer"})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pspan := producerTracing.Tracer.Start(ctx, "produce order")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(pctx, carrier)
	traceID := pspan.SpanContext().TraceID().String()
	produce(t, p.europe, &kgo.Record{Topic: "jaeger", Key: []byte("order-1"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(carrier["traceparent"])}}})
	pspan.End()
	_ = producerTracing.Shutdown(ctx)

	tracing, err := telemetry.NewTracing(ctx, telemetry.TracingConfig{Endpoint: otlp, Protocol: "grpc", Insecure: true, SampleRatio: 0},
		telemetry.ResourceInfo{ServiceVersion: "test", SourceAlias: "europe", TargetAlias: "us", InstanceID: "jaeger-test"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(p.config("jaeger"), Options{Log: zaptest.NewLogger(t), Tracing: tracing})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	waitFor(t, "the record mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "jaeger") == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := tracing.Shutdown(ctx); err != nil {
		t.Fatalf("flush spans to Jaeger: %v", err)
	}

	tr, err := jaegertest.Find(query, traceID, 5, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	byName := tr.ByName()
	for _, s := range tr.Spans {
		t.Logf("jaeger span %-16s %6dµs parent %v", s.OperationName, s.Duration, s.References)
	}
	mirror, ok := byName["kmirror.mirror"]
	if !ok || mirror.Parent() != byName["produce order"].SpanID {
		t.Fatalf("kmirror.mirror missing or not a child of the producer's span: %+v", tr.Spans)
	}
	for _, stage := range []string{"kmirror.consume", "kmirror.queue", "kmirror.produce"} {
		s, ok := byName[stage]
		if !ok || s.Parent() != mirror.SpanID {
			t.Fatalf("%s missing or not a child of kmirror.mirror", stage)
		}
		if s.Duration < 0 || s.Duration > mirror.Duration {
			t.Fatalf("%s lasted %dµs, outside its parent's %dµs", stage, s.Duration, mirror.Duration)
		}
	}
}
