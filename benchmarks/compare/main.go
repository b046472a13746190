// Command compare measures kmirror against Apache MirrorMaker 2, against a bare franz-go mirror
// (benchmarks/baremirror: franz-go's consumer feeding its producer, nothing else, the reference
// for what a Go client reaches on the machine), against a bare sarama mirror
// (benchmarks/baresarama: sarama's consumer group feeding its idempotent async producer, what
// sarama's high-level clients reach) and against the clusters' own ceiling (Kafka's producer and
// consumer performance tools, and franz-go, a client built for throughput), on the same real
// KRaft clusters in the same run, the contenders taking turns (A B, B A: inTurn) and reporting
// medians and ratios. Every mirror runs as a process of its own (the bare mirrors are built into
// the run's work directory first), so that its peak RSS and CPU are read from /proc alike.
//
// It starts the clusters with scripts/kafka/cluster.sh (on its fixed ports and state directory,
// or those of --port-base and --kafka-state), preloads the source with the workload, and gives
// each mirror run a freshly started target cluster. Results are printed and written as Markdown,
// with a chart and kmirror's profiles, under benchmarks/results/ (--out), and judged against
// the targets of the report and of issue 23's batch-level data path.
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
	flag.IntVar(&o.records, "records", 2_000_000, "records preloaded into the source")
	flag.IntVar(&o.valueBytes, "value-bytes", 1024, "value size")
	flag.IntVar(&o.partitions, "partitions", 12, "source partitions")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of the catch-up, the contenders' order reversed each round")
	flag.StringVar(&o.version, "kafka-version", "4.3.1", "Kafka version of the clusters and MirrorMaker 2")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one mirror run")
	flag.StringVar(&o.out, "out", "benchmarks/results", "directory for the Markdown report (relative to --root unless absolute)")
	flag.IntVar(&o.ceilingProducers, "ceiling-producers", 1, "parallel producer perf tool instances for the ceiling (on 2 cores, 8 JVMs reach less than 1)")
	flag.StringVar(&o.sourceCompression, "source-compression", "none", "compression of the preloaded source records: none, gzip, snappy, lz4 or zstd")
	flag.StringVar(&o.pacedRates, "paced-rates", "10000,25%,50%", "steady-state latency runs: records/s, or a share of kmirror's median catch-up rate (\"\" skips them)")
	flag.DurationVar(&o.pacedFor, "paced-for", 20*time.Second, "length of each latency run")
	flag.StringVar(&o.only, "only", "", "run only this contender ("+contenderNames()+") and no ceiling, write no report: for tuning")
	flag.StringVar(&o.contenders, "contenders", contenderNames(), "the contenders to measure, comma-separated")
	flag.StringVar(&o.wan.rtts, "rtts", "0,20,80", "round-trip times (ms) of the WAN section, through a latency proxy (\"\" skips the section)")
	flag.StringVar(&o.wan.placements, "placements", "near-target,near-source", "where the mirror runs in the WAN section: near-target (the source is remote: remote consume), near-source (the target is remote: remote produce)")
	flag.StringVar(&o.wan.contenders, "wan-contenders", "kmirror,bare,baresarama,mirrormaker2", "the contenders of the WAN section, comma-separated")
	flag.BoolVar(&o.wanOnly, "wan-only", false, "run the WAN section alone: no loopback catch-up rounds, ceilings or latency runs before it")
	flag.IntVar(&o.wan.records, "wan-records", 1_000_000, "records preloaded into the WAN section's own source topic")
	flag.IntVar(&o.wan.rounds, "wan-rounds", 1, "rounds of the WAN section (medians when more than 1)")
	flag.DurationVar(&o.wan.timeout, "wan-timeout", 5*time.Minute, "limit for one WAN catch-up run; a run past it is reported as not finished, with its rate so far")
	flag.IntVar(&o.wan.pacedRate, "wan-paced-rate", 10_000, "records/s of the WAN section's latency runs (0 skips them)")
	flag.DurationVar(&o.wan.pacedFor, "wan-paced-for", 15*time.Second, "length of each WAN latency run")
	flag.DurationVar(&o.profileFor, "profile-for", 5*time.Second, "length of the CPU profile of kmirror's first catch-up run (longer runs, --records, take longer profiles with more samples)")
	flag.IntVar(&o.portBase, "port-base", 0, "the clusters' ports: europe's node 1 at BASE+12, us's at BASE+112; kmirror's telemetry at BASE+300, MirrorMaker 2's REST server at BASE+301 (0: cluster.sh's 19012 and 29012, 19464, 18083), so that a run beside others' clusters does not collide")
	flag.StringVar(&o.kafkaState, "kafka-state", envOr("KMIRROR_KAFKA_STATE", "/tmp/kmirror-kafka"), "the clusters' state directory (cluster.sh's KMIRROR_KAFKA_STATE)")
	flag.StringVar(&o.javaLogLevel, "java-log-level", "", "log4j2 level of the Java tools and MirrorMaker 2 (e.g. INFO, to see its transactions in benchmarks/results/tmp/*-logs/); empty: their default")
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
	if o.portBase < 0 || o.portBase > 65535-400 {
		fmt.Fprintf(os.Stderr, "compare: --port-base %d: want 0 (the fixed ports) or a base up to %d\n", o.portBase, 65535-400)
		os.Exit(2)
	}
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
	contenders                      string
	javaLogLevel                    string
	sourceCompression               string
	pacedRates                      string
	ceilingProducers                int
	pacedFor                        time.Duration
	kmirrorSet                      []string
	kmirrorEnv                      []string
	wan                             wanOptions
	wanOnly                         bool
	portBase                        int
	kafkaState                      string
	profileFor                      time.Duration
}

