package offsetmap

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// ack is one produce acknowledgement: the source record at src was written at target offset tgt.
type ack struct{ src, tgt int64 }

// acks returns the acknowledgements of the source records srcs written at consecutive target
// offsets from tgt.
func acks(tgt int64, srcs ...int64) []ack {
	out := make([]ack, len(srcs))
	for i, s := range srcs {
		out[i] = ack{s, tgt + int64(i)}
	}
	return out
}

func chunk(from, target int64, steps ...Step) *Chunk {
	return &Chunk{Topic: "t", Partition: 0, TopicID: "id", From: from, Target: target, Steps: steps}
}

func copyAll(r *Recorder, as []ack) {
	for _, a := range as {
		r.Copied(a.src, a.tgt)
	}
}

func wantChunks(t *testing.T, what string, got []*Chunk, want ...*Chunk) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, fmtChunks(got), fmtChunks(want))
	}
}

func fmtChunks(cs []*Chunk) string {
	s := "["
	for _, c := range cs {
		s += fmt.Sprintf(" {From:%d Target:%d Steps:%v}", c.From, c.Target, c.Steps)
	}
	return s + " ]"
}

func TestRecorderChunksFromAcks(t *testing.T) {
	cases := []struct {
		name string
		from int64
		acks []ack
		want []*Chunk
	}{
		{"contiguous acks collapse to one step", 10, acks(100, 10, 11, 12, 13, 14, 15),
			[]*Chunk{chunk(10, 100, Step{Skip: 0, Copy: 6})}},
		{"a transaction marker after each transaction becomes a skip step", 0, acks(7, 0, 1, 2, 4, 5, 6, 8),
			[]*Chunk{chunk(0, 7, Step{Skip: 0, Copy: 3}, Step{Skip: 1, Copy: 3}, Step{Skip: 1, Copy: 1})}},
		{"compacted gaps become skip steps of their length", 0, acks(0, 0, 3, 4, 10, 11, 12),
			[]*Chunk{chunk(0, 0, Step{Skip: 0, Copy: 1}, Step{Skip: 2, Copy: 2}, Step{Skip: 5, Copy: 3})}},
		{"offsets between the claim's start and its first record are skipped", 5, acks(50, 8, 9),
			[]*Chunk{chunk(5, 50, Step{Skip: 3, Copy: 2})}},
		{"a target discontinuity starts a chunk at the previous chunk's end", 0,
			append(acks(50, 0, 1, 2), acks(60, 3, 4)...),
			[]*Chunk{chunk(0, 50, Step{Skip: 0, Copy: 3}), chunk(3, 60, Step{Skip: 0, Copy: 2})}},
		{"a target discontinuity across a source gap covers the gap as a skip", 0,
			append(acks(50, 0, 1, 2), acks(60, 5, 6)...),
			[]*Chunk{chunk(0, 50, Step{Skip: 0, Copy: 3}), chunk(3, 60, Step{Skip: 2, Copy: 2})}},
		{"a re-copy starts a chunk at the record", 0,
			append(acks(100, 0, 1, 2, 3, 4), acks(105, 2, 3, 4, 5)...),
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 5}), chunk(2, 105, Step{Skip: 0, Copy: 4})}},
		{"a re-copy of the last record alone is a chunk of one", 0,
			append(acks(100, 0, 1, 2), acks(200, 2)...),
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 3}), chunk(2, 200, Step{Skip: 0, Copy: 1})}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder("t", 0, "id", tc.from)
			copyAll(r, tc.acks)
			got := r.Pending()
			wantChunks(t, "Pending", got, tc.want...)
			if n := r.Copies(); n != int64(len(tc.acks)) {
				t.Errorf("Copies() = %d, want %d", n, len(tc.acks))
			}
			var copies int64
			for _, c := range got {
				copies += c.Copies()
			}
			if copies != int64(len(tc.acks)) {
				t.Errorf("the chunks hold %d copies, want %d", copies, len(tc.acks))
			}
		})
	}
}

