package offsetmap

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestTranslateResumesWithNothingSkippedMatchingTheOracle runs each scenario on the mirror model
// (mirror_model_test.go) and, after every run, translates every position from 0 to the source's
// end: each answer must be the oracle's (exact: the last copy of the first record at or after
// the position), and a consumer resuming there must read every record from the position on and
// re-read nothing below it but a crashed run's duplicates.
func TestTranslateResumesWithNothingSkippedMatchingTheOracle(t *testing.T) {
	const aborted = "rrrrrrrrrr" + "-----------" + "rrrrrrrrrr" + "-------" + "rrrrrrr" + "-" // 10..20, 31..37, 45
	cases := []struct {
		name       string
		source     string
		runs       []runSpec
		flushEvery int
		// Once every run is done: positions Unknown and NotYet (before Resolve), chunks held.
		wantUnknown, wantNotYet, wantChunks int
		wantRereads                         int // over every state: records below the position read again
	}{
		{name: "plain contiguous", source: strings.Repeat("r", 50), runs: []runSpec{{0, -1}},
			wantNotYet: 1, wantChunks: 1},
		{name: "transaction marker every 5 offsets", source: strings.Repeat("rrrr-", 10), runs: []runSpec{{0, -1}},
			flushEvery: 1, wantNotYet: 2, wantChunks: 1},
		{name: "aborted ranges and their markers", source: aborted, runs: []runSpec{{0, -1}},
			flushEvery: 3, wantNotYet: 2, wantChunks: 1},
		{name: "compacted gaps", source: "--r-rr---r-rrrr--r-r---rr-rrr-r----r-rr--", runs: []runSpec{{0, -1}},
			wantNotYet: 3, wantChunks: 1},
		{name: "restart inside an aborted range", source: aborted, runs: []runSpec{{0, 12}, {15, -1}},
			flushEvery: 2, wantNotYet: 2, wantChunks: 2},
		{name: "restart at a transaction marker maps it", source: strings.Repeat("rrrr-", 6), runs: []runSpec{{0, 12}, {14, -1}},
			wantNotYet: 2, wantChunks: 2},
		// The restarted recorder starts after the marker at 14: nothing says 14 holds no record.
		{name: "restart after a transaction marker leaves it a hole", source: strings.Repeat("rrrr-", 6), runs: []runSpec{{0, 12}, {15, -1}},
			wantUnknown: 1, wantNotYet: 2, wantChunks: 2},
		// Run 1 re-copies 10..13 and crashes: until run 2 copies them again, groups at 14..19
		// resume at run 0's copies and read run 1's 10..13 again (4 × 6), and groups at 11..13
		// resume at run 0's copy of 14 (only there until run 2) and read 10..12 again (1+2+3).
		// Run 3 re-copies 25..27 and crashes: groups at 28 and 29 read them again (3 × 2), and
		// groups at 26 and 27 resume at run 2's copy of 28 and read 25 and 26 again (1+2).
		{name: "restarts re-copy from earlier commits, some crashing", source: strings.Repeat("r", 30),
			runs: []runSpec{{0, 20}, {10, 4}, {12, -1}, {25, 3}, {20, -1}}, flushEvery: 3,
			wantNotYet: 1, wantChunks: 5, wantRereads: 39},
		{name: "a run that crashes before its first copy", source: strings.Repeat("rr-", 10),
			runs: []runSpec{{0, 5}, {3, 0}, {2, -1}}, wantNotYet: 2, wantChunks: 2},
		{name: "the map begins after the source's start", source: strings.Repeat("r", 20), runs: []runSpec{{5, -1}},
			wantUnknown: 5, wantNotYet: 1, wantChunks: 1},
		// 1300 records after one marker or two, in turn (steps that do not repeat the one before):
		// run 1's 1100 records need two chunks of MaxSteps.
		{name: "chunks split at MaxSteps", source: strings.Repeat("r-r--", 650), runs: []runSpec{{0, 700}, {400, -1}},
			flushEvery: 64, wantNotYet: 3, wantChunks: 3},
		// The same source with one marker after each record: every step repeats the one before,
		// so each run is one chunk of three steps.
		{name: "repeating steps fold into one", source: strings.Repeat("r-", 1300), runs: []runSpec{{0, 700}, {400, -1}},
			flushEvery: 64, wantNotYet: 2, wantChunks: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirrorSim(t, sourceOf(tc.source), 1000)
			m.flushEvery = tc.flushEvery
			for _, r := range tc.runs {
				m.run(r)
				m.check()
			}
			m.checkFinal()
			if got := m.stats.final[Unknown]; got != tc.wantUnknown {
				t.Errorf("%d positions unknown, want %d%s", got, tc.wantUnknown, m.describe())
			}
			if got := m.stats.final[NotYet]; got != tc.wantNotYet {
				t.Errorf("%d positions not yet mirrored, want %d", got, tc.wantNotYet)
			}
			if got := m.idx.Len(); got != tc.wantChunks {
				t.Errorf("the index holds %d chunks, want %d%s", got, tc.wantChunks, m.describe())
			}
			if m.stats.rereads != tc.wantRereads {
				t.Errorf("%d records below the position re-read, want %d", m.stats.rereads, tc.wantRereads)
			}
		})
	}
}

