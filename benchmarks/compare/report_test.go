package main

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestExactlyOnceCostRow(t *testing.T) {
	row := ratioRow("eos / alo ≥ 0.8", 170_000, 200_000, eosCostFloor, "records/s")
	if want := "| eos / alo ≥ 0.8 | 0.85× (170000 vs 200000 records/s) | met |\n"; row != want {
		t.Fatalf("row = %q, want %q", row, want)
	}
	if row := ratioRow("eos / alo ≥ 0.8", 150_000, 200_000, eosCostFloor, ""); !strings.Contains(row, "0.75×") || !strings.Contains(row, "**missed**") {
		t.Fatalf("row = %q, want 0.75× missed", row)
	}
	if row := ratioRow("eos / alo ≥ 0.8", 160_000, 200_000, eosCostFloor, ""); !strings.HasSuffix(row, "| met |\n") {
		t.Fatalf("exactly 0.8 should meet the target: %q", row)
	}
	if row := ratioRow("kmirror / mm2", 300, 100, 0, ""); row != "| kmirror / mm2 | 3.00× |  |\n" {
		t.Fatalf("a row without a target = %q", row)
	}
	if row := ratioRow("eos / alo", 0, 200_000, eosCostFloor, ""); row != "" {
		t.Fatalf("a contender that did not run gave %q", row)
	}
}

func TestBareMirrorRows(t *testing.T) {
	rows := bareMirrorRows(190_000, 200_000, 210_000, 200_000)
	want := "| kmirror / bare mirror (franz-go) ≥ 0.9 on loopback | 0.95× (190000 vs 200000 records/s) | met |\n" +
		"| kmirror / bare mirror from the first record on the target (no target) | 1.05× (210000 vs 200000 records/s) |  |\n"
	if rows != want {
		t.Fatalf("rows = %q, want %q", rows, want)
	}
	if rows := bareMirrorRows(170_000, 200_000, 180_000, 200_000); !strings.Contains(rows, "0.85× (170000 vs 200000 records/s) | **missed** |") {
		t.Fatalf("rows = %q, want 0.85× missed", rows)
	}
	if rows := bareMirrorRows(180_000, 200_000, 0, 0); !strings.HasSuffix(rows, "| met |\n") {
		t.Fatalf("exactly 0.9 should meet the target, and no steady rate gives no second row: %q", rows)
	}
	if rows := bareMirrorRows(190_000, 0, 210_000, 0); rows != "" {
		t.Fatalf("without a bare mirror run: %q", rows)
	}
}

func TestSelectContenders(t *testing.T) {
	all, err := selectContenders(contenderNames(), "")
	if err != nil || len(all) != 6 {
		t.Fatalf("the default = %v, %v; want all six", all, err)
	}
	if all[1].name != "bare" || all[1].program != "baremirror" || all[1].exactlyOnce {
		t.Fatalf("second contender = %+v, want the bare mirror right after kmirror", all[1])
	}
	if all[2].name != "baresarama" || all[2].program != "baresarama" || all[2].exactlyOnce {
		t.Fatalf("third contender = %+v, want the bare sarama mirror after the bare franz-go one", all[2])
	}
	cs, err := selectContenders("mirrormaker2-eos, kmirror", "")
	if err != nil || len(cs) != 2 || cs[0].name != "kmirror" || cs[1].name != "mirrormaker2-eos" || !cs[1].exactlyOnce || cs[1].program != "mirrormaker2" {
		t.Fatalf("selected %+v, %v; want kmirror then mirrormaker2-eos, in the contenders' order", cs, err)
	}
	if cs, err := selectContenders(contenderNames(), "kmirror-eos"); err != nil || len(cs) != 1 || !cs[0].exactlyOnce {
		t.Fatalf("--only kmirror-eos = %+v, %v", cs, err)
	}
	for _, bad := range []string{"kmirror,mm2", "", " , "} {
		if _, err := selectContenders(bad, ""); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCommitMarkerMakesItsProducersCopiesReadable(t *testing.T) {
	open := map[producerIn][]time.Time{
		{partition: 0, id: 7}: {time.UnixMilli(1), time.UnixMilli(2)},
		{partition: 0, id: 8}: {time.UnixMilli(3)},
		{partition: 1, id: 7}: {time.UnixMilli(4)},
	}
	var readable []time.Time
	commit := &kgo.Record{Partition: 0, ProducerID: 7, Key: []byte{0, 0, 0, 1}}
	commitAt(commit, open, func(created time.Time) { readable = append(readable, created) })
	if len(readable) != 2 || !readable[1].Equal(time.UnixMilli(2)) {
		t.Fatalf("readable = %v, want the two copies of producer 7 in partition 0", readable)
	}
	if _, ok := open[producerIn{0, 7}]; ok || len(open) != 2 {
		t.Fatalf("open = %v after the commit", open)
	}
	abort := &kgo.Record{Partition: 0, ProducerID: 8, Key: []byte{0, 0, 0, 0}}
	commitAt(abort, open, func(time.Time) { t.Fatal("an abort made a copy readable") })
	if _, ok := open[producerIn{0, 8}]; ok {
		t.Fatal("an abort kept its copies open")
	}
}
