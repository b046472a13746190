package offsets

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pagesHeld counts the pages a partition holds: in its directory and kept for reuse.
func (p *Partition) pagesHeld() int {
	n := len(p.spare)
	d := p.dir.Load()
	for i := range d.pages {
		if d.pages[i].Load() != nil {
			n++
		}
	}
	return n
}

func TestPagesGrowOnlyWithRecordsInFlight(t *testing.T) {
	p := NewPartition("t", 0, 0, 16384)
	if got := p.pagesHeld(); got != 0 {
		t.Fatalf("a new partition holds %d pages, want 0", got)
	}
	off := int64(0)
	// One record in flight at a time, over several trips round the whole window.
	for ; off < 3*16384+77; off++ {
		s, err := p.Register(off)
		if err != nil {
			t.Fatal(err)
		}
		p.Ack(s)
	}
	if got := p.pagesHeld(); got > 2 {
		t.Fatalf("one record in flight at a time left %d pages held, want at most 2", got)
	}
	// A backlog of 5,000 records needs 157 pages of 32.
	var seqs []uint64
	for range 5000 {
		s, err := p.Register(off)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
		off++
	}
	if got := p.pagesHeld(); got < 5000/pageSlots {
		t.Fatalf("5000 records in flight in %d pages, want at least %d", got, 5000/pageSlots)
	}
	for _, s := range seqs {
		p.Ack(s)
	}
	// Once the backlog is gone the pages go too, but for a few kept for reuse.
	for range 2 * 16384 {
		s, err := p.Register(off)
		if err != nil {
			t.Fatal(err)
		}
		p.Ack(s)
		off++
	}
	if got := p.pagesHeld(); got > maxSpare+2 {
		t.Fatalf("after the backlog drained %d pages are held, want at most %d", got, maxSpare+2)
	}
	if got := p.Committed(); got != off {
		t.Fatalf("committed = %d, want %d", got, off)
	}
}

// TestWindowWrapsAcrossPagesWithOutOfOrderAcks fills a window of four pages to capacity again and
// again, acknowledging in random order, and compares the committed offset with a model after
// every acknowledgement.
func TestWindowWrapsAcrossPagesWithOutOfOrderAcks(t *testing.T) {
	const capacity = 4 * pageSlots
	p := NewPartition("t", 0, 1000, capacity)
	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[int64]bool{}
	next, low := int64(1000), int64(1000) // next offset to register; lowest not acknowledged
	type inflight struct {
		seq uint64
		off int64
	}
	var open []inflight
	for round := 0; round < 40; round++ {
		for {
			s, err := p.Register(next)
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, inflight{s, next})
			next++
		}
		if got := p.InFlight(); got != capacity {
			t.Fatalf("round %d: %d in flight at ErrFull, want %d", round, got, capacity)
		}
		// Acknowledge a random share, in random order.
		rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
		k := 1 + rng.IntN(len(open))
		for _, r := range open[:k] {
			p.Ack(r.seq)
			acked[r.off] = true
			for acked[low] {
				delete(acked, low)
				low++
			}
			if got := p.Committed(); got != low {
				t.Fatalf("round %d: committed = %d, want %d", round, got, low)
			}
		}
		open = append(open[:0], open[k:]...)
	}
	for _, r := range open {
		p.Ack(r.seq)
	}
	if got := p.Committed(); got != next {
		t.Fatalf("committed = %d, want %d", got, next)
	}
	if p.InFlight() != 0 {
		t.Fatalf("in flight = %d, want 0", p.InFlight())
	}
}

// TestConcurrentAckersWhileTheWindowGrowsAndShrinks registers in bursts that fill the window and
// let it drain, so pages are taken and given back all the time, while four goroutines acknowledge
// out of order and another reads the oldest timestamp as the metrics do. Under -race this is the
// check that the directory's pages are handed over without a data race; the checker sees that
// committed never passes an unacknowledged offset.
func TestConcurrentAckersWhileTheWindowGrowsAndShrinks(t *testing.T) {
	const n = 100_000
	p := NewPartition("t", 0, 0, 2048)
	acked := make([]atomic.Bool, n)
	work := make(chan uint64, 4096)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []uint64
			flush := func() {
				rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				for _, s := range batch {
					acked[s].Store(true)
					p.Ack(s)
				}
				batch = batch[:0]
			}
			// Hold up to 32 acks to reorder them, but never block for more while holding some:
			// the window only frees up when they are acked.
			for {
				var s uint64
				var ok bool
				select {
				case s, ok = <-work:
				default:
					flush()
					s, ok = <-work
				}
				if !ok {
					flush()
					return
				}
				if batch = append(batch, s); len(batch) == 32 {
					flush()
				}
			}
		}()
	}
	stop := make(chan struct{})
	var overshoot atomic.Bool
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		verified := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := p.Committed()
			for o := verified; o < c; o++ {
				if !acked[o].Load() {
					overshoot.Store(true)
					return
				}
			}
			verified = max(verified, c)
			runtime.Gosched()
		}
	}()
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.OldestTimestamp()
			p.InFlight()
			runtime.Gosched()
		}
	}()
	ctx := context.Background()
	now := time.Now()
	for o := int64(0); o < n; {
		burst := 1 + rand.IntN(3000) // up to past the window: RegisterWait waits for room
		for i := 0; i < burst && o < n; i++ {
			s, err := p.RegisterWait(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			p.Stamp(s, now)
			work <- s
			o++
		}
		for p.InFlight() > rand.IntN(64) { // let it drain, sometimes to empty
			time.Sleep(10 * time.Microsecond)
		}
	}
	close(work)
	wg.Wait()
	close(stop)
	readers.Wait()
	if overshoot.Load() {
		t.Fatal("committed passed an unacknowledged offset")
	}
	if got := p.Committed(); got != n {
		t.Fatalf("committed = %d, want %d", got, n)
	}
	// Pages go back as Register passes them: one record at a time through the window again.
	for o := int64(n); o < n+2*2048; o++ {
		s, _ := p.Register(o)
		p.Ack(s)
	}
	if got := p.pagesHeld(); got > maxSpare+2 {
		t.Fatalf("%d pages held with one record at a time in flight, want at most %d", got, maxSpare+2)
	}
}

// TestAnIdlePartitionHoldsLittleMemory: at 10,000 partitions with the default window (16,384
// records), a partition that had a record in flight held a directory sized for the whole window
// (2 KiB) and a page of 128 slots (3 KiB): 53 MiB of the 10,000-partition benchmark's live heap.
func TestAnIdlePartitionHoldsLittleMemory(t *testing.T) {
	const parts = 10000
	ps := make([]*Partition, parts)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range ps {
		p := NewPartition("orders", int32(i), 0, 16384)
		for off := range int64(3) {
			s, err := p.Register(off)
			if err != nil {
				t.Fatal(err)
			}
			p.Ack(s)
		}
		ps[i] = p
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / parts
	runtime.KeepAlive(ps)
	if per > 1536 {
		t.Fatalf("%d bytes held per idle partition, want at most 1536", per)
	}
	t.Logf("%d bytes per idle partition", per)
}
