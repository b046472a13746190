// Package jaegertest reads traces back from a Jaeger query API (GET /api/traces/{id}), for tests
// that export spans to a real Jaeger and check what arrived. It only reads; it never writes to
// Jaeger and holds no state between calls.
package jaegertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Trace is the part of Jaeger's answer the tests read.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace. Times are microseconds (StartTime since the epoch).
type Span struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	ProcessID     string      `json:"processID"`
	References    []Reference `json:"references"`
}

// Reference links a span to another (RefType CHILD_OF for a parent).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Process is the resource that exported spans: the service and its tags.
type Process struct {
	ServiceName string `json:"serviceName"`
	Tags        []Tag  `json:"tags"`
}

// Tag is one resource attribute.
type Tag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Parent returns the ID of the span s is a CHILD_OF, or "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// ByName indexes the trace's spans by operation name (the last one wins).
func (t Trace) ByName() map[string]Span {
	m := make(map[string]Span, len(t.Spans))
	for _, s := range t.Spans {
		m[s.OperationName] = s
	}
	return m
}

// Find asks the query API at query (http://127.0.0.1:16686) for trace traceID until it holds at
// least minSpans spans (Jaeger batches its writes) or within has passed, and says why it gave up.
func Find(query, traceID string, minSpans int, within time.Duration) (Trace, error) {
	u := fmt.Sprintf("%s/api/traces/%s", query, url.PathEscape(traceID))
	client := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(within)
	var last error
	for {
		tr, err := get(&client, u)
		if err == nil && len(tr.Spans) >= minSpans {
			return tr, nil
		}
		if err == nil {
			err = fmt.Errorf("%d of at least %d spans so far", len(tr.Spans), minSpans)
		}
		last = err
		if time.Now().After(deadline) {
			return Trace{}, fmt.Errorf("trace %s not complete in Jaeger at %s within %v: %w", traceID, u, within, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func get(client *http.Client, u string) (Trace, error) {
	resp, err := client.Get(u)
	if err != nil {
		return Trace{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK { // 404 until the trace is stored
		return Trace{}, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body struct {
		Data []Trace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return Trace{}, fmt.Errorf("decode %s: %w", u, err)
	}
	if len(body.Data) == 0 {
		return Trace{}, fmt.Errorf("GET %s: no trace in the answer", u)
	}
	return body.Data[0], nil
}
