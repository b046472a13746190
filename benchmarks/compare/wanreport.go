package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The WAN targets: at wanTargetRTT kmirror keeps at least wanLoopbackFloor of its loopback
// catch-up throughput in both placements, and at least wanVersusMM2 times MirrorMaker 2's.
const (
	wanTargetRTT     = 80 * time.Millisecond
	wanLoopbackFloor = 0.8
	wanVersusMM2     = 3
)

// steadyRate is a contender's catch-up throughput on a path: the median over the rounds of
// records/s from the first record on the target (the copy itself; start-up and the group join
// cost a few round trips that a long catch-up pays once), 0 when it did not run.
func (r *wanContenderRun) steadyRate() float64 {
	if r == nil {
		return 0
	}
	return median(r.results, func(r result) float64 { return r.steadyPerSec })
}

// cpuPerGB is the contender's CPU-seconds per GB copied on a path (median over the rounds).
func (r *wanContenderRun) cpuPerGB(valueBytes int) float64 {
	if r == nil {
		return 0
	}
	return cpuPerGB(r.results, valueBytes)
}

// cpuPerGB is the median over rs of the mirror's CPU-seconds per GB of values copied.
func cpuPerGB(rs []result, valueBytes int) float64 {
	return median(rs, func(r result) float64 {
		if r.copied == 0 {
			return 0
		}
		return r.cpu.Seconds() / (float64(r.copied) * float64(valueBytes) / 1e9)
	})
}

func (r *wanContenderRun) startRate() float64 {
	if r == nil {
		return 0
	}
	return median(r.results, func(r result) float64 { return r.recordsPerSec })
}

// loopback is the cell of the runs without a proxy.
func loopbackOf(cells []wanCell) *wanCell {
	for i := range cells {
		if cells[i].path.placement == nil {
			return &cells[i]
		}
	}
	return nil
}

// cellAt is the cell of placement name at rtt, or nil.
func cellAt(cells []wanCell, name string, rtt time.Duration) *wanCell {
	for i := range cells {
		if p := cells[i].path; p.placement != nil && p.placement.name == name && p.rtt == rtt {
			return &cells[i]
		}
	}
	return nil
}

// share is num/den as a percentage, "" when either was not measured.
func share(num, den float64) string {
	if num <= 0 || den <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%%", 100*num/den)
}

// wanHeader opens a report that holds the WAN section alone (--wan-only).
func wanHeader(o options) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("# kmirror vs MirrorMaker 2 across a WAN — %s\n\n"+
		"Machine: %s, %d CPUs, %s. Kafka %s, one KRaft node per cluster on loopback, both clusters, the mirrors, the latency proxies and the harness on the same machine. "+
		"Workload: %d-byte random values (incompressible), keys, 2 headers, %d partitions, preloaded with compression %s. "+
		"All mirrors: acks=all, idempotent, linger 5 ms, 1 MiB batches, no compression; MirrorMaker 2 (connect-mirror %s) in dedicated mode with tasks.max = %d. kmirror: default settings%s "+
		"(with them, behind a proxy of 10 ms or more kmirror takes its side as distant: 4 fetch loops per source broker and 4 MiB fetches per partition near the target, a 20 ms linger near the source).\n",
		time.Now().UTC().Format(time.RFC3339), host, numCPU(), runtime.Version(), o.version, o.valueBytes, o.partitions, o.sourceCompression,
		o.version, o.partitions, kmirrorSettings(o))
}