// TestTranslateRandomScenariosMatchTheOracle is the same check over random sources (records,
// transaction markers, aborted and compacted ranges), random restarts (a committed position
// anywhere at or below what the previous run copied, often re-copying, some runs crashing) and
// chunks written as they grow, through Put or through the map topic's encoding, next to chunks
// of an earlier incarnation of the topic that Translate must ignore.
func TestTranslateRandomScenariosMatchTheOracle(t *testing.T) {
	iterations := 5000
	if testing.Short() {
		iterations = 200
	}
	rng := rand.New(rand.NewPCG(20240917, 7))
	var exact, unknown, rereads int
	for it := range iterations {
		src := randomSource(rng)
		base := 100 + rng.Int64N(1000)
		m := newMirrorSim(t, src, base)
		m.flushEvery = rng.IntN(6)
		m.viaTopic = rng.IntN(2) == 0
		// An earlier incarnation's copies, before this one's on the target: were they used,
		// positions the map does not know would translate.
		m.idx.Put(&Chunk{Topic: "t", Partition: 0, TopicID: "old", From: 0, Target: rng.Int64N(base - 50), Steps: []Step{{Skip: 0, Copy: 50}}})
		start := int64(0)
		if rng.IntN(4) == 0 {
			start = rng.Int64N(src.end()/2 + 1) // the map began later
		}
		runs := 1 + rng.IntN(6)
		for i := range runs {
			limit := -1
			if i < runs-1 && rng.IntN(3) > 0 {
				limit = rng.IntN(len(src)/2 + 2)
			}
			m.run(runSpec{start, limit})
			m.check()
			if t.Failed() {
				t.Fatalf("iteration %d", it)
			}
			reach := m.runs[len(m.runs)-1].reach
			switch rng.IntN(4) {
			case 0: // committed everything copied
				start = reach
			case 1: // a commit lost: anywhere below
				start = rng.Int64N(reach + 1)
			default: // a commit a little behind
				start = max(0, reach-rng.Int64N(8))
			}
		}
		m.checkFinal()
		exact += m.stats.final[Exact]
		unknown += m.stats.final[Unknown]
		rereads += m.stats.rereads
	}
	// The generator must reach the cases the oracle distinguishes.
	if exact == 0 || unknown == 0 || rereads == 0 {
		t.Fatalf("over %d scenarios: %d exact, %d unknown positions, %d re-reads; want each above 0", iterations, exact, unknown, rereads)
	}
	t.Logf("%d scenarios: %d exact and %d unknown final positions, %d duplicate re-reads seen", iterations, exact, unknown, rereads)
}

// randomSource returns up to 80 offsets: records, with transaction markers, aborted ranges and
// compacted gaps.
func randomSource(rng *rand.Rand) simSource {
	n := rng.IntN(81)
	s := make(simSource, n)
	density := []float64{1, 0.9, 0.6, 0.3}[rng.IntN(4)]
	for i := range s {
		s[i] = rng.Float64() < density
	}
	if rng.IntN(2) == 0 { // transactions: a marker after every few records
		every := 2 + rng.IntN(6)
		for i := every - 1; i < n; i += every {
			s[i] = false
		}
	}
	if n > 0 && rng.IntN(3) == 0 { // an aborted transaction
		from := rng.IntN(n)
		for i := from; i < min(n, from+1+rng.IntN(12)); i++ {
			s[i] = false
		}
	}
	return s
}

// fakeProber answers NoRecords with empty (or err) and remembers what it was asked.
type fakeProber struct {
	empty    bool
	err      error
	calls    int
	from, to int64
}

