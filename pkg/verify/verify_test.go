package verify

import (
	"context"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// ten is a source partition of ten distinct records at offsets 100 to 109.
var ten = []Digest{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009}

// at returns the digests of ten at the given source indices; -1 stands for a record that
// copies none.
func at(idx ...int) []Digest {
	out := []Digest{}
	for _, i := range idx {
		if i < 0 {
			out = append(out, 9999)
			continue
		}
		out = append(out, ten[i])
	}
	return out
}

// span returns the indices [a, b).
func span(a, b int) []int {
	out := []int{}
	for i := a; i < b; i++ {
		out = append(out, i)
	}
	return out
}

func cat(parts ...[]int) []int {
	out := []int{}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func offsets(first int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = first + int64(i)
	}
	return out
}

const (
	A, B, C = Digest(1), Digest(2), Digest(3)
)

func TestCheckPartitionAcceptsOnlyWholeRerunsInSourceOrder(t *testing.T) {
	cases := []struct {
		name     string
		src, tgt []Digest // nil src means ten
		from     int64    // source offset the mirror started at (sources start at offset 100)

		lost                   []string // lost ranges, as Range.String prints them
		dups, foreign, runs    int
		reordered              int
		firstReordered         int // target index of the first out-of-order record, when reordered > 0
		badReruns              int
		firstBadRerun, resumes int // target index of the first bad re-run and the source index it resumes at
		complete, exact        bool
	}{
		{name: "identical", tgt: at(span(0, 10)...), runs: 1, complete: true, exact: true},
		{name: "both empty", src: []Digest{}, tgt: nil, complete: true, exact: true},
		{name: "empty target", tgt: nil, lost: []string{"offsets 100-109 (10 records)"}},
		{name: "empty source, records on the target", src: []Digest{}, tgt: at(0, 1), foreign: 2},
		{name: "gap", tgt: at(cat(span(0, 4), span(6, 10))...), runs: 2, lost: []string{"offsets 104-105 (2 records)"}},
		{name: "tail never copied", tgt: at(span(0, 7)...), runs: 1, lost: []string{"offsets 107-109 (3 records)"}},
		{name: "head never copied", tgt: at(span(2, 10)...), runs: 1, lost: []string{"offsets 100-101 (2 records)"}},
		{name: "two gaps", tgt: at(0, 2, 3, 4, 8, 9), runs: 3, lost: []string{"offset 101", "offsets 105-107 (3 records)"}},
		{
			// 0 2 1 3...: 1's first copy comes after 2's; the run that goes on at 3 resumes past
			// where the run of 1 stopped (2), which is a re-run skipping ahead too.
			name: "reordered pair", tgt: at(cat([]int{0, 2, 1}, span(3, 10))...), runs: 4,
			reordered: 1, firstReordered: 2, badReruns: 1, firstBadRerun: 3, resumes: 3,
		},
		{
			name: "head copied last", tgt: at(cat(span(2, 10), span(0, 2))...), runs: 2,
			reordered: 2, firstReordered: 8,
		},
		{name: "re-run from a committed position", tgt: at(cat(span(0, 7), span(3, 10))...), runs: 2, dups: 4, complete: true},
		{name: "re-run from the very start", tgt: at(cat(span(0, 10), span(0, 10))...), runs: 2, dups: 10, complete: true},
		{
			name: "re-run from before the previous re-run began",
			tgt:  at(cat(span(0, 6), span(4, 8), span(1, 10))...), runs: 3, dups: 2 + 7, complete: true,
		},
		{name: "one record sent twice", tgt: at(cat(span(0, 2), span(1, 10))...), runs: 2, dups: 1, complete: true},
		{
			name: "re-run that skips ahead", tgt: at(cat(span(0, 10), span(3, 5), span(7, 10))...), runs: 3, dups: 5,
			badReruns: 1, firstBadRerun: 12, resumes: 7,
		},
		{
			name: "re-run that skips ahead past the end of the first run",
			tgt:  at(cat(span(0, 7), span(2, 4), span(8, 10))...), runs: 3, dups: 2,
			badReruns: 1, firstBadRerun: 9, resumes: 8, lost: []string{"offset 107"},
		},
		{name: "changed in transit", tgt: at(0, 1, -1, 3, 4, 5, 6, 7, 8, 9), runs: 2, foreign: 1, lost: []string{"offset 102"}},
		{name: "started later, copied from there", from: 105, tgt: at(span(5, 10)...), runs: 1, complete: true, exact: true},
		{name: "started later, older records on the target", from: 105, tgt: at(span(3, 10)...), runs: 1, foreign: 2},
		{name: "started later, gap after the start", from: 105, tgt: at(5, 6, 8, 9), runs: 2, lost: []string{"offset 107"}},

		// Identical records: the same digest at several source positions.
		{name: "repeats copied once", src: []Digest{A, A, A, B}, tgt: []Digest{A, A, A, B}, runs: 1, complete: true, exact: true},
		{name: "repeats re-run from the last", src: []Digest{A, A, A, B}, tgt: []Digest{A, A, A, A, B}, runs: 2, dups: 1, complete: true},
		{name: "repeats with one missing", src: []Digest{A, A, A, B}, tgt: []Digest{A, A, B}, runs: 2, lost: []string{"offset 102"}},
		{
			name: "repeats overtaken", src: []Digest{A, A, A, B}, tgt: []Digest{A, B, A, A}, runs: 4, dups: 1,
			reordered: 1, firstReordered: 2, lost: []string{"offset 101"},
		},
		{
			name: "repeated pattern re-run", src: []Digest{A, B, A, B, C}, tgt: []Digest{A, B, A, B, A, B, C},
			runs: 2, dups: 2, complete: true,
		},
		// Restarting at the latest possible position parses this as [0:4] [3:4] [3:4].
		{name: "all identical, re-sent", src: []Digest{A, A, A, A}, tgt: []Digest{A, A, A, A, A, A}, runs: 3, dups: 2, complete: true},
		{name: "all identical, one short", src: []Digest{A, A, A, A}, tgt: []Digest{A, A, A}, runs: 1, lost: []string{"offset 103"}},
		{name: "all identical, target empty", src: []Digest{A, A}, tgt: nil, lost: []string{"offsets 100-101 (2 records)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == nil {
				src = ten
			}
			p := CheckPartition("t", 0, Log{Digests: src, Offsets: offsets(100, len(src))},
				Log{Digests: tc.tgt, Offsets: offsets(500, len(tc.tgt))}, tc.from)
			var lost []string
			n := 0
			for _, r := range p.LostRanges {
				lost = append(lost, r.String())
				n += r.Len()
			}
			if !reflect.DeepEqual(lost, tc.lost) || p.Lost != n {
				t.Errorf("lost %d %q, want %q", p.Lost, lost, tc.lost)
			}
			if p.Duplicates != tc.dups || p.Foreign != tc.foreign || p.Runs != tc.runs {
				t.Errorf("duplicates %d foreign %d runs %d, want %d %d %d", p.Duplicates, p.Foreign, p.Runs, tc.dups, tc.foreign, tc.runs)
			}
			if p.Reordered != tc.reordered || p.OutOfOrder != (tc.reordered > 0) {
				t.Errorf("reordered %d (out of order %v), want %d", p.Reordered, p.OutOfOrder, tc.reordered)
			}
			if tc.reordered > 0 {
				if f := p.FirstReordered; f.Target != tc.firstReordered || f.TargetOffset != 500+int64(tc.firstReordered) {
					t.Errorf("first out-of-order record at target %d (offset %d), want %d", f.Target, f.TargetOffset, tc.firstReordered)
				}
			}
			if p.BadReruns != tc.badReruns {
				t.Errorf("bad re-runs %d, want %d", p.BadReruns, tc.badReruns)
			}
			if tc.badReruns > 0 {
				if f := p.FirstBadRerun; f.Target != tc.firstBadRerun || f.Source != tc.resumes || f.SourceOffset != 100+int64(tc.resumes) {
					t.Errorf("first bad re-run at target %d resuming at source %d (offset %d), want %d resuming at %d",
						f.Target, f.Source, f.SourceOffset, tc.firstBadRerun, tc.resumes)
				}
			}
			if p.Complete() != tc.complete || p.Exact() != tc.exact {
				t.Errorf("complete %v exact %v, want %v %v (%v)", p.Complete(), p.Exact(), tc.complete, tc.exact, p.Problems())
			}
			if p.Exact() && p.SourceChecksum != p.TargetChecksum {
				t.Error("exact partition with different checksums")
			}
		})
	}
}

