package offsetmap

import (
	"fmt"
	"slices"
	"testing"
)

// fakeTrack is a partition tracker as the recorder sees it: the records fetched (registered) and
// those acknowledged so far.
type fakeTrack struct {
	registered []int64
	done       map[int64]bool
}

func (f *fakeTrack) SettledBefore(off int64) bool {
	for _, r := range f.registered {
		if r < off && !f.done[r] {
			return false
		}
	}
	return true
}

// landed is one copy on the target: the source record src at target offset tgt.
type landed struct{ src, tgt int64 }

// expectedResume is where a group at source offset off must resume on a target holding log (in
// target order) to skip nothing and re-read as little as possible: the lowest target offset
// among the last copies of the records at or after off.
func expectedResume(log []landed, off int64) int64 {
	last := map[int64]int64{}
	for _, l := range log {
		last[l.src] = l.tgt
	}
	best := int64(-1)
	for src, tgt := range last {
		if src >= off && (best < 0 || tgt < best) {
			best = tgt
		}
	}
	return best
}

// claimsNoRecord returns the source offsets in [from, to) that a chunk of cs says hold no record.
func claimsNoRecord(cs []*Chunk, from, to int64) []int64 {
	var out []int64
	for _, c := range cs {
		for o := max(from, c.From); o < min(to, c.End()); o++ {
			if _, ok := c.copyOf(o); !ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// TestResentBatchIsNeverMappedAsNoRecord drives the recorder with acknowledgements in the order a
// resend produces them: a later batch lands before an earlier one, which is resent and lands
// after it. Before the resent batch lands, no chunk may say its offsets hold no record; once it
// has, every position translates to a target offset from which nothing is skipped.
func TestResentBatchIsNeverMappedAsNoRecord(t *testing.T) {
	cases := []struct {
		name    string
		markers []int64 // source offsets holding no record (transaction markers)
		batches [][]int64
	}{
		{"plain records", nil, [][]int64{offs(0, 10), offs(20, 30), offs(10, 20), offs(30, 40)}},
		{"a marker before the resent batch", []int64{10}, [][]int64{offs(0, 10), offs(20, 30), offs(11, 20), offs(30, 40)}},
		{"a marker after the batch that landed first", []int64{30}, [][]int64{offs(0, 10), offs(20, 30), offs(10, 20), offs(31, 40)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &fakeTrack{done: map[int64]bool{}}
			for o := int64(0); o < 40; o++ {
				if !slices.Contains(tc.markers, o) {
					tr.registered = append(tr.registered, o)
				}
			}
			r := NewRecorder("t", 0, "id", 0)
			r.Track(tr)
			x := NewIndex()
			flush := func() {
				for _, c := range r.Pending() {
					x.Put(c)
				}
			}
			var log []landed
			tgt := int64(90)
			for i, b := range tc.batches {
				for _, src := range b {
					r.Copied(src, tgt)
					tr.done[src] = true
					log = append(log, landed{src, tgt})
					tgt++
				}
				flush()
				if i == 1 { // the later batch landed, the earlier one is not written yet
					resent := tc.batches[2]
					if bad := claimsNoRecord(x.Chunks("t", 0), resent[0], resent[len(resent)-1]+1); len(bad) > 0 {
						t.Fatalf("before the resend lands, the map says source offsets %v hold no record: %s", bad, fmtChunks(x.Chunks("t", 0)))
					}
					for _, off := range resent {
						if got := x.Translate("t", 0, off, "id"); got.Status == Exact {
							t.Fatalf("before the resend lands, position %d translates as exact (%d): %s", off, got.Target, fmtChunks(x.Chunks("t", 0)))
						}
					}
				}
			}
			for off := int64(0); off < 40; off++ {
				want := expectedResume(log, off)
				got := x.Translate("t", 0, off, "id")
				if got.Status != Exact || got.Target != want {
					t.Errorf("position %d: %s %d, want exact %d (reading from there skips nothing)\n%s",
						off, got.Status, got.Target, want, describeLog(log, x))
				}
			}
		})
	}
}

func offs(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

func describeLog(log []landed, x *Index) string {
	return fmt.Sprintf("target log %v\nchunks %s", log, fmtChunks(x.Chunks("t", 0)))
}