func (p *fakeProber) NoRecords(_ context.Context, topic string, partition int32, from, to int64) (bool, error) {
	p.calls++
	p.from, p.to = from, to
	return p.empty, p.err
}

var errProbe = errors.New("source unreachable")

func TestResolveSettlesAPositionPastTheMirroredRecords(t *testing.T) {
	x := NewIndex()
	x.Put(chunk(0, 100, Step{Skip: 0, Copy: 5}, Step{Skip: 2, Copy: 3})) // source [0, 10): 8 copies at 100..107
	x.Put(chunk(3, 200, Step{Skip: 0, Copy: 2}, Step{Skip: 2, Copy: 3})) // 3 to 9 copied again, last: the log ends at 205
	cases := []struct {
		name       string
		prober     *fakeProber
		wantStatus Status
		wantTarget int64
		wantBehind int64
		wantErr    error
	}{
		{"no record in between: after the copies written last", &fakeProber{empty: true}, Exact, 205, 0, nil},
		{"records in between: not yet", &fakeProber{empty: false}, NotYet, -1, 3, nil},
		{"the prober fails: not yet", &fakeProber{err: errProbe}, NotYet, -1, 3, errProbe},
		{"no prober: not yet", nil, NotYet, -1, 3, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := x.Translate("t", 0, 13, "id")
			if tr.Status != NotYet || tr.Behind != 3 || tr.Mirrored != 10 || tr.Target != -1 || tr.Reason == "" {
				t.Fatalf("Translate(13) = %+v; want not yet, 3 behind mirrored 10", tr)
			}
			var p Prober
			if tc.prober != nil {
				p = tc.prober
			}
			got, err := Resolve(context.Background(), tr, p)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Resolve error %v, want %v", err, tc.wantErr)
			}
			if got.Status != tc.wantStatus || got.Target != tc.wantTarget || got.Behind != tc.wantBehind {
				t.Fatalf("Resolve = %+v; want %s target %d behind %d", got, tc.wantStatus, tc.wantTarget, tc.wantBehind)
			}
			if (got.Status == Exact) != (got.Reason == "") {
				t.Fatalf("Resolve = %s with reason %q", got.Status, got.Reason)
			}
			if tc.prober != nil && (tc.prober.calls != 1 || tc.prober.from != 10 || tc.prober.to != 13) {
				t.Fatalf("the prober was asked %d times, last about [%d, %d); want once about [10, 13)",
					tc.prober.calls, tc.prober.from, tc.prober.to)
			}
		})
	}
}

// TestTailWaitsForARunThatCopiesAgain: after a restart the run writing now re-copies records an
// earlier run had copied; until it has caught up, the target's end is not where a caught-up group
// resumes (it would read the re-copies of records it had read), so the answer is not yet.
func TestTailWaitsForARunThatCopiesAgain(t *testing.T) {
	x := NewIndex()
	x.Put(chunk(0, 100, Step{Skip: 0, Copy: 10})) // source [0, 10) at 100..109
	x.Put(chunk(6, 110, Step{Skip: 0, Copy: 2}))  // a restart at 6 has copied 6 and 7 again
	tr := x.Translate("t", 0, 10, "id")
	if tr.Status != NotYet || tr.Behind != 2 || tr.Mirrored != 10 {
		t.Fatalf("Translate(10) while the restart re-copies = %+v; want not yet, 2 behind", tr)
	}
	if res, _ := Resolve(context.Background(), tr, &fakeProber{empty: true}); res.Status != NotYet {
		t.Fatalf("Resolve = %+v; want not yet until the restart has caught up", res)
	}
	x.Put(chunk(6, 110, Step{Skip: 0, Copy: 4})) // it has: 6 to 9 at 110..113
	tr = x.Translate("t", 0, 10, "id")
	if res, _ := Resolve(context.Background(), tr, &fakeProber{empty: true}); res.Status != Exact || res.Target != 114 {
		t.Fatalf("Resolve = %+v; want exact at 114, after the re-copies", res)
	}
}

func TestResolveLeavesOtherTranslationsAlone(t *testing.T) {
	x := NewIndex()
	x.Put(chunk(5, 100, Step{Skip: 0, Copy: 5}))
	cases := []struct {
		name      string
		partition int32
		off       int64
		want      Status
	}{
		{"exact", 0, 7, Exact},
		{"unknown before the map", 0, 2, Unknown},
		{"not yet with nothing mapped", 1, 7, NotYet},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := x.Translate("t", tc.partition, tc.off, "id")
			if tr.Status != tc.want {
				t.Fatalf("Translate = %+v, want %s", tr, tc.want)
			}
			p := &fakeProber{empty: true}
			got, err := Resolve(context.Background(), tr, p)
			if err != nil || !reflect.DeepEqual(got, tr) || p.calls != 0 {
				t.Fatalf("Resolve = %+v, %v after %d probes; want the translation unchanged, unprobed", got, err, p.calls)
			}
		})
	}
}

