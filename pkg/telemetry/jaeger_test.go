package telemetry

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/jaegertest"
	"go.opentelemetry.io/otel/trace"
)

// TestSpansReachJaeger exports a parent and a child span with NewTracerProvider over OTLP, gRPC
// and HTTP, to a real Jaeger, and reads them back through Jaeger's query API
// (/api/traces/{id}): both spans, the child's CHILD_OF reference to the parent, their
// durations, and the resource (service.name, instance, cluster aliases).
//
// It runs when KMIRROR_JAEGER_URL is set to the query API (http://127.0.0.1:16686); OTLP goes to
// KMIRROR_JAEGER_OTLP (gRPC, default 127.0.0.1:4317) and KMIRROR_JAEGER_OTLP_HTTP (default
// 127.0.0.1:4318). scripts/jaeger/run.sh start runs such a Jaeger; run.sh env prints the values.
func TestSpansReachJaeger(t *testing.T) {
	query := os.Getenv("KMIRROR_JAEGER_URL")
	if query == "" {
		t.Skip("KMIRROR_JAEGER_URL is not set: start Jaeger with scripts/jaeger/run.sh start and set " +
			"KMIRROR_JAEGER_URL=http://127.0.0.1:16686 to run this test against it")
	}
	endpoints := map[string]string{
		"grpc": envOr("KMIRROR_JAEGER_OTLP", "127.0.0.1:4317"),
		"http": envOr("KMIRROR_JAEGER_OTLP_HTTP", "127.0.0.1:4318"),
	}
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			ctx := context.Background()
			instance := fmt.Sprintf("jaeger-test-%s-%d", protocol, time.Now().UnixNano())
			tp, shutdown, err := NewTracerProvider(ctx, TracingConfig{
				Endpoint: endpoints[protocol], Protocol: protocol, Insecure: true, SampleRatio: 1,
			}, ResourceInfo{ServiceVersion: "test", SourceAlias: "europe", TargetAlias: "us", InstanceID: instance})
			if err != nil {
				t.Fatal(err)
			}
			tracer := tp.Tracer(instrumentationName)
			t0 := time.Now().Add(-time.Second)
			pctx, parent := tracer.Start(ctx, "kmirror.test.mirror", trace.WithTimestamp(t0))
			_, child := tracer.Start(pctx, "kmirror.test.produce", trace.WithTimestamp(t0.Add(10*time.Millisecond)))
			child.End(trace.WithTimestamp(t0.Add(35 * time.Millisecond)))
			parent.End(trace.WithTimestamp(t0.Add(50 * time.Millisecond)))
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatalf("flush spans to %s: %v", endpoints[protocol], err)
			}

			traceID := parent.SpanContext().TraceID().String()
			tr, err := jaegertest.Find(query, traceID, 2, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			byName := tr.ByName()
			p, okP := byName["kmirror.test.mirror"]
			c, okC := byName["kmirror.test.produce"]
			if !okP || !okC || len(tr.Spans) != 2 {
				t.Fatalf("trace %s has spans %v, want kmirror.test.mirror and kmirror.test.produce", traceID, byName)
			}
			if p.SpanID != parent.SpanContext().SpanID().String() || c.SpanID != child.SpanContext().SpanID().String() {
				t.Fatalf("span IDs %s/%s, want %s/%s", p.SpanID, c.SpanID, parent.SpanContext().SpanID(), child.SpanContext().SpanID())
			}
			if len(p.References) != 0 {
				t.Errorf("the root span has references %+v", p.References)
			}
			if len(c.References) != 1 || c.References[0].RefType != "CHILD_OF" || c.References[0].SpanID != p.SpanID {
				t.Fatalf("child references %+v, want CHILD_OF %s", c.References, p.SpanID)
			}
			if p.Duration != 50_000 || c.Duration != 25_000 || c.StartTime-p.StartTime != 10_000 {
				t.Fatalf("durations %dµs/%dµs, child starts %dµs in; want 50000, 25000, 10000", p.Duration, c.Duration, c.StartTime-p.StartTime)
			}
			proc := tr.Processes[p.ProcessID]
			tags := map[string]any{}
			for _, tag := range proc.Tags {
				tags[tag.Key] = tag.Value
			}
			if proc.ServiceName != "kmirror" || tags["service.instance.id"] != instance ||
				tags["kmirror.source.alias"] != "europe" || tags["kmirror.target.alias"] != "us" || tags["service.version"] != "test" {
				t.Fatalf("process %q with tags %v, want service kmirror with the instance and aliases", proc.ServiceName, tags)
			}
			t.Logf("jaeger has trace %s over OTLP %s: %s %dµs ← %s %dµs", traceID, protocol,
				p.OperationName, p.Duration, c.OperationName, c.Duration)
		})
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