// wanReport is the WAN section of the Markdown report; chart names its chart's file.
func wanReport(o options, p wanPlan, cells []wanCell, chart string) string {
	var b strings.Builder
	var rtts, labels []string
	for _, r := range p.rtts {
		rtts = append(rtts, fmt.Sprint(r.Milliseconds()))
	}
	for _, c := range p.contenders {
		labels = append(labels, c.label)
	}
	fmt.Fprintf(&b, "\n## Across a WAN\n\n"+
		"This machine's kernel has no netem, so the round trip is made by a latency proxy: toxiproxy (github.com/Shopify/toxiproxy/v2, as a library in the harness), one proxy per remote broker, holding every byte for half the RTT towards the broker and half on the way back (the odd millisecond on the way back). "+
		"The remote cluster's broker advertises the proxy's address on a listener of its own (`cluster.sh up --remote-listener`), so the mirror, which bootstraps through the proxy, stays behind it; the harness's own clients use the brokers' own listeners. "+
		"Near the target: the source is behind the proxy (remote consume, the usual MirrorMaker 2 advice); near the source: the target is (remote produce). "+
		"RTTs %s ms; RTT 0 goes through the proxy too, so its own cost is in that row, and loopback is the same mirror without a proxy. "+
		"Each run copies its own preloaded topic of %d records (same workload) into a fresh target, the contenders (%s) taking turns (their order reversed from one path and round to the next), %d round(s), medians; the time limit of a run is %s, and a run past it is reported as not finished with its rate so far. "+
		"Throughput here is records/s from the first record on the target, the copy itself: start-up and the group join cost a few round trips that a long catch-up pays once (records/s from start are beside it). "+
		"CPU s per GB is the mirror's own CPU per GB copied: on two cores shared with both brokers a mirror is CPU-bound on loopback, and one that spends less CPU per record behind the proxy (fuller fetches and batches) can copy faster there than on loopback. "+
		"The proxy models delay, not a real path's TCP window: it reads from each connection as fast as the other side allows (up to 1,024 chunks held per connection and direction), so a window-limited path would be slower than this.",
		strings.Join(rtts, ", "), p.records, strings.Join(labels, ", "), p.rounds, p.timeout)
	if p.pacedRate > 0 {
		fmt.Fprintf(&b, " Latency: one paced run per path and contender at %d records/s for %s after the warm-up, end to end as in the section above (the paced producer and the measuring consumers use the brokers' own listeners), each run on a source topic of its own.", p.pacedRate, p.pacedFor)
	}
	b.WriteString("\n\n")

	loop := loopbackOf(cells)
	b.WriteString("| placement | RTT | contender | records/s (from first record) | MB/s | records/s (from start) | share of its loopback | kmirror / bare mirror (franz-go) | kmirror / bare mirror (sarama) | kmirror / MirrorMaker 2 | CPU s per GB | p99 latency |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	mbs := func(rps float64) float64 { return rps * float64(o.valueBytes) / 1e6 }
	for _, cell := range cells {
		where, rtt := "loopback (no proxy)", "–"
		if pl := cell.path.placement; pl != nil {
			where, rtt = pl.label, fmt.Sprintf("%d ms", cell.path.rtt.Milliseconds())
		}
		for _, c := range p.contenders {
			run := cell.runs[c.name]
			rate := run.steadyRate()
			rateText := fmt.Sprintf("%.0f", rate)
			if run.unfinished > 0 {
				rateText = fmt.Sprintf("did not finish in %s in %d of %d runs: %.0f so far", p.timeout, run.unfinished, len(run.results), rate)
			}
			if len(run.results) == 0 {
				rateText = "not run"
			}
			shareText := ""
			if cell.path.placement != nil && loop != nil {
				shareText = share(rate, loop.runs[c.name].steadyRate())
			}
			var vsBare, vsSarama, vsMM2 string
			if c.name == "kmirror" {
				vsBare, vsSarama, vsMM2 = versus(cell, rate, "bare"), versus(cell, rate, "baresarama"), versus(cell, rate, "mirrormaker2")
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f | %.0f | %s | %s | %s | %s | %.1f | %s |\n", where, rtt, c.label, rateText, mbs(rate), run.startRate(),
				shareText, vsBare, vsSarama, vsMM2, run.cpuPerGB(o.valueBytes), latencyCell(run))
		}
	}

	b.WriteString("\nfranz-go alone on each path (records/s, medians): the consumer reads the same preloaded topic from the source, the producer writes as many records into the target with the mirrors' producer settings; on a placement only the side behind the proxy. At RTT 0 against loopback, this is what the proxy itself costs.\n\n" +
		"| path | franz-go consumer ← source | franz-go producer → target |\n|---|---|---|\n")
	for _, cell := range cells {
		where := "loopback (no proxy)"
		if pl := cell.path.placement; pl != nil {
			where = fmt.Sprintf("%s, %d ms", pl.label, cell.path.rtt.Milliseconds())
		}
		var loopConsume, loopProduce []float64
		if loop != nil && cell.path.placement != nil {
			loopConsume, loopProduce = loop.consume, loop.produce
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", where, rateWithShare(cell.consume, loopConsume), rateWithShare(cell.produce, loopProduce))
	}

	b.WriteString("\n" + wanTargets(p, cells))
	if chart != "" {
		fmt.Fprintf(&b, "\n![catch-up throughput against the round-trip time, per placement and contender](%s)\n", chart)
	}
	return b.String()
}

// versus is rate (kmirror's on cell) against contender name's on the same cell, "" when either
// was not measured; a contender that did not finish is compared by its rate so far, and said so.
func versus(cell wanCell, rate float64, name string) string {
	other := cell.runs[name]
	if other == nil || rate <= 0 || other.steadyRate() <= 0 {
		return ""
	}
	s := fmt.Sprintf("%.2f×", rate/other.steadyRate())
	if other.unfinished > 0 {
		s += fmt.Sprintf(" (%s did not finish: its rate so far)", labelOf(name))
	}
	return s
}

// rateWithShare is the median of v, with its share of the median of loop when loop was
// measured; "–" when v was not.
func rateWithShare(v, loop []float64) string {
	m := medianOf(append([]float64(nil), v...))
	if m <= 0 {
		return "–"
	}
	if s := share(m, medianOf(append([]float64(nil), loop...))); s != "" {
		return fmt.Sprintf("%.0f (%s of loopback)", m, s)
	}
	return fmt.Sprintf("%.0f", m)
}

func latencyCell(run *wanContenderRun) string {
	switch {
	case run == nil:
		return ""
	case run.latErr != "":
		return "not measured: " + strings.ReplaceAll(run.latErr, "|", "/")
	case run.lat == nil:
		return ""
	case run.lat.behind:
		return "fell behind"
	}
	return fmt.Sprintf("%.1f ms (p50 %.1f)", ms(run.lat.p99), ms(run.lat.p50))
}

// wanTargets is the WAN targets table: kmirror at wanTargetRTT against its loopback throughput
// and against MirrorMaker 2, per placement; rows whose figures the run did not measure are left
// out, and a note says so.
func wanTargets(p wanPlan, cells []wanCell) string {
	var b strings.Builder
	b.WriteString("| target | measured | |\n|---|---|---|\n")
	rows := 0
	loop := loopbackOf(cells)
	for _, pl := range p.placements {
		cell := cellAt(cells, pl.name, wanTargetRTT)
		if cell == nil || loop == nil {
			continue
		}
		k := cell.runs["kmirror"]
		kr, lr := k.steadyRate(), loop.runs["kmirror"].steadyRate()
		if kr > 0 && lr > 0 {
			note := ""
			if k.unfinished > 0 {
				note = ", did not finish: its rate so far"
			}
			fmt.Fprintf(&b, "| at %d ms RTT, kmirror %s keeps ≥ %.0f%% of its loopback catch-up throughput | %.0f%% (%.0f vs %.0f records/s%s) | %s |\n",
				wanTargetRTT.Milliseconds(), pl.label, 100*wanLoopbackFloor, 100*kr/lr, kr, lr, note, verdict(k.unfinished == 0 && kr/lr >= wanLoopbackFloor))
			rows++
		}
		m := cell.runs["mirrormaker2"]
		if mr := m.steadyRate(); kr > 0 && mr > 0 {
			note := ""
			if m.unfinished > 0 {
				note = "; MirrorMaker 2 did not finish: its rate so far"
			}
			fmt.Fprintf(&b, "| at %d ms RTT, kmirror %s ≥ %d× MirrorMaker 2 | %.2f× (%.0f vs %.0f records/s%s) | %s |\n",
				wanTargetRTT.Milliseconds(), pl.label, wanVersusMM2, kr/mr, kr, mr, note, verdict(k.unfinished == 0 && kr/mr >= wanVersusMM2))
			rows++
		}
	}
	if rows == 0 {
		return fmt.Sprintf("The WAN targets (at %d ms RTT: kmirror ≥ %.0f%% of its loopback catch-up throughput, ≥ %d× MirrorMaker 2) need kmirror, MirrorMaker 2 and %d ms in --rtts; this run measured neither.\n",
			wanTargetRTT.Milliseconds(), 100*wanLoopbackFloor, wanVersusMM2, wanTargetRTT.Milliseconds())
	}
	return b.String()
}

// wanChart draws each contender's catch-up throughput against the RTT, one line per placement
// (solid near the target, dashed near the source), and its loopback throughput as a dotted
// level.
func wanChart(path string, p wanPlan, cells []wanCell) error {
	pl := plot.New()
	pl.Title.Text = "Catch-up across a WAN: records/s from the first record on the target"
	pl.X.Label.Text = "round-trip time between the mirror and the remote cluster (ms)"
	pl.Y.Label.Text = "records/s"
	pl.Add(plotter.NewGrid())
	maxRTT, maxRate := 1.0, 1.0
	var rttTicks []plot.Tick
	for _, r := range p.rtts {
		maxRTT = max(maxRTT, float64(r.Milliseconds()))
		rttTicks = append(rttTicks, plot.Tick{Value: float64(r.Milliseconds()), Label: strconv.FormatInt(r.Milliseconds(), 10)})
	}
	pl.X.Tick.Marker = plot.ConstantTicks(rttTicks)
	for _, cell := range cells {
		for _, run := range cell.runs {
			maxRate = max(maxRate, run.steadyRate())
		}
	}
	loop := loopbackOf(cells)
	for _, c := range p.contenders {
		for i, place := range p.placements {
			var xys plotter.XYs
			for _, rtt := range p.rtts {
				if cell := cellAt(cells, place.name, rtt); cell != nil {
					if v := cell.runs[c.name].steadyRate(); v > 0 {
						xys = append(xys, plotter.XY{X: float64(rtt.Milliseconds()), Y: v})
					}
				}
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("WAN chart %s %s: %w", c.name, place.name, err)
			}
			line.Color, points.Color = colorOf(c.name), colorOf(c.name)
			line.Width = vg.Points(2)
			if i > 0 {
				line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			}
			pl.Add(line, points)
			pl.Legend.Add(c.label+", "+place.label, line, points)
		}
		if loop == nil {
			continue
		}
		if v := loop.runs[c.name].steadyRate(); v > 0 {
			level, err := plotter.NewLine(plotter.XYs{{X: 0, Y: v}, {X: maxRTT, Y: v}})
			if err != nil {
				return fmt.Errorf("WAN chart %s loopback: %w", c.name, err)
			}
			level.Color = colorOf(c.name)
			level.Width = vg.Points(1)
			level.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
			pl.Add(level)
			pl.Legend.Add(c.label+", loopback (no proxy)", level)
		}
	}
	// Room above the lines for the legend.
	pl.Y.Min, pl.Y.Max = 0, 1.6*maxRate
	pl.Y.Tick.Marker = wholeTicks{}
	pl.Legend.Top = true
	return pl.Save(8*vg.Inch, 5*vg.Inch, path)
}

// wholeTicks labels records/s without decimals.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', 0, 64)
		}
	}
	return ticks
}