func TestTranslateOutsideTheMap(t *testing.T) {
	// Source [10, 15) at 100..104 and [20, 25) at 105..109: a hole at 15..19.
	chunks := []*Chunk{chunk(10, 100, Step{Skip: 0, Copy: 5}), chunk(20, 105, Step{Skip: 0, Copy: 5})}
	cases := []struct {
		name         string
		partition    int32
		off          int64
		wantStatus   Status
		wantTarget   int64
		wantMirrored int64
		wantBehind   int64
	}{
		{"before the first chunk's From", 0, 0, Unknown, -1, 25, 0},
		{"just before the first chunk's From", 0, 9, Unknown, -1, 25, 0},
		{"the first chunk's From", 0, 10, Exact, 100, 25, 0},
		{"the last record before the hole", 0, 14, Exact, 104, 25, 0},
		{"the hole's start", 0, 15, Unknown, -1, 25, 0},
		{"the hole's end", 0, 19, Unknown, -1, 25, 0},
		{"after the hole", 0, 20, Exact, 105, 25, 0},
		{"the last record", 0, 24, Exact, 109, 25, 0},
		{"at the end of the map", 0, 25, NotYet, -1, 25, 0},
		{"past the end of the map", 0, 40, NotYet, -1, 25, 15},
		{"a partition with nothing mapped", 1, 10, NotYet, -1, -1, -1},
	}
	x := NewIndex()
	for _, c := range chunks {
		x.Put(c)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := x.Translate("t", tc.partition, tc.off, "id")
			if tr.Status != tc.wantStatus || tr.Target != tc.wantTarget || tr.Mirrored != tc.wantMirrored || tr.Behind != tc.wantBehind {
				t.Fatalf("Translate(%d) = %+v; want %s target %d mirrored %d behind %d",
					tc.off, tr, tc.wantStatus, tc.wantTarget, tc.wantMirrored, tc.wantBehind)
			}
			if (tr.Status == Exact) != (tr.Reason == "") {
				t.Fatalf("Translate(%d) = %s with reason %q", tc.off, tr.Status, tr.Reason)
			}
		})
	}
}

func TestTranslateIgnoresChunksOfAnotherTopicID(t *testing.T) {
	x := NewIndex()
	x.Put(&Chunk{Topic: "t", Partition: 0, TopicID: "old", From: 0, Target: 0, Steps: []Step{{Skip: 0, Copy: 50}}})
	x.Put(&Chunk{Topic: "t", Partition: 0, TopicID: "new", From: 0, Target: 50, Steps: []Step{{Skip: 0, Copy: 10}}})
	x.Put(&Chunk{Topic: "t", Partition: 0, TopicID: "", From: 10, Target: 60, Steps: []Step{{Skip: 0, Copy: 5}}}) // ID not known
	x.Put(&Chunk{Topic: "t", Partition: 1, TopicID: "new", From: 0, Target: 7, Steps: []Step{{Skip: 0, Copy: 30}}})
	x.Put(&Chunk{Topic: "u", Partition: 0, TopicID: "new", From: 0, Target: 9, Steps: []Step{{Skip: 0, Copy: 30}}})
	cases := []struct {
		name       string
		topicID    string
		off        int64
		wantStatus Status
		wantTarget int64
		wantBehind int64
	}{
		{"the current incarnation's copy, not the older one", "new", 5, Exact, 55, 0},
		{"a chunk without an ID is used", "new", 12, Exact, 62, 0},
		{"past the current incarnation, the older one's copies ignored", "new", 20, NotYet, -1, 5},
		{"the older incarnation asked for", "old", 20, Exact, 20, 0},
		{"the older incarnation asked for, where only it maps", "old", 5, Exact, 5, 0},
		// Records 15 to 49 have copies only in the older incarnation's chunk, before the ID-less
		// one: the group resumes there and reads 10 to 14 again after them.
		{"a chunk without an ID counts for the older incarnation too", "old", 12, Exact, 15, 0},
		{"a chunk without an ID counts for the older incarnation too, past its copies", "old", 15, Exact, 15, 0},
		{"no ID given: every chunk, the lowest of the last copies from the position on", "", 5, Exact, 15, 0},
		{"no ID given: the older incarnation's copy where it is the only one", "", 20, Exact, 20, 0},
		{"an ID no chunk has: only chunks without one", "other", 12, Exact, 62, 0},
		{"an ID no chunk has, before the ID-less chunk", "other", 5, Unknown, -1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := x.Translate("t", 0, tc.off, tc.topicID)
			if tr.Status != tc.wantStatus || tr.Target != tc.wantTarget || tr.Behind != tc.wantBehind {
				t.Fatalf("Translate(%d, %q) = %+v; want %s target %d behind %d", tc.off, tc.topicID, tr, tc.wantStatus, tc.wantTarget, tc.wantBehind)
			}
		})
	}
}

