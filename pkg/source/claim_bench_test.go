package source

import (
	"context"
	"testing"

	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// BenchmarkClaimHandOff measures the hand-off of one partition's fetched batches of 100 records
// from Deliver to a worker that pops them and acknowledges every record (ns and allocations per
// record), with the default in-flight window and a small inbox, so the pusher takes part.
func BenchmarkClaimHandOff(b *testing.B) {
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	ff := &fakeFetcher{sinks: map[int32]fetch.Sink{}}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{inbox}, Topics: noTopics{}, InFlight: 16384, Fetcher: ff,
		Records: &record.Pool{}, NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer h.stopPushing()
	if err := h.startClaim(context.Background(), "orders", 0, 0); err != nil {
		b.Fatal(err)
	}
	sink := ff.sinks[0]
	const per = 100
	batches := make([]*fetch.Batch, 64)
	for i := range batches {
		batches[i] = batch(0, per)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	n := (b.N + per - 1) / per
	go func() {
		defer close(done)
		for got := 0; got < n; got++ {
			bt, err := inbox.Pop(ctx)
			if err != nil {
				return
			}
			for _, r := range bt.Records {
				r.Track.Ack(r.Seq)
				h.cfg.Records.Put(r)
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		fb := *batches[i%len(batches)] // Deliver keeps the batch: a copy of the header each time
		for sink.Deliver(&fb) {
			// full: wait until the pusher has handed on what the claim keeps
			for {
				c := h.claims[topicPartition{"orders", 0}]
				c.mu.Lock()
				kept := c.held != nil || len(c.rest) > 0
				c.mu.Unlock()
				if !kept {
					break
				}
			}
			break
		}
	}
	<-done
}
