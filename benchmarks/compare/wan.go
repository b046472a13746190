package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The WAN section puts a round trip between the mirror and one of the clusters: a latency proxy
// per remote broker (package wan, toxiproxy), the broker advertising the proxy's address on a
// listener of its own (cluster.sh up --remote-listener), so that only the mirror, which
// bootstraps through the proxy, is behind the WAN. The harness's own clients (preload, progress,
// the paced producer and the measuring consumers) keep the clusters' own listeners.

// wanTopic is the WAN section's preloaded source topic (--wan-records records).
const wanTopic = "bench-wan"

// wanOptions are the WAN section's flags, as given.
type wanOptions struct {
	rtts, placements, contenders string
	records, rounds              int
	timeout                      time.Duration
	pacedRate                    int
	pacedFor                     time.Duration
}

// placement is where the mirror runs: next to one cluster, the other behind the WAN.
type placement struct {
	name  string // for --placements and file names
	label string // in the report
	// remote is the cluster behind the WAN: europe (the source) or us (the target).
	remote string
}

// placements are all the placements, in the order the section runs them.
var placements = []placement{
	{name: "near-target", label: "near the target (remote consume)", remote: "europe"},
	{name: "near-source", label: "near the source (remote produce)", remote: "us"},
}

// wanPlan is the WAN section of a run: what its flags asked for, checked.
type wanPlan struct {
	rtts       []time.Duration
	placements []placement
	contenders []contender
	records    int
	rounds     int
	timeout    time.Duration
	pacedRate  int // records/s; 0: no latency runs
	pacedFor   time.Duration
}

func (p wanPlan) enabled() bool { return len(p.rtts) > 0 && len(p.placements) > 0 }

// plan checks the WAN flags; an empty --rtts or --placements gives a plan that is not enabled.
func (w wanOptions) plan() (wanPlan, error) {
	var p wanPlan
	for _, f := range strings.Split(w.rtts, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ms, err := strconv.Atoi(strings.TrimSuffix(f, "ms"))
		if err != nil || ms < 0 {
			return wanPlan{}, fmt.Errorf("--rtts %q: want round-trip times in whole milliseconds, e.g. 0,20,80", f)
		}
		rtt := time.Duration(ms) * time.Millisecond
		for _, seen := range p.rtts {
			if seen == rtt {
				return wanPlan{}, fmt.Errorf("--rtts: %s twice", rtt)
			}
		}
		p.rtts = append(p.rtts, rtt)
	}
	picked, unknown := pick(w.placements, placements, func(pl placement) string { return pl.name })
	if unknown != "" {
		return wanPlan{}, fmt.Errorf("--placements %q: want near-target or near-source", unknown)
	}
	p.placements = picked
	if !p.enabled() {
		return wanPlan{}, nil
	}
	cs, err := selectContenders(w.contenders, "")
	if err != nil {
		return wanPlan{}, fmt.Errorf("--wan-contenders: %w", err)
	}
	switch {
	case w.records <= 0:
		return wanPlan{}, fmt.Errorf("--wan-records %d: want at least 1", w.records)
	case w.rounds <= 0:
		return wanPlan{}, fmt.Errorf("--wan-rounds %d: want at least 1", w.rounds)
	case w.timeout <= 0:
		return wanPlan{}, fmt.Errorf("--wan-timeout %s: want a positive limit", w.timeout)
	case w.pacedRate < 0:
		return wanPlan{}, fmt.Errorf("--wan-paced-rate %d: want records/s, or 0 for no latency runs", w.pacedRate)
	case w.pacedRate > 0 && w.pacedFor <= 0:
		return wanPlan{}, fmt.Errorf("--wan-paced-for %s: want a positive length", w.pacedFor)
	}
	p.contenders, p.records, p.rounds, p.timeout, p.pacedRate, p.pacedFor = cs, w.records, w.rounds, w.timeout, w.pacedRate, w.pacedFor
	return p, nil
}

