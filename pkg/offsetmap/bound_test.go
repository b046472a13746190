package offsetmap

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// daySim is a day of exactly-once mirroring of two partitions, one transaction a second each:
// "orders/0" with 1 to 20 records per transaction, and the heartbeat partition with one record
// per transaction. On the target every transaction ends with its commit marker, so the copies
// of consecutive transactions are one target offset apart. The map is flushed into an index
// every ten transactions, as the flusher does.
type daySim struct {
	seed  uint64
	txns  int
	index *Index
}

const daySeconds = 86400

// run records the day and returns the index; srcEnd is the orders partition's source end.
func (d *daySim) run() (srcEnd int64) {
	rng := rand.New(rand.NewPCG(d.seed, 7))
	orders := NewRecorder("orders", 0, "id", 0)
	beats := NewRecorder("kmirror.heartbeats.us", 0, "id", 0)
	var src, tgt int64
	for i := range d.txns {
		for range 1 + rng.IntN(20) {
			orders.Copied(src, tgt)
			src, tgt = src+1, tgt+1
		}
		tgt++                              // the transaction's commit marker
		beats.Copied(int64(i), 2*int64(i)) // heartbeat i, its marker at 2i+1
		if i%10 == 9 || i == d.txns-1 {
			for _, r := range []*Recorder{orders, beats} {
				for _, c := range r.Pending() {
					d.index.Put(c)
				}
			}
		}
	}
	return src
}

// oracle returns the target offset of every source record of orders/0 in the same day.
func (d *daySim) oracle() []int64 {
	rng := rand.New(rand.NewPCG(d.seed, 7))
	var out []int64
	var tgt int64
	for range d.txns {
		for range 1 + rng.IntN(20) {
			out = append(out, tgt)
			tgt++
		}
		tgt++
	}
	return out
}

// TestADayOfExactlyOnceTransactionsStaysBounded: 86,400 transactions on a partition and 86,400
// heartbeats, each in a transaction of its own, make a few dozen chunks and a few MiB, not a
// chunk per transaction; every position still translates to its record's copy.
func TestADayOfExactlyOnceTransactionsStaysBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := &daySim{seed: 1, txns: daySeconds, index: NewIndex()}
	end := d.run()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)

	orders, beats := d.index.Chunks("orders", 0), d.index.Chunks("kmirror.heartbeats.us", 0)
	var encoded int
	for _, c := range append(orders, beats...) {
		encoded += len(c.Key()) + len(c.Encode())
	}
	t.Logf("a day: orders/0 %d records in %d transactions -> %d chunks; heartbeats %d -> %d chunks; "+
		"index heap %.2f MiB, map topic %.2f MiB compacted", end, d.txns, len(orders), d.txns, len(beats),
		float64(held)/(1<<20), float64(encoded)/(1<<20))
	// Each transaction of varying size is a step; a chunk holds MaxSteps of them.
	if limit := d.txns/MaxSteps + 1; len(orders) > limit {
		t.Errorf("orders/0: %d chunks after %d transactions, want at most %d (one per MaxSteps transactions)", len(orders), d.txns, limit)
	}
	// Transactions that all look alike repeat one step.
	if len(beats) > 1 {
		t.Errorf("heartbeats: %d chunks after %d transactions, want 1", len(beats), d.txns)
	}
	if held > 8<<20 {
		t.Errorf("the index holds %d bytes after a day, want at most 8 MiB", held)
	}

	want := d.oracle()
	for src := int64(0); src < end; src += 997 {
		tr := d.index.Translate("orders", 0, src, "id")
		if tr.Status != Exact || tr.Target != want[src] {
			t.Fatalf("orders/0 at %d: %+v, want exact at %d", src, tr, want[src])
		}
	}
	for _, src := range []int64{0, 1, 12345, daySeconds - 1} {
		tr := d.index.Translate("kmirror.heartbeats.us", 0, src, "id")
		if tr.Status != Exact || tr.Target != 2*src {
			t.Fatalf("heartbeats at %d: %+v, want exact at %d", src, tr, 2*src)
		}
	}
}

// BenchmarkTranslateAfterADay measures a translation in a day's map of a partition (the group
// sync translates every group's position of every owned partition each interval).
func BenchmarkTranslateAfterADay(b *testing.B) {
	d := &daySim{seed: 1, txns: daySeconds, index: NewIndex()}
	end := d.run()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if tr := d.index.Translate("orders", 0, int64(i*7919)%end, "id"); tr.Status != Exact {
			b.Fatal(tr)
		}
	}
}
