package source

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/group"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// fakeFetcher records what the handler asks of the fetcher.
type fakeFetcher struct {
	mu      sync.Mutex
	sinks   map[int32]fetch.Sink
	ready   int
	removed []int32
}

func (f *fakeFetcher) Add(_ string, p int32, _ int64, s fetch.Sink) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sinks[p] = s
	return nil
}

func (f *fakeFetcher) Remove(_ string, p int32) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, p)
	return 0, true
}

func (f *fakeFetcher) Ready(string, int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready++
}

func batch(from, n int64) *fetch.Batch {
	b := &fetch.Batch{Topic: "orders", Partition: 0, Next: from + n, HighWatermark: from + n}
	for o := from; o < from+n; o++ {
		b.Records = append(b.Records, fetch.Record{Offset: o, Value: []byte{byte(o)}})
	}
	return b
}

// TestClaimTakesWholeBatchesWithoutBlockingTheFetchLoop: Deliver never blocks, answers full once
// the partition's queued records reach its in-flight bound, and the feeder hands the records to
// the inbox in offset order and calls Ready once it has taken the queue. Lost removes the
// partition from the fetcher and drops the claim without committing it.
func TestClaimTakesWholeBatchesWithoutBlockingTheFetchLoop(t *testing.T) {
	inbox := ring.NewQueue[*record.Record](64, 1<<20)
	ff := &fakeFetcher{sinks: map[int32]fetch.Sink{}}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Record]{inbox}, Topics: noTopics{}, InFlight: 4, Fetcher: ff,
		NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.startClaim(context.Background(), "orders", 0, 10); err != nil {
		t.Fatal(err)
	}
	sink := ff.sinks[0]
	if sink == nil {
		t.Fatal("the claim was not added to the fetcher")
	}
	done := make(chan bool)
	go func() { done <- sink.Deliver(batch(10, 2)) }()
	select {
	case full := <-done:
		if full {
			t.Fatal("2 queued records of a bound of 4: full")
		}
	case <-time.After(time.Second):
		t.Fatal("Deliver blocked")
	}
	if !sink.Deliver(batch(12, 3)) {
		t.Fatal("5 queued records of a bound of 4: not full")
	}
	var got []int64
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		if r, ok := inbox.TryPop(); ok {
			got = append(got, r.Offset)
			r.Track.Ack(r.Seq)
			continue
		}
		time.Sleep(time.Millisecond)
	}
	for len(got) < 5 && time.Now().Before(deadline) {
		if r, ok := inbox.TryPop(); ok {
			got = append(got, r.Offset)
			continue
		}
		time.Sleep(time.Millisecond)
	}
	for i, o := range got {
		if o != int64(10+i) {
			t.Fatalf("records handed on %v, want 10..14 in order", got)
		}
	}
	if len(got) != 5 {
		t.Fatalf("records handed on %v, want 10..14", got)
	}
	ff.mu.Lock()
	ready := ff.ready
	ff.mu.Unlock()
	if ready != 1 {
		t.Fatalf("Ready called %d times after one full answer, want 1", ready)
	}
	h.Lost(context.Background(), group.Partitions{"orders": {0}})
	if len(ff.removed) != 1 || h.Owns("orders", 0) {
		t.Fatalf("lost: removed from the fetcher %v, still owned %v", ff.removed, h.Owns("orders", 0))
	}
}