func TestRecorderMaxStepsClosesChunkAndNextContinuesFromItsEnd(t *testing.T) {
	r := NewRecorder("t", 0, "id", 0)
	// One marker, then two, in turn after each record: each record after the first adds a step
	// that does not repeat the one before.
	srcOf := make([]int64, MaxSteps+3)
	for i := 1; i < len(srcOf); i++ {
		srcOf[i] = srcOf[i-1] + 2 + int64(i-1)%2
	}
	for i, src := range srcOf {
		r.Copied(src, 1000+int64(i))
	}
	got := r.Pending()
	if len(got) != 2 {
		t.Fatalf("Pending returned %d chunks, want 2: %s", len(got), fmtChunks(got))
	}
	full, next := got[0], got[1]
	if len(full.Steps) != MaxSteps {
		t.Errorf("the first chunk has %d steps, want MaxSteps = %d", len(full.Steps), MaxSteps)
	}
	if end := srcOf[MaxSteps-1] + 1; full.From != 0 || full.Target != 1000 || full.Copies() != MaxSteps || full.End() != end {
		t.Errorf("first chunk: From %d Target %d Copies %d End %d; want 0, 1000, %d, %d",
			full.From, full.Target, full.Copies(), full.End(), MaxSteps, end)
	}
	want := chunk(full.End(), full.Target+full.Copies(), Step{Skip: 2, Copy: 1}, Step{Skip: 1, Copy: 1}, Step{Skip: 2, Copy: 1})
	wantChunks(t, "the chunk after the full one", []*Chunk{next}, want)

	x := NewIndex()
	for _, c := range got {
		x.Put(c)
	}
	for i, src := range srcOf {
		for off := src; i > 0 && off > srcOf[i-1] || i == 0 && off >= 0; off-- { // the record and the markers before it
			if tr := x.Translate("t", 0, off, "id"); tr.Status != Exact || tr.Target != 1000+int64(i) {
				t.Fatalf("Translate(%d) = %s %d, want exact %d", off, tr.Status, tr.Target, 1000+i)
			}
			if i == 0 {
				break
			}
		}
	}
}

func TestRecorderPendingReturnsEachChangedChunkOnceInTargetOrder(t *testing.T) {
	r := NewRecorder("t", 0, "id", 0)
	wantChunks(t, "Pending before any ack", r.Pending())

	copyAll(r, acks(100, 0, 1, 2))
	copyAll(r, acks(200, 3, 4))
	copyAll(r, acks(300, 5, 6, 7))
	wantChunks(t, "first Pending", r.Pending(),
		chunk(0, 100, Step{Skip: 0, Copy: 3}), chunk(3, 200, Step{Skip: 0, Copy: 2}), chunk(5, 300, Step{Skip: 0, Copy: 3}))
	wantChunks(t, "Pending with nothing changed", r.Pending())

	r.Copied(9, 303)
	wantChunks(t, "Pending after the open chunk grew", r.Pending(), chunk(5, 300, Step{Skip: 0, Copy: 3}, Step{Skip: 1, Copy: 1}))
	wantChunks(t, "Pending with nothing changed again", r.Pending())
}

func TestRecorderPendingReturnsCopiesTheRecorderDoesNotChange(t *testing.T) {
	r := NewRecorder("t", 0, "id", 0)
	copyAll(r, acks(0, 0, 1))
	first := r.Pending()
	copyAll(r, acks(2, 2, 4)) // grows the step Pending returned, then adds one
	wantChunks(t, "the first Pending after more acks", first, chunk(0, 0, Step{Skip: 0, Copy: 2}))
	first[0].Steps[0].Copy = 99
	first[0].From = 99
	wantChunks(t, "the second Pending", r.Pending(), chunk(0, 0, Step{Skip: 0, Copy: 3}, Step{Skip: 1, Copy: 1}))
}