func TestComparePartitionKeepsItsDigestOnlyForm(t *testing.T) {
	cases := []struct {
		name                string
		tgt                 []Digest
		lost, dups, foreign int
		outOfOrder          bool
		exact, complete     bool
	}{
		{"identical", []Digest{1, 2, 3, 4, 5}, 0, 0, 0, false, true, true},
		{"one lost", []Digest{1, 2, 4, 5}, 1, 0, 0, false, false, false},
		{"redelivered suffix", []Digest{1, 2, 3, 2, 3, 4, 5}, 0, 2, 0, false, false, true},
		{"reordered", []Digest{1, 3, 2, 4, 5}, 0, 0, 0, true, false, false},
		{"changed in transit", []Digest{1, 2, 9, 4, 5}, 1, 0, 1, false, false, false},
		{"empty target", nil, 5, 0, 0, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ComparePartition("t", 0, []Digest{1, 2, 3, 4, 5}, tc.tgt)
			if p.Lost != tc.lost || p.Duplicates != tc.dups || p.Foreign != tc.foreign || p.OutOfOrder != tc.outOfOrder {
				t.Fatalf("lost %d dups %d foreign %d out-of-order %v; want %d %d %d %v",
					p.Lost, p.Duplicates, p.Foreign, p.OutOfOrder, tc.lost, tc.dups, tc.foreign, tc.outOfOrder)
			}
			if p.Exact() != tc.exact || p.Complete() != tc.complete {
				t.Fatalf("exact %v complete %v; want %v %v", p.Exact(), p.Complete(), tc.exact, tc.complete)
			}
		})
	}
}

