package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDataPathTargets judges a synthetic run on every target it measured: catch-up medians of
// three rounds, paced runs at the two rates the targets name (and one they do not), and the WAN
// fixture.
func TestDataPathTargets(t *testing.T) {
	p, cells := wanFixture(t)
	rounds := func(cpu time.Duration, rates ...float64) []result {
		var rs []result
		for _, r := range rates {
			rs = append(rs, result{recordsPerSec: r, copied: 1_000_000, cpu: cpu})
		}
		return rs
	}
	f := runFigures{valueBytes: 1000, wan: p, cells: cells,
		catchUp: map[string][]result{
			"kmirror":      rounds(4*time.Second, 90_000, 100_000, 110_000),
			"bare":         rounds(2*time.Second, 200_000, 100_000, 150_000),
			"baresarama":   rounds(3*time.Second, 95_000, 100_000, 105_000),
			"kmirror-eos":  rounds(5*time.Second, 80_000, 90_000, 85_000),
			"mirrormaker2": rounds(9*time.Second, 30_000, 35_000, 20_000),
		},
		lats: []latency{
			{name: "kmirror", rate: 10_000, of: pacedRate{fixed: 10_000}, p99: 46200 * time.Microsecond},
			{name: "bare", rate: 10_000, of: pacedRate{fixed: 10_000}, p99: time.Millisecond},
			{name: "kmirror-eos", rate: 10_000, of: pacedRate{fixed: 10_000}, p99: 227 * time.Millisecond},
			{name: "kmirror", rate: 25_000, of: pacedRate{percent: 25}, behind: true},
			{name: "kmirror-eos", rate: 25_000, of: pacedRate{percent: 25}, p99: 140 * time.Millisecond},
			{name: "kmirror", rate: 50_000, of: pacedRate{percent: 50}, p99: 10 * time.Millisecond},
		},
	}
	got := dataPathTargets(f)
	want := []string{
		"| loopback catch-up: kmirror / bare mirror (franz-go) ≥ 0.9 | 0.67× (100000 vs 150000 records/s) | **missed** |",
		"| loopback catch-up: kmirror / MirrorMaker 2 ≥ 3 | 3.33× (100000 vs 30000 records/s) | met |",
		"| loopback catch-up: kmirror / bare mirror (sarama), reported | 1.00× (100000 vs 100000 records/s) |  |",
		"| CPU-seconds per GB: kmirror / bare mirror (franz-go) ≤ 1.3 | 2.00× (4.0 vs 2.0 CPU s per GB) | **missed** |",
		"| catch-up: kmirror exactly-once / at-least-once ≥ 0.85 | 0.85× (85000 vs 100000 records/s) | met |",
		"| p99 at 10000 records/s: kmirror < 50 ms | 46.2 ms | met |",
		"| p99 at 10000 records/s: kmirror exactly-once < 150 ms | 227.0 ms | **missed** |",
		"| p99 at 25% of catch-up (25000 records/s): kmirror < 50 ms | fell behind | **missed** |",
		"| p99 at 25% of catch-up (25000 records/s): kmirror exactly-once < 150 ms | 140.0 ms | met |",
		"| 80 ms RTT near the target (remote consume): kmirror's share of its loopback rate ≥ 80% | 85% (170000 vs 200000 records/s) | met |",
		"| 80 ms RTT near the target (remote consume): kmirror / MirrorMaker 2 ≥ 2 | 4.25× (170000 vs 40000 records/s) | met |",
		"| 80 ms RTT near the source (remote produce): kmirror's share of its loopback rate ≥ 80% | 50% (100000 vs 200000 records/s) | **missed** |",
		"| 80 ms RTT near the source (remote produce): kmirror / MirrorMaker 2 ≥ 2 | 5.00× (100000 vs 20000 records/s; MirrorMaker 2 did not finish: its rate so far) | met |",
	}
	var rows []string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| target |") {
			rows = append(rows, l)
		}
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}

	// kmirror unfinished at 80 ms: whatever its rate so far, both WAN targets of that placement
	// are missed.
	cellAt(cells, "near-target", wanTargetRTT).runs["kmirror"].unfinished = 1
	got = dataPathTargets(f)
	for _, w := range []string{
		"kmirror's share of its loopback rate ≥ 80% | 85% (170000 vs 200000 records/s, did not finish: its rate so far) | **missed** |",
		"(remote consume): kmirror / MirrorMaker 2 ≥ 2 | 4.25× (170000 vs 40000 records/s, did not finish: its rate so far) | **missed** |",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("an unfinished kmirror run: the targets lack %q:\n%s", w, got)
		}
	}
}

func TestDataPathTargetsLeaveOutWhatTheRunDidNotMeasure(t *testing.T) {
	f := runFigures{valueBytes: 1000, catchUp: map[string][]result{
		"kmirror":    {{recordsPerSec: 100_000, copied: 1000, cpu: time.Second}},
		"baresarama": {{recordsPerSec: 50_000, copied: 1000, cpu: time.Second}},
	}}
	got := dataPathTargets(f)
	if n := strings.Count(got, "\n| ") - 1; n != 1 || !strings.Contains(got, "kmirror / bare mirror (sarama), reported | 2.00×") {
		t.Fatalf("kmirror and the bare sarama mirror alone gave %d rows:\n%s", n, got)
	}
	if got := dataPathTargets(runFigures{}); got != "" {
		t.Fatalf("a run that measured nothing gave %q", got)
	}
}
