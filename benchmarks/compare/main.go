// Command compare measures kmirror against Apache MirrorMaker 2 and against the clusters' own
// ceiling (Kafka's producer and consumer performance tools, and franz-go, a client built for
// throughput), on the same real KRaft clusters in the same run, alternating the contenders
// (A B A B) and reporting medians and ratios.
//
// It starts the clusters with scripts/kafka/cluster.sh, preloads the source with the workload,
// and gives each mirror run a freshly started target cluster. Results are printed and written as
// Markdown, with a chart and kmirror's profiles, under benchmarks/results/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.IntVar(&o.records, "records", 2_000_000, "records preloaded into the source")
	flag.IntVar(&o.valueBytes, "value-bytes", 1024, "value size")
	flag.IntVar(&o.partitions, "partitions", 12, "source partitions")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of A B alternation")
	flag.StringVar(&o.version, "kafka-version", "4.3.1", "Kafka version of the clusters and MirrorMaker 2")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one mirror run")
	flag.StringVar(&o.out, "out", "benchmarks/results", "directory for the Markdown report")
	flag.IntVar(&o.ceilingProducers, "ceiling-producers", 1, "parallel producer perf tool instances for the ceiling (on 2 cores, 8 JVMs reach less than 1)")
	flag.StringVar(&o.sourceCompression, "source-compression", "none", "compression of the preloaded source records: none, gzip, snappy, lz4 or zstd")
	flag.StringVar(&o.pacedRates, "paced-rates", "10000,25%,50%", "steady-state latency runs: records/s, or a share of kmirror's median catch-up rate (\"\" skips them)")
	flag.DurationVar(&o.pacedFor, "paced-for", 20*time.Second, "length of each latency run")
	flag.StringVar(&o.only, "only", "", "run only this contender (kmirror or mirrormaker2) and no ceiling, write no report: for tuning")
	flag.Func("kmirror-set", "a kmirror setting for the runs, key=value (repeatable)", func(v string) error {
		o.kmirrorSet = append(o.kmirrorSet, v)
		return nil
	})
	flag.Func("kmirror-env", "an environment variable for the kmirror process only, e.g. GOGC=200 (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q: want NAME=value", v)
		}
		o.kmirrorEnv = append(o.kmirrorEnv, v)
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
	sourceCompression               string
	pacedRates                      string
	ceilingProducers                int
	pacedFor                        time.Duration
	kmirrorSet                      []string
	kmirrorEnv                      []string
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
	h.profileDir = filepath.Join(o.root, o.out, stamp+"-profiles")
	if o.only != "" {
		h.profileDir = filepath.Join(o.root, o.out, "tmp", stamp+"-profiles") // git-ignored
	}
	if err := os.MkdirAll(h.profileDir, 0o755); err != nil {
		return err
	}
	rates, err := parsePacedRates(o.pacedRates)
	if err != nil {
		return err
	}
	if err := h.start(ctx); err != nil {
		return err
	}
	fmt.Printf("preloading %d records of %d random bytes (keys, 2 headers) into %d partitions, compression %s\n",
		o.records, o.valueBytes, o.partitions, o.sourceCompression)
	if err := h.preload(ctx); err != nil {
		return err
	}
	// Each round measures the ceilings too, so they get medians like the mirrors: on a noisy
	// machine one ceiling sample moved by a quarter between runs.
	var ceilRounds []ceilings
	var km, mm []result
	for r := 0; r < o.rounds; r++ {
		if o.only == "" {
			c, err := h.measureCeilings(ctx, r)
			if err != nil {
				return fmt.Errorf("ceiling round %d: %w", r+1, err)
			}
			fmt.Printf("round %d ceiling: into the target %.0f records/s (%d producer perf tools) and %.0f (franz-go); from the source %.0f (consumer perf tool) and %.0f (franz-go)\n",
				r+1, c.perfProducer, o.ceilingProducers, c.nativeProducer, c.perfConsumer, c.nativeConsumer)
			ceilRounds = append(ceilRounds, c)
		}
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
	var lats []latency
	catchUp := median(km, func(r result) float64 { return r.recordsPerSec })
	for _, pr := range rates {
		rate := pr.resolve(catchUp)
		if rate <= 0 {
			fmt.Printf("latency at %s skipped: kmirror's catch-up rate was not measured in this run\n", pr)
			continue
		}
		for _, contender := range []string{"kmirror", "mirrormaker2"} {
			if o.only != "" && o.only != contender {
				continue
			}
			l, err := h.latencyRun(ctx, contender, rate, o.pacedFor)
			if err != nil {
				return fmt.Errorf("%s latency at %d records/s: %w", contender, rate, err)
			}
			if l.behind {
				fmt.Printf("latency %-12s at %d records/s (%s): fell behind, no measured record arrived within the run; CPU mirror/source/target/harness %s\n",
					contender, rate, pr, l.cpu)
				lats = append(lats, l)
				continue
			}
			fmt.Printf("latency %-12s at %d records/s (%s): p50 %s p99 %s p99.9 %s max %s (%d samples); mirror's part p50 %s p99 %s; source side p99 %s; CPU mirror/source/target/harness %s\n",
				contender, rate, pr, l.p50.Round(time.Microsecond*100), l.p99.Round(time.Microsecond*100), l.p999.Round(time.Microsecond*100),
				l.max.Round(time.Millisecond), l.samples, l.mirror.p50, l.mirror.p99, l.sourceSide.p99.Round(time.Millisecond), l.cpu)
			lats = append(lats, l)
		}
	}
	if o.only != "" {
		return nil // a tuning run: no report
	}
	report := h.report(km, mm, medianCeilings(ceilRounds)) + latencyReport(o, lats)
	fmt.Println(report)
	if err := os.MkdirAll(filepath.Join(o.root, o.out), 0o755); err != nil {
		return err
	}
	png := filepath.Join(o.root, o.out, stamp+".png")
	if err := chart(png, map[string][]point{"kmirror": km[0].series, "mirrormaker2": mm[0].series}); err != nil {
		return err
	}
	report += fmt.Sprintf("\n![records on the target over time, round 1](%s)\n\nCPU, heap and allocation profiles of kmirror in its first catch-up run and in each paced run: `%s/` (`go tool pprof -top bin/kmirror FILE`).\n",
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
	return medianOf(v)
}

// medianOf returns the median of v (0 for none); it sorts v.
func medianOf(v []float64) float64 {
	sort.Float64s(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (h *harness) report(km, mm []result, c ceilings) string {
	o := h.o
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# kmirror vs MirrorMaker 2 — %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s. Kafka %s, one KRaft node per cluster on loopback, both clusters, both mirrors and the harness on the same machine. "+
		"Workload: %d records, %d-byte random values (incompressible), keys, 2 headers, %d partitions, preloaded with compression %s. "+
		"%d rounds, each measuring the ceilings, then kmirror, then MirrorMaker 2; medians below. Both mirrors: acks=all, idempotent, linger 5 ms, 1 MiB batches, no compression; "+
		"MirrorMaker 2 (connect-mirror %s) in dedicated mode with tasks.max = %d and the JVM heap its start script sets (-Xmx2g). kmirror: default settings%s.\n\n",
		host, numCPU(), runtime.Version(), o.version, o.records, o.valueBytes, o.partitions, o.sourceCompression, o.rounds, o.version, o.partitions, kmirrorSettings(o))
	mb := float64(o.records*o.valueBytes) / 1e6
	mbs := func(rps float64) float64 { return rps * float64(o.valueBytes) / 1e6 }
	row := func(name string, rs []result) {
		rps := median(rs, func(r result) float64 { return r.recordsPerSec })
		steady := median(rs, func(r result) float64 { return r.steadyPerSec })
		rss := median(rs, func(r result) float64 { return float64(r.peakRSS) }) / (1 << 20)
		cpu := median(rs, func(r result) float64 { return r.cpu.Seconds() })
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.0f | %.0f | %.1f |\n", name, rps, mbs(rps), steady, rss, cpu/(mb/1000))
	}
	b.WriteString("| contender | records/s (from start) | MB/s | records/s (from first record) | peak RSS MiB | CPU s per GB |\n|---|---|---|---|---|---|\n")
	row("kmirror", km)
	row("MirrorMaker 2", mm)
	ceilRow := func(name string, rps float64) {
		fmt.Fprintf(&b, "| ceiling: %s | %.0f | %.1f | | | |\n", name, rps, mbs(rps))
	}
	ceilRow(fmt.Sprintf("%d producer perf tool(s) → target", o.ceilingProducers), c.perfProducer) // medians of the rounds
	ceilRow("franz-go producer → target", c.nativeProducer)
	ceilRow("consumer perf tool ← source", c.perfConsumer)
	ceilRow("franz-go consumer ← source", c.nativeConsumer)
	b.WriteString("\n")
	kr := median(km, func(r result) float64 { return r.recordsPerSec })
	ks := median(km, func(r result) float64 { return r.steadyPerSec })
	mr := median(mm, func(r result) float64 { return r.recordsPerSec })
	krss := median(km, func(r result) float64 { return float64(r.peakRSS) })
	mrss := median(mm, func(r result) float64 { return float64(r.peakRSS) })
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(&b, "| target | measured (medians) | |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| catch-up throughput ≥ 2× MirrorMaker 2 | %.2f× | %s |\n", kr/mr, verdict(kr/mr >= 2))
	fmt.Fprintf(&b, "| catch-up throughput ≥ 80%% of the ceiling (%.0f records/s: the slower of the best producer and the best consumer) | %.0f%% from start, %.0f%% from the first record | %s |\n",
		c.ceiling(), 100*kr/c.ceiling(), 100*ks/c.ceiling(), verdict(kr/c.ceiling() >= 0.8))
	fmt.Fprintf(&b, "| peak RSS ≤ 1/10 of MirrorMaker 2's | %.3f (%.0f vs %.0f MiB) | %s |\n\n", krss/mrss, krss/(1<<20), mrss/(1<<20), verdict(krss/mrss <= 0.1))
	b.WriteString("Each run starts from a freshly started target cluster; \"from start\" includes process start-up and the consumer group join, \"from first record\" does not. " +
		"A ceiling is one client doing one side alone; a mirror does both sides at once on the same two cores as both brokers, so 100% is out of reach by construction. " +
		"The machines are noisy: compare ratios within one report, not absolute numbers across reports.\n")
	return b.String()
}

func kmirrorSettings(o options) string {
	changed := append(append([]string(nil), o.kmirrorSet...), o.kmirrorEnv...)
	if len(changed) == 0 {
		return ""
	}
	return " but " + strings.Join(changed, ", ")
}

func latencyReport(o options, lats []latency) string {
	if len(lats) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Steady-state latency\n\nEnd to end: the target broker's append time of each copy (the target topic is `message.timestamp.type=LogAppendTime`) minus the original's create time on the source (carried in a header), over %s of paced production after a %s warm-up; 1 ms resolution (append times are milliseconds). "+
		"The source topic is LogAppendTime too, so each record's latency splits into the source side (create → source append: the paced producer and the source broker, no mirror involved) and the mirror's part (source append → target append). The last column is the CPU each process used while the stream was measured, in %% of one core (mirror / source broker / target broker / this harness: paced producer and measuring consumers); a sum near %d%% means the machine was saturated and every process, the brokers included, waited for a core. Target: end-to-end p99 < 50 ms.\n\n"+
		"| contender | rate (records/s) | p50 | p99 | p99.9 | max | mirror's part p50 / p99 / p99.9 | source side p99 | samples | p99 < 50 ms | CPU %% mirror / source / target / harness |\n|---|---|---|---|---|---|---|---|---|---|---|\n", o.pacedFor, warmUp, 100*numCPU())
	for _, l := range lats {
		if l.behind {
			fmt.Fprintf(&b, "| %s | %d | fell behind: no measured record reached the target within the run | | | | | | 0 | **missed** | %s |\n", l.name, l.rate, l.cpu)
			continue
		}
		ok := "met"
		if l.p99 >= 50*time.Millisecond {
			ok = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f ms | %.1f ms | %.1f ms | %.0f ms | %.0f / %.0f / %.0f ms | %.0f ms | %d | %s | %s |\n", l.name, l.rate, ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max),
			ms(l.mirror.p50), ms(l.mirror.p99), ms(l.mirror.p999), ms(l.sourceSide.p99), l.samples, ok, l.cpu)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
