// Command compare measures kmirror against Apache MirrorMaker 2 and against the clusters' own
// ceiling (Kafka's producer and consumer performance tools), on the same real KRaft clusters in
// the same run, alternating the contenders (A B A B) and reporting medians and ratios.
//
// It starts the clusters with scripts/kafka/cluster.sh, preloads the source with the workload,
// and gives each mirror run a freshly started target cluster. Results are printed and written as
// Markdown under benchmarks/results/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.IntVar(&o.records, "records", 1_000_000, "records preloaded into the source")
	flag.IntVar(&o.valueBytes, "value-bytes", 1024, "value size")
	flag.IntVar(&o.partitions, "partitions", 12, "source partitions")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of A B alternation")
	flag.StringVar(&o.version, "kafka-version", "4.3.1", "Kafka version of the clusters and MirrorMaker 2")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one mirror run")
	flag.StringVar(&o.out, "out", "benchmarks/results", "directory for the Markdown report")
	flag.IntVar(&o.ceilingProducers, "ceiling-producers", 1, "parallel producer perf tool instances for the ceiling (on 2 cores, 8 JVMs reach less than 1)")
	flag.IntVar(&o.pacedRate, "paced-rate", 10_000, "records/s of the steady-state latency run (0 skips it)")
	flag.DurationVar(&o.pacedFor, "paced-for", 20*time.Second, "length of the latency run")
	flag.StringVar(&o.only, "only", "", "run only this contender (kmirror or mirrormaker2), e.g. while tuning")
	flag.Func("kmirror-set", "a kmirror setting for the runs, key=value (repeatable)", func(v string) error {
		o.kmirrorSet = append(o.kmirrorSet, v)
		return nil
	})
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type options struct {
	root                            string
	records, valueBytes, partitions int
	rounds                          int
	version                         string
	timeout                         time.Duration
	out                             string
	only                            string
	pacedRate                       int
	ceilingProducers                int
	pacedFor                        time.Duration
	kmirrorSet                      []string
}

// result is one timed run of one contender.
type result struct {
	name          string
	total, steady time.Duration // from start, and from the first record on the target
	peakRSS       int64         // bytes
	cpu           time.Duration // user + system
	recordsPerSec float64
	steadyPerSec  float64
	mbPerSec      float64
	series        []point // target count over time, for the chart
}