func TestRecorderRetryHandsChunksBack(t *testing.T) {
	// Each case: acks, then Pending (taken: not written), then more acks, then Retry of what
	// was taken (times times), then the next Pending.
	cases := []struct {
		name         string
		before, more []ack
		times        int
		want         []*Chunk
	}{
		{"the open chunk comes back as it was", acks(100, 0, 1, 2), nil, 1,
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 3})}},
		{"the open chunk comes back in its latest state", acks(100, 0, 1, 2), acks(103, 3, 5), 1,
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 4}, Step{Skip: 1, Copy: 1})}},
		{"a chunk closed since comes back before the newer one", acks(100, 0, 1, 2), acks(200, 3, 4), 1,
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 3}), chunk(3, 200, Step{Skip: 0, Copy: 2})}},
		{"a chunk that grew and closed since comes back once, in its latest state", acks(100, 0, 1),
			append(acks(102, 2), acks(200, 3)...), 1,
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 3}), chunk(3, 200, Step{Skip: 0, Copy: 1})}},
		{"chunks handed back twice come back once", append(acks(100, 0, 1), acks(200, 2)...), acks(201, 3), 2,
			[]*Chunk{chunk(0, 100, Step{Skip: 0, Copy: 2}), chunk(2, 200, Step{Skip: 0, Copy: 2})}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder("t", 0, "id", 0)
			copyAll(r, tc.before)
			taken := r.Pending()
			copyAll(r, tc.more)
			for range tc.times {
				r.Retry(taken)
			}
			wantChunks(t, "Pending after Retry", r.Pending(), tc.want...)
			wantChunks(t, "the Pending after that", r.Pending())
		})
	}
}

// TestRecorderConcurrentAcksAndPendingLoseNothing acks from one goroutine while another writes
// Pending chunks to an index, as the producer and the writer do: every copy must be findable.
func TestRecorderConcurrentAcksAndPendingLoseNothing(t *testing.T) {
	const n = 6000
	r := NewRecorder("t", 0, "id", 0)
	x := NewIndex()
	var written []ack
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		tgt := int64(0)
		for src := int64(0); src < n; src++ {
			if src%10 == 9 { // a transaction marker
				continue
			}
			if src%500 == 0 {
				tgt += 5 // another writer's records between two of ours
			}
			r.Copied(src, tgt)
			written = append(written, ack{src, tgt})
			tgt++
		}
	})
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		for _, c := range r.Pending() {
			if err := x.Apply(c.Key(), c.Encode()); err != nil { // as the writer does
				t.Errorf("Apply(%s): %v", c.Key(), err)
			}
		}
	}
	wg.Wait()
	for _, c := range r.Pending() {
		x.Put(c)
	}
	for _, a := range written {
		if tr := x.Translate("t", 0, a.src, "id"); tr.Status != Exact || tr.Target != a.tgt {
			t.Fatalf("Translate(%d) = %s %d, want exact %d", a.src, tr.Status, tr.Target, a.tgt)
		}
	}
	if got := r.Copies(); got != int64(len(written)) {
		t.Fatalf("Copies() = %d, want %d", got, len(written))
	}
}

// BenchmarkRecorderCopied is the recorder's cost per produce acknowledgement, with the writer's
// Pending every 1024 acks (its cost amortised into the figure).
func BenchmarkRecorderCopied(b *testing.B) {
	for _, bc := range []struct {
		name        string
		markerEvery int64 // a source offset with no record after every markerEvery records; 0: none
	}{
		{"contiguous", 0},
		{"marker every 10 records", 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewRecorder("t", 0, "id", 0)
			var src, tgt int64
			b.ReportAllocs()
			for b.Loop() {
				r.Copied(src, tgt)
				tgt++
				src++
				if bc.markerEvery > 0 && tgt%bc.markerEvery == 0 {
					src++
				}
				if tgt%1024 == 0 {
					r.Pending()
				}
			}
		})
	}
}

