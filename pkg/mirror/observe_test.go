package mirror

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kmirror/kmirror/pkg/telemetry"
)

// TestLossCounterStartsAtZeroWhenTheTopicIsAssigned: kmirror_source_records_lost_total{topic}
// must exist at 0 from the moment a topic's partition is assigned, before any loss, so that
// increase() in the KmirrorSourceRecordsLost alert sees the first loss (a counter series born at
// N shows no increase).
func TestLossCounterStartsAtZeroWhenTheTopicIsAssigned(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o := newObserver(m, nil, 1)
	o.Assigned("orders", 0)
	if n := testutil.CollectAndCount(m.SourceRecordsLost); n != 1 {
		t.Fatalf("after the assignment kmirror_source_records_lost_total has %d series, want 1 (orders at 0)", n)
	}
	if v := testutil.ToFloat64(m.SourceRecordsLost.WithLabelValues("orders")); v != 0 {
		t.Fatalf("kmirror_source_records_lost_total{topic=orders} = %v before any loss, want 0", v)
	}
	o.SourceLost("orders", 40)
	if v := testutil.ToFloat64(m.SourceRecordsLost.WithLabelValues("orders")); v != 40 {
		t.Fatalf("after 40 lost: %v, want 40", v)
	}
}