func TestPutReplacesTheChunkWithTheSameTarget(t *testing.T) {
	x := NewIndex()
	x.Put(chunk(20, 300, Step{Skip: 0, Copy: 2}))
	x.Put(chunk(0, 100, Step{Skip: 0, Copy: 3}))
	if tr := x.Translate("t", 0, 5, "id"); tr.Status != Unknown {
		t.Fatalf("before the longer version: Translate(5) = %+v, want unknown (a hole)", tr)
	}
	longer := chunk(0, 100, Step{Skip: 0, Copy: 3}, Step{Skip: 1, Copy: 4}) // 0..2 at 100..102, 4..7 at 103..106
	x.Put(longer)
	if n := x.Len(); n != 2 {
		t.Fatalf("Len() = %d after replacing a chunk, want 2", n)
	}
	wantChunks(t, "Chunks", x.Chunks("t", 0), longer, chunk(20, 300, Step{Skip: 0, Copy: 2}))
	for off, want := range map[int64]int64{2: 102, 3: 103, 5: 104, 7: 106} {
		if tr := x.Translate("t", 0, off, "id"); tr.Status != Exact || tr.Target != want {
			t.Errorf("Translate(%d) = %+v, want exact %d", off, tr, want)
		}
	}
}

func TestDeleteAndTombstoneRemoveTheChunk(t *testing.T) {
	a, b := chunk(0, 100, Step{Skip: 0, Copy: 10}), chunk(5, 110, Step{Skip: 0, Copy: 10}) // b re-copies 5..14
	cases := []struct {
		name   string
		remove func(x *Index) error
	}{
		{"Delete", func(x *Index) error { x.Delete("t", 0, 110); return nil }},
		{"Apply of a tombstone", func(x *Index) error { return x.Apply(b.Key(), nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex()
			for _, c := range []*Chunk{a, b} {
				if err := x.Apply(c.Key(), c.Encode()); err != nil {
					t.Fatalf("Apply(%s): %v", c.Key(), err)
				}
			}
			if tr := x.Translate("t", 0, 7, "id"); tr.Status != Exact || tr.Target != 112 {
				t.Fatalf("before: Translate(7) = %+v, want exact 112 (the re-copy)", tr)
			}
			if err := tc.remove(x); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if n := x.Len(); n != 1 {
				t.Fatalf("Len() = %d after removing one of two chunks, want 1", n)
			}
			if tr := x.Translate("t", 0, 7, "id"); tr.Status != Exact || tr.Target != 107 {
				t.Fatalf("after: Translate(7) = %+v, want exact 107", tr)
			}
			x.Delete("t", 0, 110) // again: nothing left to remove
			x.Delete("t", 1, 100) // another partition
			if n := x.Len(); n != 1 {
				t.Fatalf("Len() = %d after deleting absent chunks, want 1", n)
			}
		})
	}
}

func TestApplyRejectsMalformedRecordsAndKeepsTheIndex(t *testing.T) {
	c := chunk(0, 100, Step{Skip: 0, Copy: 10})
	value := c.Encode()
	cases := []struct {
		name       string
		key, value []byte
	}{
		{"a value of an unknown version", c.Key(), append([]byte{9}, value[1:]...)},
		{"a value with trailing bytes", c.Key(), append(value[:len(value):len(value)], 0)},
		{"a value whose target differs from its key's", []byte("t/0/101"), value},
		{"a tombstone with a malformed key", []byte("t/0"), nil},
		// Another spelling of the chunk's key: on the compacted map topic it would not delete
		// "t/0/100", so the chunk would come back when the index is read again.
		{"a tombstone under another spelling of the key", []byte("t/0/0100"), nil},
		{"a tombstone under a signed spelling of the key", []byte("t/+0/100"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex()
			x.Put(c)
			if err := x.Apply(tc.key, tc.value); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Apply(%q) = %v, want ErrMalformed", tc.key, err)
			}
			wantChunks(t, "Chunks after the malformed record", x.Chunks("t", 0), c)
		})
	}
}