func run(ctx context.Context, o options) error {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	stamp := time.Now().UTC().Format("2006-01-02T1504")
	if o.only == "" {
		h.profileDir = filepath.Join(o.root, o.out, stamp+"-profiles")
		if err := os.MkdirAll(h.profileDir, 0o755); err != nil {
			return err
		}
	}
	if err := h.start(ctx); err != nil {
		return err
	}
	fmt.Printf("preloading %d records of %d bytes (keys, 2 headers) into %d partitions\n", o.records, o.valueBytes, o.partitions)
	if err := h.preload(ctx); err != nil {
		return err
	}
	ceilingProduce, err := h.producerCeiling(ctx)
	if err != nil {
		return err
	}
	ceilingConsume, err := h.consumerCeiling(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("ceiling: %d producer perf tools %.0f records/s into the target, consumer perf tool %.0f records/s from the source\n",
		o.ceilingProducers, ceilingProduce, ceilingConsume)

	var km, mm []result
	for r := 0; r < o.rounds; r++ {
		for _, contender := range []string{"kmirror", "mirrormaker2"} {
			if o.only != "" && o.only != contender {
				continue
			}
			res, err := h.mirrorRun(ctx, contender, r)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", contender, r+1, err)
			}
			fmt.Printf("round %d %-12s %8.0f records/s (steady %8.0f) %6.1f MB/s, total %s, peak RSS %d MiB, CPU %s\n",
				r+1, contender, res.recordsPerSec, res.steadyPerSec, res.mbPerSec, res.total.Round(time.Millisecond),
				res.peakRSS>>20, res.cpu.Round(time.Millisecond))
			if contender == "kmirror" {
				km = append(km, res)
			} else {
				mm = append(mm, res)
			}
		}
	}
	if o.only != "" {
		return nil // a tuning run: no report
	}
	var lats []latency
	if o.pacedRate > 0 {
		for _, contender := range []string{"kmirror", "mirrormaker2"} {
			l, err := h.latencyRun(ctx, contender, o.pacedRate, o.pacedFor)
			if err != nil {
				return fmt.Errorf("%s latency: %w", contender, err)
			}
			fmt.Printf("latency %-12s at %d records/s: p50 %s p99 %s p99.9 %s (%d samples)\n", contender, o.pacedRate,
				l.p50.Round(time.Microsecond*100), l.p99.Round(time.Microsecond*100), l.p999.Round(time.Microsecond*100), l.samples)
			lats = append(lats, l)
		}
	}
	report := h.report(km, mm, ceilingProduce, ceilingConsume) + latencyReport(o, lats)
	fmt.Println(report)
	if err := os.MkdirAll(filepath.Join(o.root, o.out), 0o755); err != nil {
		return err
	}
	png := filepath.Join(o.root, o.out, stamp+".png")
	if err := chart(png, map[string][]point{"kmirror": km[0].series, "mirrormaker2": mm[0].series}); err != nil {
		return err
	}
	report += fmt.Sprintf("\n![records on the target over time, round 1](%s)\n\nCPU, heap and allocation profiles of kmirror's first run: `%s/` (`go tool pprof -top bin/kmirror FILE`).\n",
		filepath.Base(png), filepath.Base(h.profileDir))
	path := filepath.Join(o.root, o.out, stamp+".md")
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Println("report written to", path)
	return nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (h *harness) report(km, mm []result, ceilP, ceilC float64) string {
	o := h.o
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# kmirror vs MirrorMaker 2 — %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs. Kafka %s, one KRaft node per cluster on loopback. Workload: %d records, %d-byte values, keys, 2 headers, %d partitions, preloaded. %d rounds, alternating kmirror and MirrorMaker 2; medians below. Both mirrors: acks=all, linger 5 ms, 1 MiB batches, no compression; MirrorMaker 2 in dedicated mode with tasks.max = %d.\n\n",
		host, numCPU(), o.version, o.records, o.valueBytes, o.partitions, o.rounds, o.partitions)
	mb := float64(o.records*o.valueBytes) / 1e6
	row := func(name string, rs []result) {
		rps := median(rs, func(r result) float64 { return r.recordsPerSec })
		steady := median(rs, func(r result) float64 { return r.steadyPerSec })
		rss := median(rs, func(r result) float64 { return float64(r.peakRSS) }) / (1 << 20)
		cpu := median(rs, func(r result) float64 { return r.cpu.Seconds() })
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.0f | %.0f | %.1f |\n", name, rps, rps*float64(o.valueBytes)/1e6, steady, rss, cpu/(mb/1000))
	}
	b.WriteString("| contender | records/s (from start) | MB/s | records/s (from first record) | peak RSS MiB | CPU s per GB |\n|---|---|---|---|---|---|\n")
	row("kmirror", km)
	row("MirrorMaker 2", mm)
	fmt.Fprintf(&b, "| ceiling: %d producer perf tools → target | %.0f | %.1f | | | |\n", o.ceilingProducers, ceilP, ceilP*float64(o.valueBytes)/1e6)
	fmt.Fprintf(&b, "| ceiling: consumer perf tool ← source | %.0f | %.1f | | | |\n\n", ceilC, ceilC*float64(o.valueBytes)/1e6)
	kr := median(km, func(r result) float64 { return r.recordsPerSec })
	mr := median(mm, func(r result) float64 { return r.recordsPerSec })
	ceil := min(ceilP, ceilC)
	krss := median(km, func(r result) float64 { return float64(r.peakRSS) })
	mrss := median(mm, func(r result) float64 { return float64(r.peakRSS) })
	fmt.Fprintf(&b, "Ratios (medians): kmirror / MirrorMaker 2 = **%.2f×** throughput (target ≥ 2×); kmirror / ceiling = **%.0f%%** (target ≥ 80%%; ceiling = the slower of the two perf tools); peak RSS kmirror / MirrorMaker 2 = **%.2f** (target ≤ 0.10).\n\n",
		kr/mr, 100*kr/ceil, krss/mrss)
	b.WriteString("Each run starts from a freshly started target cluster; \"from start\" includes process start-up and the consumer group join, \"from first record\" does not. The machines are noisy: compare ratios within one report, not absolute numbers across reports.\n")
	return b.String()
}

func latencyReport(o options, lats []latency) string {
	if len(lats) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Steady-state latency at %d records/s\n\nTarget consumer's receive time minus the record's create time on the source (both mirrors copy timestamps), after a warm-up, over %s of paced production (p50 target: none; p99 target < 50 ms).\n\n| contender | p50 | p99 | p99.9 | samples |\n|---|---|---|---|---|\n", o.pacedRate, o.pacedFor)
	for _, l := range lats {
		fmt.Fprintf(&b, "| %s | %.1f ms | %.1f ms | %.1f ms | %d |\n", l.name, ms(l.p50), ms(l.p99), ms(l.p999), l.samples)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
