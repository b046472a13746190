package source

import (
	"bytes"
	"context"
	"testing"

	"github.com/IBM/sarama"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
)

type noTopics struct{}

func (noTopics) EnsurePartitions(context.Context, string, int32) (topics.Topic, error) {
	return topics.Topic{}, nil
}

// TestTracedRecordKeepsItsHeadersUnlessPropagationIsAskedFor: a sampled record whose headers
// carry duplicate and mixed-case trace context keeps them byte for byte by default; only with
// PropagateToTarget are they replaced by one traceparent of kmirror's span.
func TestTracedRecordKeepsItsHeadersUnlessPropagationIsAskedFor(t *testing.T) {
	const (
		tp1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		tp2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	)
	source := []*sarama.RecordHeader{
		{Key: []byte("TraceParent"), Value: []byte(tp1)}, {Key: []byte("a"), Value: nil},
		{Key: []byte("traceparent"), Value: []byte(tp2)}, {Key: []byte("tracestate"), Value: []byte("k=v")},
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1))))
	for _, propagate := range []bool{false, true} {
		tr := telemetry.TracingWith(provider)
		tr.PropagateToTarget = propagate
		h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](2, 1<<20)}, Topics: noTopics{}, Tracing: tr,
			NewCommitter: func(func(string) string) offsets.Committer { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		m := &sarama.ConsumerMessage{Topic: "src", Headers: source}
		r := record.From(m, "dst", nil, 0)
		h.startSpan(r, m)
		if r.Span == nil {
			t.Fatal("the record was not traced: the test means nothing")
		}
		r.Span.End()
		got := r.Msg.Headers
		if !propagate {
			if len(got) != len(source) {
				t.Fatalf("default: %d headers, want the source's %d", len(got), len(source))
			}
			for i, h := range source {
				if !bytes.Equal(got[i].Key, h.Key) || !bytes.Equal(got[i].Value, h.Value) || (got[i].Value == nil) != (h.Value == nil) {
					t.Fatalf("default: header %d = %q:%q, want %q:%q", i, got[i].Key, got[i].Value, h.Key, h.Value)
				}
			}
			continue
		}
		parents := 0
		for _, h := range got {
			if bytes.EqualFold(h.Key, []byte("traceparent")) {
				parents++
				if string(h.Key) != "traceparent" || string(h.Value) == tp1 || string(h.Value) == tp2 {
					t.Fatalf("propagate: traceparent %q:%q, want kmirror's span under a lower-case key", h.Key, h.Value)
				}
			}
		}
		if parents != 1 {
			t.Fatalf("propagate: %d traceparent headers, want 1", parents)
		}
	}
}

// TestBehindIgnoresATrailingMarker: the record before a transaction's commit marker is the last
// one a read_committed reader gets, so it is not behind; two offsets or more later it is.
func TestBehindIgnoresATrailingMarker(t *testing.T) {
	for _, c := range []struct {
		offset, hwm int64
		want        bool
	}{
		{9, 10, false}, // the last record
		{9, 11, false}, // the last record, then its transaction's marker
		{9, 12, true},
		{0, 1000, true},
	} {
		if got := behind(c.offset, c.hwm); got != c.want {
			t.Errorf("offset %d, high watermark %d: behind %v, want %v", c.offset, c.hwm, got, c.want)
		}
	}
}
