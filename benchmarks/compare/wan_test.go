package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWANPlanParsesTheFlags(t *testing.T) {
	p, err := wanOptions{rtts: "0, 20,80ms", placements: "near-source,near-target", contenders: "mirrormaker2,kmirror",
		records: 1000, rounds: 1, timeout: time.Minute, pacedRate: 10_000, pacedFor: time.Second}.plan()
	if err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond}; len(p.rtts) != 3 || p.rtts[1] != want[1] || p.rtts[2] != want[2] {
		t.Fatalf("rtts = %v, want %v", p.rtts, want)
	}
	// Placements and contenders in their own order, whatever the flags' order.
	if len(p.placements) != 2 || p.placements[0].name != "near-target" || p.placements[0].remote != "europe" || p.placements[1].remote != "us" {
		t.Fatalf("placements = %+v", p.placements)
	}
	if len(p.contenders) != 2 || p.contenders[0].name != "kmirror" || p.contenders[1].name != "mirrormaker2" {
		t.Fatalf("contenders = %+v", p.contenders)
	}
	cells := p.cells()
	if len(cells) != 7 || cells[0].path.String() != "loopback" || cells[3].path.String() != "near-target-80ms" || cells[4].path.String() != "near-source-0ms" {
		var names []string
		for _, c := range cells {
			names = append(names, c.path.String())
		}
		t.Fatalf("cells = %v; want loopback, then each placement at each RTT", names)
	}
	if cells[6].runs["mirrormaker2"] == nil {
		t.Fatal("a cell has no run for a contender")
	}
}

func TestWANPlanIsOffWithoutRTTsOrPlacements(t *testing.T) {
	for _, o := range []wanOptions{{rtts: "", placements: "near-target"}, {rtts: "80", placements: " "}} {
		p, err := o.plan()
		if err != nil || p.enabled() {
			t.Errorf("%+v: plan %+v, %v; want a plan that is off", o, p, err)
		}
	}
}