// envOr is the environment variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// result is one timed run of one contender.
type result struct {
	name          string
	total, steady time.Duration // from start, and from the first record on the target
	peakRSS       int64         // bytes
	cpu           time.Duration // user + system
	// sourceCPU and targetCPU are what the source and target brokers (node 1 of each) used from
	// the mirror's start to the end of the run: work the mirror's requests cost the brokers.
	sourceCPU, targetCPU time.Duration
	// busy is the share of all the machine's cores busy from the first record on the target to
	// the end (0 to 1): near 1, every process waited for a core; well below it, the mirror left
	// the machine idle.
	busy float64
	// batches are the record batches on the target after the run, and their bytes (read back,
	// untimed).
	batches       batchCount
	recordsPerSec float64
	steadyPerSec  float64
	mbPerSec      float64
	copied        int64   // records on the target at the end (all of them, unless the run hit its limit)
	series        []point // target count over time, for the chart
	// committed is what a read_committed consumer read back from the target after an
	// exactly-once run (-1: not read); txnIDs the transactional ids on the target then.
	committed int64
	txnIDs    int
}

func run(ctx context.Context, o options) error {
	cs, err := selectContenders(o.contenders, o.only)
	if err != nil {
		return err
	}
	rates, err := parsePacedRates(o.pacedRates)
	if err != nil {
		return err
	}
	plan, err := o.wan.plan()
	if err != nil {
		return err
	}
	switch {
	case o.only != "":
		plan = wanPlan{} // a tuning run: the contender alone
	case o.wanOnly && !plan.enabled():
		return fmt.Errorf("--wan-only: the WAN section is off (--rtts or --placements is empty)")
	}
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	h.remote = plan.enabled()
	stamp := time.Now().UTC().Format("2006-01-02T1504")
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(o.root, out)
	}
	h.profileDir = filepath.Join(out, stamp+"-profiles")
	if o.only != "" {
		h.profileDir = filepath.Join(out, "tmp", stamp+"-profiles") // git-ignored
	}
	h.logDir = filepath.Join(out, "tmp", stamp+"-logs") // git-ignored
	for _, d := range []string{h.profileDir, h.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := h.buildPrograms(ctx, append(append([]contender(nil), cs...), plan.contenders...)); err != nil {
		return err
	}
	if err := h.start(ctx); err != nil {
		return err
	}
	var report string
	figures := runFigures{valueBytes: o.valueBytes}
	if o.wanOnly {
		report = wanHeader(o)
	} else {
		if report, err = h.runMain(ctx, cs, rates, stamp, out, &figures); err != nil {
			return err
		}
		if o.only != "" {
			return nil // a tuning run: no report
		}
	}
	if plan.enabled() {
		cells, err := h.runWAN(ctx, plan)
		if err != nil {
			return fmt.Errorf("WAN section: %w", err)
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		wanPNG := filepath.Join(out, stamp+"-wan.png")
		if err := wanChart(wanPNG, plan, cells); err != nil {
			return err
		}
		report += wanReport(o, plan, cells, filepath.Base(wanPNG))
		report += fmt.Sprintf("\nkmirror's CPU, heap and allocation profiles in the WAN section's first round (`kmirror-*-wan-PATH.pprof`) and its paced runs (`kmirror-*-paced-wan-PATH.pprof`): `%s/`.\n",
			filepath.Base(h.profileDir))
		figures.wan, figures.cells = plan, cells
	}
	report += dataPathTargets(figures)
	fmt.Println(report)
	path := filepath.Join(out, stamp+".md")
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Println("report written to", path)
	return nil
}

// runMain runs the catch-up rounds (ceilings, then each contender) and the latency runs on
// loopback, and returns their part of the report with its chart written under out ("" for a
// tuning run, --only); fig receives what they measured.
func (h *harness) runMain(ctx context.Context, cs []contender, rates []pacedRate, stamp, out string, fig *runFigures) (string, error) {
	o := h.o
	fmt.Printf("preloading %d records of %d random bytes (keys, 2 headers) into %d partitions, compression %s\n",
		o.records, o.valueBytes, o.partitions, o.sourceCompression)
	if err := h.preload(ctx); err != nil {
		return "", err
	}
	// Each round measures the ceilings too, so they get medians like the mirrors: on a noisy
	// machine one ceiling sample moved by a quarter between runs.
	var ceilRounds []ceilings
	results := map[string][]result{} // by contender name
	for r := 0; r < o.rounds; r++ {
		if o.only == "" {
			c, err := h.measureCeilings(ctx, r)
			if err != nil {
				return "", fmt.Errorf("ceiling round %d: %w", r+1, err)
			}
			fmt.Printf("round %d ceiling: into the target %.0f records/s (%d producer perf tools) and %.0f (franz-go); from the source %.0f (consumer perf tool) and %.0f (franz-go)\n",
				r+1, c.perfProducer, o.ceilingProducers, c.nativeProducer, c.perfConsumer, c.nativeConsumer)
			ceilRounds = append(ceilRounds, c)
		}
		for _, c := range inTurn(cs, r) {
			profile := "-" // kmirror's first run is profiled
			if r == 0 {
				profile = ""
			}
			res, err := h.mirrorRun(ctx, c, catchUpRun{load: h.main, at: h.direct(), id: r,
				logName: fmt.Sprintf("%s-%d.log", c.name, r), profile: profile, timeout: o.timeout})
			if err != nil {
				return "", fmt.Errorf("%s round %d: %w", c.name, r+1, err)
			}
			readBack := ""
			if res.committed >= 0 {
				readBack = fmt.Sprintf(", read back with read_committed: %d records, %d transactional ids", res.committed, res.txnIDs)
			}
			fmt.Printf("round %d %-16s %8.0f records/s (steady %8.0f) %6.1f MB/s, total %s, peak RSS %d MiB, CPU %s%s\n",
				r+1, c.name, res.recordsPerSec, res.steadyPerSec, res.mbPerSec, res.total.Round(time.Millisecond),
				res.peakRSS>>20, res.cpu.Round(time.Millisecond), readBack)
			results[c.name] = append(results[c.name], res)
		}
	}
	var lats []latency
	catchUp := median(results["kmirror"], func(r result) float64 { return r.recordsPerSec })
	if err := h.settle(ctx, cs, rates, catchUp); err != nil {
		return "", err
	}
	for i, pr := range rates {
		rate := pr.resolve(catchUp)
		if rate <= 0 {
			fmt.Printf("latency at %s skipped: kmirror's (at-least-once) catch-up rate was not measured in this run\n", pr)
			continue
		}
		for _, c := range inTurn(cs, i) {
			l, err := h.latencyRun(ctx, c, pacedRun{at: h.direct(), rate: rate, d: o.pacedFor,
				topic: fmt.Sprintf("paced-%s-%d", c.name, rate), id: h.nextID(),
				logName: fmt.Sprintf("%s-latency-%d.log", c.name, rate), profile: fmt.Sprintf("-paced-%d", rate)})
			if err != nil {
				return "", fmt.Errorf("%s latency at %d records/s: %w", c.name, rate, err)
			}
			l.of = pr
			lats = append(lats, l)
			if l.behind {
				fmt.Printf("latency %-16s at %d records/s (%s): fell behind, no measured record arrived within the run; CPU mirror/source/target/harness %s\n",
					c.name, rate, pr, l.cpu)
				continue
			}
			fmt.Printf("latency %-16s at %d records/s (%s): p50 %s p99 %s p99.9 %s max %s (%d samples); mirror's part p50 %s p99 %s; source side p99 %s; CPU mirror/source/target/harness %s\n",
				c.name, rate, pr, l.p50.Round(time.Microsecond*100), l.p99.Round(time.Microsecond*100), l.p999.Round(time.Microsecond*100),
				l.max.Round(time.Millisecond), l.samples, l.mirror.p50, l.mirror.p99, l.sourceSide.p99.Round(time.Millisecond), l.cpu)
		}
	}
	fig.catchUp, fig.lats = results, lats
	if o.only != "" {
		return "", nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	report := h.report(cs, results, medianCeilings(ceilRounds)) + latencyReport(o, lats)
	png := filepath.Join(out, stamp+".png")
	firstRuns := map[string][]point{}
	for name, rs := range results {
		firstRuns[name] = rs[0].series
	}
	if err := chart(png, firstRuns); err != nil {
		return "", err
	}
	report += fmt.Sprintf("\n![records on the target over time, round 1](%s)\n\nCPU, heap and allocation profiles of kmirror (at-least-once: `kmirror-*`, exactly-once: `kmirror-eos-*`) in its first catch-up run and in each paced run: `%s/` (`go tool pprof -top bin/kmirror FILE`).\n",
		filepath.Base(png), filepath.Base(h.profileDir))
	return report, nil
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
