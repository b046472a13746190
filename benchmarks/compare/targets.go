package main

import (
	"fmt"
	"strings"
	"time"
)

// The targets of the batch-level data path (issue 23: kmirror's own fetch loops and idempotent
// produce pipeline on sarama's protocol layer), each judged on the medians of one run. Its
// 10,000-partition rows are make bench-scale's, not this program's.
const (
	// loopback catch-up: kmirror / bare franz-go mirror, and kmirror / MirrorMaker 2.
	pathVersusBare = 0.9
	pathVersusMM2  = 3
	// CPU-seconds per GB: kmirror / bare franz-go mirror, at most.
	pathCPUVersusBare = 1.3
	// catch-up: kmirror exactly-once / kmirror at-least-once.
	pathEOSShare = 0.85
	// p99 at 10,000 records/s and at 25% of kmirror's catch-up rate, below.
	pathP99    = 50 * time.Millisecond
	pathP99EOS = 150 * time.Millisecond
	// at wanTargetRTT, both placements: share of kmirror's loopback rate, and kmirror /
	// MirrorMaker 2.
	pathWANShare      = 0.8
	pathWANVersusMM2  = 2
	pathP99FixedRate  = 10_000 // records/s
	pathP99CatchUpPct = 25     // % of kmirror's catch-up rate
)

// runFigures is what one run measured, for the targets judged across its sections.
type runFigures struct {
	valueBytes int
	catchUp    map[string][]result // loopback catch-up rounds, by contender
	lats       []latency           // loopback paced runs
	wan        wanPlan             // the WAN section, when it ran
	cells      []wanCell
}

// dataPathTargets is the table of issue 23's targets this run measured: for each, the measured
// ratio (or p99) and met or missed. Rows whose figures the run lacks are left out.
func dataPathTargets(f runFigures) string {
	var rows []string
	add := func(target, measured string, ok bool, judged bool) {
		v := ""
		if judged {
			v = verdict(ok)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", target, measured, v))
	}
	rps := func(name string) float64 {
		return median(f.catchUp[name], func(r result) float64 { return r.recordsPerSec })
	}
	ratio := func(target string, num, den float64, floor float64, judged bool) {
		if num > 0 && den > 0 {
			add(target, fmt.Sprintf("%.2f× (%.0f vs %.0f records/s)", num/den, num, den), num/den >= floor, judged)
		}
	}
	k := rps("kmirror")
	ratio(fmt.Sprintf("loopback catch-up: kmirror / bare mirror (franz-go) ≥ %.1f", pathVersusBare), k, rps("bare"), pathVersusBare, true)
	ratio(fmt.Sprintf("loopback catch-up: kmirror / MirrorMaker 2 ≥ %d", pathVersusMM2), k, rps("mirrormaker2"), pathVersusMM2, true)
	ratio("loopback catch-up: kmirror / bare mirror (sarama), reported", k, rps("baresarama"), 0, false)
	if kc, bc := cpuPerGB(f.catchUp["kmirror"], f.valueBytes), cpuPerGB(f.catchUp["bare"], f.valueBytes); kc > 0 && bc > 0 {
		add(fmt.Sprintf("CPU-seconds per GB: kmirror / bare mirror (franz-go) ≤ %.1f", pathCPUVersusBare),
			fmt.Sprintf("%.2f× (%.1f vs %.1f CPU s per GB)", kc/bc, kc, bc), kc/bc <= pathCPUVersusBare, true)
	}
	ratio(fmt.Sprintf("catch-up: kmirror exactly-once / at-least-once ≥ %.2f", pathEOSShare), rps("kmirror-eos"), k, pathEOSShare, true)
	for _, l := range f.lats {
		limit := pathP99
		if l.name == "kmirror-eos" {
			limit = pathP99EOS
		} else if l.name != "kmirror" {
			continue
		}
		var at string
		switch l.of {
		case pacedRate{fixed: pathP99FixedRate}:
			at = fmt.Sprintf("%d records/s", pathP99FixedRate)
		case pacedRate{percent: pathP99CatchUpPct}:
			at = fmt.Sprintf("%d%% of catch-up (%d records/s)", pathP99CatchUpPct, l.rate)
		default:
			continue
		}
		target := fmt.Sprintf("p99 at %s: %s < %d ms", at, labelOf(l.name), limit.Milliseconds())
		if l.behind {
			add(target, "fell behind", false, true)
			continue
		}
		add(target, fmt.Sprintf("%.1f ms", ms(l.p99)), l.p99 < limit, true)
	}
	if loop := loopbackOf(f.cells); loop != nil {
		lr := loop.runs["kmirror"].steadyRate()
		for _, pl := range f.wan.placements {
			cell := cellAt(f.cells, pl.name, wanTargetRTT)
			if cell == nil {
				continue
			}
			km := cell.runs["kmirror"]
			kr := km.steadyRate()
			note := ""
			if km != nil && km.unfinished > 0 {
				note = ", did not finish: its rate so far"
			}
			finished := km == nil || km.unfinished == 0
			if kr > 0 && lr > 0 {
				add(fmt.Sprintf("%d ms RTT %s: kmirror's share of its loopback rate ≥ %.0f%%", wanTargetRTT.Milliseconds(), pl.label, 100*pathWANShare),
					fmt.Sprintf("%.0f%% (%.0f vs %.0f records/s%s)", 100*kr/lr, kr, lr, note), finished && kr/lr >= pathWANShare, true)
			}
			mm := cell.runs["mirrormaker2"]
			if mr := mm.steadyRate(); kr > 0 && mr > 0 {
				if mm.unfinished > 0 {
					note += "; MirrorMaker 2 did not finish: its rate so far"
				}
				add(fmt.Sprintf("%d ms RTT %s: kmirror / MirrorMaker 2 ≥ %d", wanTargetRTT.Milliseconds(), pl.label, pathWANVersusMM2),
					fmt.Sprintf("%.2f× (%.0f vs %.0f records/s%s)", kr/mr, kr, mr, note), finished && kr/mr >= pathWANVersusMM2, true)
			}
		}
	}
	if len(rows) == 0 {
		return ""
	}
	return "\n## Targets of the batch-level data path (issue 23)\n\n" +
		"Medians of this run: catch-up from start on loopback, from the first record on the target across the WAN (as in the sections above); CPU-seconds per GB of values copied. " +
		"Rows the run did not measure are left out; the 10,000-partition targets are `make bench-scale`'s.\n\n" +
		"| target | measured | |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
}