func TestExpiredChunksAreThoseBelowTheLogStartButNeverTheLastWritten(t *testing.T) {
	x := NewIndex()
	a := &Chunk{Topic: "t", Partition: 0, From: 0, Target: 0, Steps: []Step{{Copy: 100}}}    // [0, 100)
	b := &Chunk{Topic: "t", Partition: 0, From: 90, Target: 100, Steps: []Step{{Copy: 60}}}  // [90, 150)
	c := &Chunk{Topic: "t", Partition: 0, From: 150, Target: 160, Steps: []Step{{Copy: 10}}} // [150, 160), written last
	other := &Chunk{Topic: "u", Partition: 0, From: 0, Target: 0, Steps: []Step{{Copy: 10}}} // another topic
	for _, ch := range []*Chunk{a, b, c, other} {
		x.Put(ch)
	}
	keys := func(cs []*Chunk) (out []int64) {
		for _, ch := range cs {
			out = append(out, ch.Target)
		}
		return out
	}
	for _, tc := range []struct {
		logStart int64
		want     []int64
	}{{0, nil}, {99, nil}, {100, []int64{0}}, {149, []int64{0}}, {150, []int64{0, 100}}, {1000, []int64{0, 100}}} {
		if got := keys(x.Expired("t", 0, tc.logStart)); !slices.Equal(got, tc.want) {
			t.Errorf("log start %d: expired %v, want %v", tc.logStart, got, tc.want)
		}
	}
	for _, ch := range x.Expired("t", 0, 150) {
		x.Delete(ch.Topic, ch.Partition, ch.Target)
	}
	if tr := x.Translate("t", 0, 155, ""); tr.Status != Exact || tr.Target != 165 {
		t.Fatalf("after pruning, a position the source still holds: %+v", tr)
	}
	if len(x.Chunks("u", 0)) != 1 {
		t.Fatal("another topic's chunks were touched")
	}
}

// TestExpiredChunksIncludeThoseLaterChunksCover: on a compacted source whose log start never
// moves, a chunk every offset of which later chunks of the same incarnation cover (a restart
// copied it all again) is expired; one partly covered, or covered only by another incarnation's
// chunks, is kept; and translations are the same without the expired ones.
func TestExpiredChunksIncludeThoseLaterChunksCover(t *testing.T) {
	x := NewIndex()
	a := &Chunk{Topic: "t", Partition: 0, TopicID: "id", From: 0, Target: 0, Steps: []Step{{Copy: 50}}}     // [0, 50)
	b := &Chunk{Topic: "t", Partition: 0, TopicID: "id", From: 40, Target: 50, Steps: []Step{{Copy: 20}}}   // [40, 60), crashed
	c := &Chunk{Topic: "t", Partition: 0, TopicID: "id", From: 30, Target: 70, Steps: []Step{{Copy: 40}}}   // [30, 70), covers b
	d := &Chunk{Topic: "t", Partition: 0, TopicID: "old", From: 0, Target: 110, Steps: []Step{{Copy: 100}}} // another incarnation
	e := &Chunk{Topic: "t", Partition: 0, TopicID: "id", From: 0, Target: 210, Steps: []Step{{Copy: 10}}}   // [0, 10), written last
	for _, ch := range []*Chunk{a, b, c, d, e} {
		x.Put(ch)
	}
	var before []Translation
	for off := range int64(80) {
		before = append(before, x.Translate("t", 0, off, "id"))
	}
	var got []int64
	for _, ch := range x.Expired("t", 0, 0) {
		got = append(got, ch.Target)
		x.Delete(ch.Topic, ch.Partition, ch.Target)
	}
	if want := []int64{50}; !slices.Equal(got, want) {
		t.Fatalf("expired %v, want %v (b, which c covers; a is covered from 10 to 50 only)", got, want)
	}
	for off := range int64(80) {
		if tr := x.Translate("t", 0, off, "id"); tr != before[off] {
			t.Fatalf("position %d: %+v after the prune, %+v before", off, tr, before[off])
		}
	}
}
