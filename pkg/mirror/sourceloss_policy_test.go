package mirror

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmirror/kmirror/pkg/config"
)

// TestRetentionOvertakingWithContinueResumesAtTheLogStart is the case of
// TestRetentionOvertakingAStoppedMirrorStopsItByDefault under source_loss_policy continue: the
// gap is counted and logged once, and every record still on the source is mirrored, in order.
func TestRetentionOvertakingWithContinueResumesAtTheLogStart(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "ret", 2, nil)
	produce(t, p.europe, numbered("ret", 2, 0, 1000)...)
	cfg := p.config("ret")
	cfg.Consumer.SourceLossPolicy = config.LossContinue
	first := start(t, cfg)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "ret") == 1000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	produce(t, p.europe, numbered("ret", 2, 1000, 1000)...)
	deleteRecords(t, p.europe, "ret", map[int32]int64{0: 800})

	reg := prometheus.NewRegistry()
	second, logs := startObserved(t, cfg, reg)
	// 500 more on partition 1, 200 (800..999) on partition 0.
	waitFor(t, "the records after the gap mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "ret") == 1700 })
	time.Sleep(500 * time.Millisecond)
	if err := second.stop(t); err != nil {
		t.Fatalf("mirror: %v", err)
	}
	if got := counter(t, reg, "kmirror_source_records_lost_total"); got != 300 {
		t.Errorf("kmirror_source_records_lost_total = %v, want 300", got)
	}
	if n := logs.FilterMessageSnippet("deleted before they were mirrored").Len(); n != 1 {
		t.Errorf("the loss was logged %d times, want once", n)
	}
	rep := compare(t, p, map[string]string{"ret": "ret"})
	// The target still holds ret/0's offsets 0..499, which the source no longer has.
	for _, part := range rep.Partitions {
		if part.Lost != 0 || part.OutOfOrder || part.Duplicates != 0 {
			t.Fatalf("records still on the source not mirrored once, in order: %s", rep)
		}
	}
	if c := committed(t, p.europe, "kmirror", "ret"); c[0] != 1000 || c[1] != 1000 {
		t.Fatalf("committed %v, want both partitions at 1000", c)
	}
}
