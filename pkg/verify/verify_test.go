package verify

import "testing"

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