// TestHeldGapsWithinATransactionAreNoRecords: exactly-once records a transaction's copies before
// it commits, while none of its records is acknowledged. A source gap between two of its records
// (a marker of the source's transactions) holds no record — every record fetched in it would be
// held between them — so the transaction stays one chunk, as it would once acknowledged; a gap
// before the transaction's first record whose earlier records are not settled is still no such
// thing.
func TestHeldGapsWithinATransactionAreNoRecords(t *testing.T) {
	tr := &fakeTrack{registered: []int64{0, 1, 3, 4, 6}, done: map[int64]bool{}}
	r := NewRecorder("t", 0, "", 0)
	r.Track(tr)
	// One transaction: source 0, 1, 3, 4 (2 a marker) copied to target 0..3.
	for i, src := range []int64{0, 1, 3, 4} {
		r.Held(src, i == 0)
		r.Copied(src, int64(i))
	}
	if cs := r.Pending(); len(cs) != 1 || cs[0].End() != 5 {
		t.Fatalf("one transaction with a marker inside: %+v, want one chunk covering [0, 5)", cs)
	}
	// Without Held the same gap is not known to hold no record (0..4 not acknowledged yet).
	r2 := NewRecorder("t", 0, "", 0)
	r2.Track(tr)
	r2.Copied(0, 0)
	r2.Copied(1, 1)
	r2.Copied(3, 2)
	if cs := r2.Pending(); len(cs) != 2 {
		t.Fatalf("copies not held, a gap before unacknowledged records: %d chunks, want 2", len(cs))
	}
	// A transaction whose first record has an earlier fetched one unsettled (0, not in it)
	// vouches for nothing.
	tr3 := &fakeTrack{registered: []int64{0, 2, 4}, done: map[int64]bool{}}
	r3 := NewRecorder("t", 0, "", 0)
	r3.Track(tr3)
	r3.Held(2, true)
	r3.Copied(2, 0)
	r3.Held(4, false)
	r3.Copied(4, 1)
	if cs := r3.Pending(); len(cs) != 2 || cs[0].From != 2 || cs[1].From != 4 {
		t.Fatalf("a transaction behind an unsettled record: %d chunks, want 2, starting at 2 and 4", len(cs))
	}
}

// BenchmarkPendingOfIdleRecorders is what each flush_interval costs with 10,000 owned partitions
// and nothing copied since the last flush: one Pending per recorder.
func BenchmarkPendingOfIdleRecorders(b *testing.B) {
	rs := make([]*Recorder, 10000)
	for i := range rs {
		rs[i] = NewRecorder("orders", int32(i), "", 0)
		rs[i].Copied(0, 0)
		rs[i].Pending()
	}
	b.ResetTimer()
	for range b.N {
		for _, r := range rs {
			if len(r.Pending()) != 0 {
				b.Fatal("an idle recorder has chunks pending")
			}
		}
	}
}

// TestPendingSeesEveryCopyAfterAnEmptyFlush: a flush that found nothing must not hide what is
// copied after it, nor what Retry hands back.
func TestPendingSeesEveryCopyAfterAnEmptyFlush(t *testing.T) {
	r := NewRecorder("orders", 0, "", 0)
	if got := r.Pending(); len(got) != 0 {
		t.Fatalf("a new recorder has %d chunks pending", len(got))
	}
	r.Copied(0, 100)
	got := r.Pending()
	if len(got) != 1 || len(r.Pending()) != 0 {
		t.Fatalf("pending %v, then more: want the one chunk once", got)
	}
	r.Copied(1, 101) // extends the chunk taken: pending again
	if again := r.Pending(); len(again) != 1 || again[0].Steps[0].Copy != 2 {
		t.Fatalf("after a further copy pending %v, want the chunk with both copies", again)
	}
	r.Retry(got)
	if back := r.Pending(); len(back) != 1 {
		t.Fatalf("after a failed write pending %v, want the open chunk back", back)
	}
}