// wanPath is how the mirror reaches the clusters: loopback (both directly, no proxy), or a
// placement with the other cluster behind the proxy at an RTT.
type wanPath struct {
	placement *placement // nil: loopback
	rtt       time.Duration
}

func (p wanPath) String() string {
	if p.placement == nil {
		return "loopback"
	}
	return fmt.Sprintf("%s-%dms", p.placement.name, p.rtt.Milliseconds())
}

// wanCell is what was measured on one path.
type wanCell struct {
	path wanPath
	// consume and produce are franz-go alone on the path, records/s (medians of the rounds):
	// reading the WAN topic from the source, writing as many records into the target. On a
	// placement only the side behind the WAN is measured (the other is loopback's); on loopback
	// both. Measured through the proxy at RTT 0, against loopback, they are the proxy's ceiling.
	consume, produce []float64
	runs             map[string]*wanContenderRun // by contender name
}

// wanContenderRun is one contender's catch-up runs and latency run on one path.
type wanContenderRun struct {
	results []result // one per round; a run that hit the time limit holds its rates so far
	// unfinished counts the runs that hit the time limit.
	unfinished int
	lat        *latency
	latErr     string // a latency run that could not be measured, and why
}

// cells lays out the section: loopback first, then each placement at each RTT.
func (p wanPlan) cells() []wanCell {
	cells := []wanCell{{path: wanPath{}}}
	for i := range p.placements {
		for _, rtt := range p.rtts {
			cells = append(cells, wanCell{path: wanPath{placement: &p.placements[i], rtt: rtt}})
		}
	}
	for i := range cells {
		cells[i].runs = map[string]*wanContenderRun{}
		for _, c := range p.contenders {
			cells[i].runs[c.name] = &wanContenderRun{}
		}
	}
	return cells
}

// endpointsOf sets the RTT of the proxies in front of the path's remote cluster and returns the
// bootstrap servers a mirror on that path is given.
func (h *harness) endpointsOf(p wanPath) (endpoints, error) {
	at := h.direct()
	if p.placement == nil {
		return at, nil
	}
	link := h.links[p.placement.remote]
	if link == nil {
		return endpoints{}, fmt.Errorf("no latency proxy in front of %s", p.placement.remote)
	}
	if err := link.SetRTT(p.rtt); err != nil {
		return endpoints{}, err
	}
	if p.placement.remote == "europe" {
		at.source = link.Addrs()
	} else {
		at.target = link.Addrs()
	}
	return at, nil
}