func TestReportStringNamesOffsets(t *testing.T) {
	src := Log{Digests: ten, Offsets: offsets(100, 10)}
	gap := at(cat(span(0, 4), span(6, 10))...)
	skip := at(cat(span(0, 10), span(3, 5), span(7, 10))...)
	rep := Report{Partitions: []Partition{
		CheckPartition("t", 0, src, Log{Digests: at(span(0, 10)...)}, 0),
		CheckPartition("t", 1, src, Log{Digests: gap}, 0),
		CheckPartition("t", 2, src, Log{Digests: at(cat([]int{0, 2, 1}, span(3, 10))...)}, 0),
		CheckPartition("t", 3, src, Log{Digests: skip}, 0),
	}}
	s := rep.String()
	for _, want := range []string{
		"source 40 records, target 43 records: lost 2, duplicates 5, changed 0, out of order 1, bad re-runs 2",
		"t/1: source 10 target 8: lost offsets 104-105 (2 records)",
		"t/2: source 10 target 10: 1 out of order (first: target offset 2 holds source offset 101 after a later record)",
		"t/3: source 10 target 15: 1 re-runs skip ahead (first: target offset 12 resumes at source offset 107, the previous run stopped before 105)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "t/0") {
		t.Errorf("report lists the exact partition t/0:\n%s", s)
	}
	if rep.Complete() || rep.Exact() {
		t.Error("report with losses is complete")
	}
	if p, ok := rep.Partition("t", 1); !ok || p.Lost != 2 {
		t.Errorf("Partition(t, 1) = %+v, %v", p, ok)
	}
}

