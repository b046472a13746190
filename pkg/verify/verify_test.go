package verify

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
)

func TestComparePartitionTellsLossDuplicatesReorderAndChanges(t *testing.T) {
	src := []Digest{1, 2, 3, 4, 5}
	cases := []struct {
		name                  string
		tgt                   []Digest
		lost, dups, foreign   int
		outOfOrder, exact, ok bool
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
			p := ComparePartition("t", 0, src, tc.tgt)
			if p.Lost != tc.lost || p.Duplicates != tc.dups || p.Foreign != tc.foreign || p.OutOfOrder != tc.outOfOrder {
				t.Fatalf("lost %d dups %d foreign %d out-of-order %v; want %d %d %d %v",
					p.Lost, p.Duplicates, p.Foreign, p.OutOfOrder, tc.lost, tc.dups, tc.foreign, tc.outOfOrder)
			}
			if p.Exact() != tc.exact || p.Complete() != tc.ok {
				t.Fatalf("exact %v complete %v; want %v %v", p.Exact(), p.Complete(), tc.exact, tc.ok)
			}
			if tc.exact && p.SourceChecksum != p.TargetChecksum {
				t.Fatal("equal partitions with different checksums")
			}
		})
	}
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