// runWAN runs the WAN section: per round, on each path, franz-go alone on the side behind the
// WAN, then each contender's catch-up, in an order reversed from one path and round to the next
// (inTurn); then one latency run per path and contender at --wan-paced-rate, in turns too.
func (h *harness) runWAN(ctx context.Context, p wanPlan) ([]wanCell, error) {
	fmt.Printf("WAN section: preloading %d records into %q\n", p.records, wanTopic)
	load, err := h.preloadTopic(ctx, wanTopic, p.records)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, l := range h.links {
			_ = l.SetRTT(0)
		}
	}()
	cells := p.cells()
	for r := 0; r < p.rounds; r++ {
		for i := range cells {
			cell := &cells[i]
			at, err := h.endpointsOf(cell.path)
			if err != nil {
				return nil, err
			}
			if err := h.wanCeilings(ctx, cell, at, load, r); err != nil {
				return nil, fmt.Errorf("%s: franz-go alone: %w", cell.path, err)
			}
			for _, c := range inTurn(p.contenders, r+i) {
				profile := "-"
				if r == 0 {
					profile = "-wan-" + cell.path.String()
				}
				run := cell.runs[c.name]
				res, err := h.mirrorRun(ctx, c, catchUpRun{load: load, at: at, id: h.nextID(),
					logName: fmt.Sprintf("%s-wan-%s-%d.log", c.name, cell.path, r), profile: profile, timeout: p.timeout})
				var u *unfinishedError
				switch {
				case errors.As(err, &u):
					run.unfinished++
					fmt.Printf("WAN round %d %-14s %-16s did not finish in %s: %d of %d records (%.0f records/s so far)\n",
						r+1, cell.path, c.name, p.timeout, u.copied, u.of, res.steadyPerSec)
				case err != nil:
					return nil, fmt.Errorf("%s %s round %d: %w", c.name, cell.path, r+1, err)
				default:
					fmt.Printf("WAN round %d %-14s %-16s %8.0f records/s from the first record (%8.0f from start) %6.1f MB/s, total %s, peak RSS %d MiB, CPU %s\n",
						r+1, cell.path, c.name, res.steadyPerSec, res.recordsPerSec, res.steadyPerSec*float64(h.o.valueBytes)/1e6,
						res.total.Round(time.Millisecond), res.peakRSS>>20, res.cpu.Round(time.Millisecond))
				}
				run.results = append(run.results, res)
			}
		}
	}
	if p.pacedRate == 0 {
		return cells, nil
	}
	for i := range cells {
		cell := &cells[i]
		at, err := h.endpointsOf(cell.path)
		if err != nil {
			return nil, err
		}
		for _, c := range inTurn(p.contenders, i) {
			run := cell.runs[c.name]
			l, err := h.latencyRun(ctx, c, pacedRun{at: at, rate: p.pacedRate, d: p.pacedFor,
				topic: fmt.Sprintf("paced-wan-%s-%s", cell.path, c.name), id: h.nextID(),
				logName: fmt.Sprintf("%s-wan-%s-latency.log", c.name, cell.path), profile: "-paced-wan-" + cell.path.String()})
			switch {
			case err != nil:
				// One path's failure is a finding, not the end of the benchmark.
				run.latErr = err.Error()
				fmt.Printf("WAN latency %-14s %-16s at %d records/s: not measured: %v\n", cell.path, c.name, p.pacedRate, err)
			case l.behind:
				run.lat = &l
				fmt.Printf("WAN latency %-14s %-16s at %d records/s: fell behind; CPU mirror/source/target/harness %s\n", cell.path, c.name, p.pacedRate, l.cpu)
			default:
				run.lat = &l
				fmt.Printf("WAN latency %-14s %-16s at %d records/s: p50 %s p99 %s p99.9 %s (%d samples); mirror's part p99 %s; CPU mirror/source/target/harness %s\n",
					cell.path, c.name, p.pacedRate, l.p50.Round(100*time.Microsecond), l.p99.Round(100*time.Microsecond), l.p999.Round(100*time.Microsecond),
					l.samples, l.mirror.p99, l.cpu)
			}
		}
	}
	return cells, nil
}

// wanCeilings measures franz-go alone on the cell's path in round r: the consumer when the
// source is behind the WAN, the producer when the target is, both on loopback.
func (h *harness) wanCeilings(ctx context.Context, cell *wanCell, at endpoints, load preloaded, r int) error {
	remote := ""
	if cell.path.placement != nil {
		remote = cell.path.placement.remote
	}
	if remote != "us" {
		rate, err := h.nativeConsumerCeiling(ctx, at.source, load.topic, load.records)
		if err != nil {
			return err
		}
		cell.consume = append(cell.consume, rate)
	}
	if remote != "europe" {
		if err := h.restartTarget(); err != nil { // an empty target, as each mirror run gets
			return err
		}
		rate, err := h.nativeProducerCeiling(ctx, at.target, fmt.Sprintf("ceiling-wan-%d", r), load.records)
		if err != nil {
			return err
		}
		cell.produce = append(cell.produce, rate)
	}
	fmt.Printf("WAN round %d %-14s franz-go alone: consume %s, produce %s records/s\n", r+1, cell.path,
		rateOrDash(last(cell.consume, r)), rateOrDash(last(cell.produce, r)))
	return nil
}

// last is round r's value of a per-round series, 0 when that side was not measured.
func last(v []float64, r int) float64 {
	if len(v) <= r {
		return 0
	}
	return v[r]
}

func rateOrDash(v float64) string {
	if v <= 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