// validByDefinition decides by brute force whether tgt is a concatenation of runs
// src[a1:b1] ++ src[a2:b2] ++ ... with a1 = start, a(k+1) <= b(k) and the runs reaching the
// source's end, trying every restart position.
func validByDefinition(src, tgt []Digest, start int) bool {
	type state struct{ next, frontier int }
	states := map[state]bool{{start, start}: true}
	for j, d := range tgt {
		nextStates := map[state]bool{}
		for s := range states {
			lo := start
			if j == 0 {
				lo = s.next // the first run starts at start itself
			}
			for a := lo; a <= s.next && a < len(src); a++ {
				if src[a] == d {
					nextStates[state{a + 1, max(s.frontier, a+1)}] = true
				}
			}
		}
		states = nextStates
	}
	for s := range states {
		if s.frontier == len(src) {
			return true
		}
	}
	return false
}

// TestCheckPartitionVerdictMatchesTheDefinition compares Complete with a brute-force search on
// random partitions over a two- and three-letter alphabet (many identical records), half of
// them built as valid re-runs.
func TestCheckPartitionVerdictMatchesTheDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	valid := 0
	for i := 0; i < 20000; i++ {
		letters := 2 + rng.IntN(2)
		src := make([]Digest, rng.IntN(7))
		for k := range src {
			src[k] = Digest(1 + rng.IntN(letters))
		}
		start := 0
		if len(src) > 0 && rng.IntN(4) == 0 {
			start = rng.IntN(len(src))
		}
		var tgt []Digest
		if i%2 == 0 && len(src) > 0 {
			// Runs from start, each restarting at or before the previous end, to the end.
			a, b := start, start
			for b < len(src) {
				a = start + rng.IntN(b-start+1)
				b = a + 1 + rng.IntN(len(src)-a)
				tgt = append(tgt, src[a:b]...)
			}
		} else {
			tgt = make([]Digest, rng.IntN(9))
			for k := range tgt {
				tgt[k] = Digest(1 + rng.IntN(letters))
			}
		}
		want := validByDefinition(src, tgt, start)
		p := CheckPartition("t", 0, Log{Digests: src}, Log{Digests: tgt}, int64(start))
		if p.Complete() != want {
			t.Fatalf("src %v tgt %v from %d: complete %v, want %v (%v)", src, tgt, start, p.Complete(), want, p.Problems())
		}
		if want {
			valid++
			if p.Duplicates != len(tgt)-(len(src)-start) {
				t.Fatalf("src %v tgt %v from %d: %d duplicates, want %d", src, tgt, start, p.Duplicates, len(tgt)-(len(src)-start))
			}
		}
	}
	t.Logf("%d of 20000 random partitions valid", valid)
}

// TestCompareSinceIgnoresTheTargetsOlderRecords keeps old records at the head of a target
// partition (a source topic's previous incarnation) and expects CompareSince to compare only
// what follows them, and Compare to call them foreign.
func TestCompareSinceIgnoresTheTargetsOlderRecords(t *testing.T) {
	src, err := embedded.Start("src", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := embedded.Start("dst", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := func(p int32, s string) *kgo.Record {
		return &kgo.Record{Topic: "t", Partition: p, Value: []byte(s), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	produce := func(c *embedded.Cluster, rs ...*kgo.Record) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.AllowAutoTopicCreation())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(src, rec(0, "new-0"), rec(0, "new-1"), rec(1, "new-2"))
	// Target: partition 0 holds two old records, then the new ones; partition 1 only the new one.
	produce(dst, rec(0, "old-0"), rec(0, "old-1"), rec(0, "new-0"), rec(0, "new-1"), rec(1, "new-2"))

	rep, err := CompareSince(ctx, src.Addrs(), dst.Addrs(), map[string]string{"t": "t"}, map[string]map[int32]int64{"t": {0: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Exact() {
		t.Fatalf("CompareSince past the old records: %s", rep)
	}
	rep, err = Compare(ctx, src.Addrs(), dst.Addrs(), map[string]string{"t": "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, foreign := rep.Totals(); foreign != 2 {
		t.Fatalf("Compare over the whole target: %d foreign records, want the 2 old ones: %s", foreign, rep)
	}
}
