package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// jaegerTrace is the part of Jaeger's query API answer (/api/traces) the test reads.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		StartTime     int64  `json:"startTime"` // µs since the epoch
		Duration      int64  `json:"duration"`  // µs
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
		Tags        []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"processes"`
}

// TestSpansReachJaeger exports a parent and a child span with NewTracerProvider over OTLP, gRPC
// and HTTP, to a real Jaeger, and reads them back through Jaeger's query API
// (/api/traces?service=kmirror): both spans, the child's CHILD_OF reference to the parent, their
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
			tr := findJaegerTrace(t, query, traceID, 30*time.Second)
			byName := map[string]int{}
			for i, s := range tr.Spans {
				byName[s.OperationName] = i
			}
			pi, okP := byName["kmirror.test.mirror"]
			ci, okC := byName["kmirror.test.produce"]
			if !okP || !okC || len(tr.Spans) != 2 {
				t.Fatalf("trace %s has spans %v, want kmirror.test.mirror and kmirror.test.produce", traceID, byName)
			}
			p, c := tr.Spans[pi], tr.Spans[ci]
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

// findJaegerTrace polls Jaeger's search by service until the trace shows up (Jaeger batches its
// writes) or the deadline passes.
func findJaegerTrace(t *testing.T, query, traceID string, within time.Duration) jaegerTrace {
	t.Helper()
	search := query + "/api/traces?" + url.Values{
		"service": {"kmirror"}, "lookback": {"1h"}, "limit": {"1000"},
	}.Encode()
	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) {
		traces, err := getJaegerTraces(search)
		if err == nil {
			for _, tr := range traces {
				if tr.TraceID == traceID && len(tr.Spans) >= 2 {
					return tr
				}
			}
			err = fmt.Errorf("not among the %d traces found yet", len(traces))
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("trace %s not in Jaeger at %s within %v: %v", traceID, search, within, lastErr)
	return jaegerTrace{}
}

func getJaegerTraces(u string) ([]jaegerTrace, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode %s: %w", u, err)
	}
	return body.Data, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