func TestWANPlanRefusesBadFlags(t *testing.T) {
	good := wanOptions{rtts: "0,80", placements: "near-target", contenders: "kmirror", records: 10, rounds: 1, timeout: time.Minute, pacedFor: time.Second}
	for name, mutate := range map[string]func(*wanOptions){
		"negative RTT":       func(o *wanOptions) { o.rtts = "-20" },
		"fractional RTT":     func(o *wanOptions) { o.rtts = "0.5" },
		"RTT twice":          func(o *wanOptions) { o.rtts = "80,80" },
		"unknown placement":  func(o *wanOptions) { o.placements = "near-moon" },
		"unknown contender":  func(o *wanOptions) { o.contenders = "mm2" },
		"no records":         func(o *wanOptions) { o.records = 0 },
		"no rounds":          func(o *wanOptions) { o.rounds = 0 },
		"no time limit":      func(o *wanOptions) { o.timeout = 0 },
		"negative rate":      func(o *wanOptions) { o.pacedRate = -1 },
		"rate without a run": func(o *wanOptions) { o.pacedRate = 100; o.pacedFor = 0 },
	} {
		o := good
		mutate(&o)
		if _, err := o.plan(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := good.plan(); err != nil {
		t.Fatalf("the good options: %v", err)
	}
}

// wanFixture is a measured WAN section: kmirror keeps 85% of its loopback throughput at 80 ms
// near the target and 50% near the source; MirrorMaker 2 did not finish near the source; the bare
// mirrors ran on loopback and at 80 ms only, the sarama one keeping 8% near the source.
func wanFixture(t *testing.T) (wanPlan, []wanCell) {
	t.Helper()
	p, err := wanOptions{rtts: "0,80", placements: "near-target,near-source", contenders: "kmirror,bare,baresarama,mirrormaker2",
		records: 1000, rounds: 1, timeout: time.Minute, pacedRate: 10_000, pacedFor: time.Second}.plan()
	if err != nil {
		t.Fatal(err)
	}
	cells := p.cells()
	set := func(path string, name string, steady, fromStart float64) *wanContenderRun {
		for i := range cells {
			if cells[i].path.String() == path {
				run := cells[i].runs[name]
				run.results = append(run.results, result{steadyPerSec: steady, recordsPerSec: fromStart, copied: 1000, cpu: 2 * time.Second})
				return run
			}
		}
		t.Fatalf("no cell %s", path)
		return nil
	}
	set("loopback", "kmirror", 200_000, 150_000).lat = &latency{p50: 9 * time.Millisecond, p99: 20 * time.Millisecond}
	set("loopback", "mirrormaker2", 50_000, 30_000).lat = &latency{behind: true}
	set("near-target-0ms", "kmirror", 190_000, 140_000)
	set("near-target-0ms", "mirrormaker2", 48_000, 28_000)
	set("near-target-80ms", "kmirror", 170_000, 100_000).lat = &latency{p50: 50 * time.Millisecond, p99: 95500 * time.Microsecond}
	set("near-target-80ms", "mirrormaker2", 40_000, 20_000).latErr = "mirrored nothing | within 3 minutes"
	set("near-source-0ms", "kmirror", 195_000, 145_000)
	set("near-source-0ms", "mirrormaker2", 47_000, 27_000)
	set("near-source-80ms", "kmirror", 100_000, 80_000)
	set("near-source-80ms", "mirrormaker2", 20_000, 15_000).unfinished = 1
	set("loopback", "bare", 250_000, 200_000)
	set("loopback", "baresarama", 100_000, 80_000)
	set("near-target-80ms", "bare", 200_000, 150_000)
	set("near-target-80ms", "baresarama", 20_000, 15_000)
	set("near-source-80ms", "bare", 150_000, 120_000)
	set("near-source-80ms", "baresarama", 8_000, 7_000)
	cells[0].consume, cells[0].produce = []float64{500_000}, []float64{250_000}
	cells[1].consume = []float64{400_000}
	return p, cells
}

func TestWANReportTable(t *testing.T) {
	p, cells := wanFixture(t)
	r := wanReport(options{valueBytes: 1000}, p, cells, "x-wan.png")
	for _, want := range []string{
		"| loopback (no proxy) | – | kmirror | 200000 | 200.0 | 150000 |  | 0.80× | 2.00× | 4.00× | 2000.0 | 20.0 ms (p50 9.0) |",
		"| loopback (no proxy) | – | MirrorMaker 2 | 50000 | 50.0 | 30000 |  |  |  |  | 2000.0 | fell behind |",
		"| near the target (remote consume) | 80 ms | kmirror | 170000 | 170.0 | 100000 | 85% | 0.85× | 8.50× | 4.25× | 2000.0 | 95.5 ms (p50 50.0) |",
		// A pipe in an error would break the table.
		"| near the target (remote consume) | 80 ms | MirrorMaker 2 | 40000 | 40.0 | 20000 | 80% |  |  |  | 2000.0 | not measured: mirrored nothing / within 3 minutes |",
		"| near the source (remote produce) | 80 ms | kmirror | 100000 | 100.0 | 80000 | 50% | 0.67× | 12.50× | 5.00× (MirrorMaker 2 did not finish: its rate so far) | 2000.0 |  |",
		"| near the source (remote produce) | 80 ms | bare mirror (sarama) | 8000 | 8.0 | 7000 | 8% |  |  |  | 2000.0 |  |",
		// A contender that did not run on a path leaves kmirror's ratio to it empty.
		"| near the source (remote produce) | 0 ms | kmirror | 195000 | 195.0 | 145000 | 98% |  |  | 4.15× | 2000.0 |  |",
		"| near the source (remote produce) | 80 ms | MirrorMaker 2 | did not finish in 1m0s in 1 of 1 runs: 20000 so far |",
		"| loopback (no proxy) | 500000 | 250000 |",
		"| near the target (remote consume), 0 ms | 400000 (80% of loopback) | – |",
		"| near the source (remote produce), 80 ms | – | – |",
		"![catch-up throughput against the round-trip time, per placement and contender](x-wan.png)",
		"at 10000 records/s",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("the report lacks %q:\n%s", want, r)
		}
	}
}

func TestWANTargets(t *testing.T) {
	p, cells := wanFixture(t)
	got := wanTargets(p, cells)
	for _, want := range []string{
		"| at 80 ms RTT, kmirror near the target (remote consume) keeps ≥ 80% of its loopback catch-up throughput | 85% (170000 vs 200000 records/s) | met |",
		"| at 80 ms RTT, kmirror near the target (remote consume) ≥ 3× MirrorMaker 2 | 4.25× (170000 vs 40000 records/s) | met |",
		"| at 80 ms RTT, kmirror near the source (remote produce) keeps ≥ 80% of its loopback catch-up throughput | 50% (100000 vs 200000 records/s) | **missed** |",
		"| at 80 ms RTT, kmirror near the source (remote produce) ≥ 3× MirrorMaker 2 | 5.00× (100000 vs 20000 records/s; MirrorMaker 2 did not finish: its rate so far) | met |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the targets lack %q:\n%s", want, got)
		}
	}
	// kmirror itself unfinished: the rate so far is shown, and the target is missed whatever it is.
	near := cellAt(cells, "near-target", wanTargetRTT).runs["kmirror"]
	near.unfinished = 1
	if got := wanTargets(p, cells); !strings.Contains(got, "85% (170000 vs 200000 records/s, did not finish: its rate so far) | **missed** |") {
		t.Errorf("an unfinished kmirror run met its target:\n%s", got)
	}
}

func TestWANTargetsNeed80ms(t *testing.T) {
	p, err := wanOptions{rtts: "0,20", placements: "near-target", contenders: "kmirror", records: 10, rounds: 1, timeout: time.Minute}.plan()
	if err != nil {
		t.Fatal(err)
	}
	if got := wanTargets(p, p.cells()); !strings.Contains(got, "this run measured neither") {
		t.Fatalf("targets without an 80 ms run = %q", got)
	}
}

func TestWANChartWritesAPNG(t *testing.T) {
	p, cells := wanFixture(t)
	path := filepath.Join(t.TempDir(), "wan.png")
	if err := wanChart(path, p, cells); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("not a PNG: %d bytes, %v", len(b), err)
	}
	if os.Getenv("KMIRROR_KEEP_CHART") != "" {
		_ = os.WriteFile(os.Getenv("KMIRROR_KEEP_CHART"), b, 0o644)
	}
}
