package jaegertest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A stand-in for Jaeger's query API: 404 at first, then the trace with one span, then two.
func TestFindWaitsUntilTheTraceHoldsEnoughSpans(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/traces/abc" {
			http.NotFound(w, r)
			return
		}
		switch calls.Add(1) {
		case 1:
			http.NotFound(w, r)
		case 2:
			w.Write([]byte(`{"data":[{"traceID":"abc","spans":[{"spanID":"p","operationName":"parent"}]}]}`))
		default:
			w.Write([]byte(`{"data":[{"traceID":"abc","processes":{"p1":{"serviceName":"kmirror","tags":[{"key":"k","value":"v"}]}},
				"spans":[{"spanID":"p","operationName":"parent","processID":"p1"},
				{"spanID":"c","operationName":"child","duration":25,"references":[{"refType":"CHILD_OF","spanID":"p"}]}]}]}`))
		}
	}))
	defer srv.Close()

	tr, err := Find(srv.URL, "abc", 2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	spans := tr.ByName()
	if spans["child"].Parent() != "p" || spans["parent"].Parent() != "" || spans["child"].Duration != 25 {
		t.Fatalf("spans %+v", spans)
	}
	if tr.Processes["p1"].ServiceName != "kmirror" || tr.Processes["p1"].Tags[0].Value != "v" {
		t.Fatalf("processes %+v", tr.Processes)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d requests, want 3 (404, one span, two spans)", n)
	}

	if _, err := Find(srv.URL, "missing", 1, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v, want one naming the trace that never came", err)
	}
}
