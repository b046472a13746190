package source

import (
	"context"
	"fmt"
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

// TestClaimHandsBatchesOnWithoutBlockingTheFetchLoop: Deliver never blocks; it registers a
// fetched batch's records at once and pushes them into the inbox as one item while the
// partition's in-flight window (4 here) has room, pushes the part that fits when it has not, and
// answers full; the rest is pushed once acknowledgements free the window, in offset order, and
// Ready is called once. Lost removes the partition from the fetcher and drops the claim without
// committing it.
func TestClaimHandsBatchesOnWithoutBlockingTheFetchLoop(t *testing.T) {
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	ff := &fakeFetcher{sinks: map[int32]fetch.Sink{}}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{inbox}, Topics: noTopics{}, InFlight: 4, Fetcher: ff,
		NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stopPushing)
	if err := h.startClaim(context.Background(), "orders", 0, 10); err != nil {
		t.Fatal(err)
	}
	sink := ff.sinks[0]
	if sink == nil {
		t.Fatal("the claim was not added to the fetcher")
	}
	deliver := func(b *fetch.Batch) bool {
		done := make(chan bool)
		go func() { done <- sink.Deliver(b) }()
		select {
		case full := <-done:
			return full
		case <-time.After(time.Second):
			t.Fatal("Deliver blocked")
			return false
		}
	}
	if deliver(batch(10, 2)) {
		t.Fatal("2 records in a window of 4: full")
	}
	if !deliver(batch(12, 3)) {
		t.Fatal("5 records in a window of 4: not full")
	}
	popped := func() []int64 {
		b, ok := inbox.TryPop()
		if !ok {
			return nil
		}
		var offs []int64
		var size int64
		for _, r := range b.Records {
			offs = append(offs, r.Offset)
			size += r.Size
		}
		if size != b.Size {
			t.Fatalf("batch size %d, its records' %d", b.Size, size)
		}
		return offs
	}
	var items [][]int64
	for range 2 {
		items = append(items, popped())
	}
	if fmt.Sprint(items) != "[[10 11] [12 13]]" {
		t.Fatalf("inbox items %v, want [[10 11] [12 13]]: one per batch, cut at the window", items)
	}
	if got := popped(); got != nil {
		t.Fatalf("offset 14 handed on past a full window: %v", got)
	}
	track := h.claims[topicPartition{"orders", 0}].st.track
	for seq := range uint64(4) {
		track.Ack(seq)
	}
	var last []int64
	for deadline := time.Now().Add(5 * time.Second); last == nil && time.Now().Before(deadline); {
		last = popped()
		time.Sleep(time.Millisecond)
	}
	if fmt.Sprint(last) != "[14]" {
		t.Fatalf("after the window freed: %v, want [14]", last)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ff.mu.Lock()
		ready := ff.ready
		ff.mu.Unlock()
		if ready == 1 {
			break
		}
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

// TestClaimWaitsForTheInboxAndKeepsOrder: with the worker's inbox full, Deliver keeps the batch
// and answers full at once; pops let the pusher push what was kept, after the earlier batches,
// and call Ready once.
func TestClaimWaitsForTheInboxAndKeepsOrder(t *testing.T) {
	_, ff, inbox := claimWithInbox(t)
	sink := ff.sinks[0]
	for i, want := range []bool{false, false, true, true} {
		if full := sink.Deliver(batch(int64(10*i), 10)); full != want {
			t.Fatalf("delivery %d into an inbox of 2 items: full %v, want %v", i, full, want)
		}
	}
	var got []int64
	for deadline := time.Now().Add(5 * time.Second); len(got) < 40 && time.Now().Before(deadline); {
		b, ok := inbox.TryPop()
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		for _, r := range b.Records {
			got = append(got, r.Offset)
		}
	}
	for i, o := range got {
		if o != int64(i) {
			t.Fatalf("offsets handed on out of order: %v", got)
		}
	}
	if len(got) != 40 {
		t.Fatalf("%d records handed on, want 40: %v", len(got), got)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ff.mu.Lock()
		ready := ff.ready
		ff.mu.Unlock()
		if ready == 1 {
			break
		}
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.ready != 1 {
		t.Fatalf("Ready called %d times, want 1", ff.ready)
	}
}

// TestLostClaimTakesBackWhatItKept: a claim lost while it keeps a registered batch (the inbox
// full) takes it back from the tracker, so the partition's in-flight count is what the inbox
// holds, and nothing more is pushed.
func TestLostClaimTakesBackWhatItKept(t *testing.T) {
	h, ff, inbox := claimWithInbox(t)
	sink := ff.sinks[0]
	for i := range 3 {
		sink.Deliver(batch(int64(10*i), 10))
	}
	track := h.claims[topicPartition{"orders", 0}].st.track
	if track.InFlight() != 30 {
		t.Fatalf("in flight %d, want 30 (two batches in the inbox, one kept)", track.InFlight())
	}
	h.Lost(context.Background(), group.Partitions{"orders": {0}})
	if track.InFlight() != 20 {
		t.Fatalf("in flight %d after the loss, want 20", track.InFlight())
	}
	inbox.TryPop()
	time.Sleep(50 * time.Millisecond)
	if inbox.Len() != 1 {
		t.Fatalf("%d items in the inbox after a pop, want 1: the lost claim pushed what it kept", inbox.Len())
	}
}

// claimWithInbox starts a claim of orders/0 at offset 0 feeding an inbox of two items.
func claimWithInbox(t *testing.T) (*Handler, *fakeFetcher, *ring.Queue[*record.Batch]) {
	t.Helper()
	inbox := ring.NewQueue[*record.Batch](2, 1<<20)
	ff := &fakeFetcher{sinks: map[int32]fetch.Sink{}}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{inbox}, Topics: noTopics{}, InFlight: 1024, Fetcher: ff,
		NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stopPushing)
	if err := h.startClaim(context.Background(), "orders", 0, 0); err != nil {
		t.Fatal(err)
	}
	return h, ff, inbox
}
