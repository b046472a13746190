package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/owned"
)

func runScale(o options) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "kmirror-scale-")
	if err != nil {
		return err
	}
	var rep strings.Builder
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		fmt.Fprintln(os.Stderr, line)
	}
	row := func(what, value, target string) { fmt.Fprintf(&rep, "| %s | %s | %s |\n", what, value, target) }

	say("starting the clusters (one node each, heap %s)", o.heap)
	cl, err := upClusters(o.heap, o.keep, o.at)
	if err != nil {
		return err
	}
	defer cl.down()
	srcCl, err := kgo.NewClient(kgo.SeedBrokers(cl.src...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return err
	}
	defer srcCl.Close()
	dstCl, err := kgo.NewClient(kgo.SeedBrokers(cl.dst...))
	if err != nil {
		return err
	}
	defer dstCl.Close()
	srcAdm, dstAdm := kadm.NewClient(srcCl), kadm.NewClient(dstCl)

	topics := topicNames("scale", o.topics)
	parts := o.topics * o.partitions
	t := time.Now()
	if err := createTopics(ctx, srcAdm, topics, o.partitions); err != nil {
		return err
	}
	say("created %d source topics × %d partitions in %s", o.topics, o.partitions, time.Since(t).Round(time.Second))
	// Freshly created topics can show fewer partitions in the producer's first metadata: write
	// again to the partitions still empty until every one has its record.
	var empty []kadm.ListedOffset
	for try := 0; try < 30; try++ {
		if try == 0 {
			for _, name := range topics {
				for p := 0; p < o.partitions; p++ {
					empty = append(empty, kadm.ListedOffset{Topic: name, Partition: int32(p)})
				}
			}
		}
		for _, e := range empty {
			srcCl.Produce(ctx, &kgo.Record{Topic: e.Topic, Partition: e.Partition, Value: []byte(fmt.Sprintf("seed %s/%d", e.Topic, e.Partition))}, nil)
		}
		if err := srcCl.Flush(ctx); err != nil {
			return fmt.Errorf("write the seed records: %w", err)
		}
		empty = emptyPartitions(ctx, srcAdm, topics)
		if len(empty) == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	if len(empty) > 0 {
		return fmt.Errorf("%d of %d source partitions still without a record", len(empty), parts)
	}
	// How long the source broker took to take a record in every partition of topics just created
	// (100 per request): its own pace at putting that many new partitions in place, which bounds
	// kmirror's start on the target broker too, and moves with the machine's load.
	sourceReady := time.Since(t)
	say("one record in each of the %d source partitions, %s after their creation began", parts, sourceReady.Round(time.Second))

	cfg := filepath.Join(work, "kmirror.yaml")
	body := fmt.Sprintf(`source: {alias: src, bootstrap: [%s]}
target: {alias: dst, bootstrap: [%s]}
topics: {include: ["scale\\..*"], replication_factor: 1}
telemetry: {listen: %q, pprof: true, sarama_metrics: true}
log: {format: json}
`, strings.Join(cl.src, ", "), strings.Join(cl.dst, ", "), o.at.metrics)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	profiles := strings.TrimSuffix(o.out, ".md") + "-profiles"
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		return err
	}
	k, err := startKmirror(o.spawn, o.bin, cfg, filepath.Join(work, "kmirror.log"), o.at.metrics, o.set, o.env)
	if err != nil {
		return err
	}
	defer func() {
		if k.alive() == nil {
			owned.Kill(k.cmd)
		}
	}()
	pid := k.cmd.Process.Pid
	sw := watchStart(o.at.metrics, profiles, k.started)

	// All flowing: every target partition has its record.
	var flowing, created time.Duration
	deadline := time.Now().Add(15 * time.Minute)
	for {
		if err := k.alive(); err != nil {
			return err
		}
		_, n := endOffsets(ctx, dstAdm, topics)
		if created == 0 {
			td, err := dstAdm.ListTopics(ctx, topics...)
			there := 0
			if err == nil {
				for _, d := range td {
					if d.Err == nil {
						there++
					}
				}
			}
			if there == o.topics {
				created = time.Since(k.started)
			}
			sw.mark(there, n)
		} else {
			sw.mark(o.topics, n)
		}
		if n == parts {
			flowing = time.Since(k.started)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d target partitions had a record 15m after kmirror's start", n, parts)
		}
		time.Sleep(time.Second)
	}
	timeline := sw.finish()
	// What the fetches of the start did: a full fetch opens each session, and one opened again
	// (after an error, or a set that shrank) names every partition at once.
	var startFetches string
	if _, _, body, err := scrape(o.at.metrics); err == nil {
		startFetches = fmt.Sprintf("%.0f full (opening a session), %.0f incremental; %.0f partitions named; errors: %.0f refused, %.0f unanswered",
			sample(body, "kmirror_fetch_requests_total", `session="new"`), sample(body, "kmirror_fetch_requests_total", `session="incremental"`),
			sample(body, "kmirror_fetch_partitions_named_total"),
			sample(body, "kmirror_fetch_errors_total", `kind="refused"`), sample(body, "kmirror_fetch_errors_total", `kind="unanswered"`))
	}
	rss, hwm := memory(pid)
	say("all %d partitions flowing %s after start (target topics all there at %s); RSS %s, HWM %s",
		parts, flowing.Round(100*time.Millisecond), created.Round(time.Second), mib(rss), mib(hwm))

	fmt.Fprintf(&rep, "# kmirror at scale: %d topics × %d partitions in one process — %s\n\n", o.topics, o.partitions,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&rep, "Command: `%s` (make bench-scale).\n\n", commandLine())
	fmt.Fprintf(&rep, "Machine: %d CPUs, %s; Kafka 4.3.1, one KRaft node per cluster (heap %s), source and target on this machine. "+
		"kmirror with its defaults but for the topics, replication factor 1, and /metrics with pprof on%s%s.\n\n", runtime.NumCPU(), runtime.Version(), o.heap, settings(o.set), environment(o.env))
	fmt.Fprintln(&rep, "| measure | figure | target |")
	fmt.Fprintln(&rep, "|---|---|---|")
	row("time from start to all partitions flowing (each target partition has its record; kmirror creates the target topics)",
		flowing.Round(100*time.Millisecond).String(), "< 30 s")
	row("… of which, until every target topic existed", created.Round(time.Second).String(), "")
	row("… fetches from the source until then (kmirror_fetch_requests_total, _partitions_named_total, _errors_total)", startFetches, "")
	row("for comparison: the source broker, from creating the same topics (100 per request) to a record in every partition",
		sourceReady.Round(time.Second).String(), "")

	// Idle: wait for the commits and the first watcher rounds to settle, then measure.
	time.Sleep(15 * time.Second)
	say("idle: measuring CPU for %s", o.idle)
	_, _, before, err := scrape(o.at.metrics)
	if err != nil {
		return err
	}
	// The CPU profile covers the measured window itself, so that what it shows adds up to the
	// figure (and a collection or a metadata refresh inside the window is in both).
	idleStart := time.Now()
	profiled := make(chan string, 1)
	go func() { profiled <- profile(o.at.metrics, filepath.Join(profiles, "idle-cpu.pprof"), "cpu", o.idle) }()
	idle, idleSlices := cpuUse(o.idle, pid, cl.pids["scale-src"], cl.pids["scale-dst"])
	idleProfile := <-profiled
	rssIdle, _ := memory(pid)
	n, d, idleBody, err := scrape(o.at.metrics)
	if err != nil {
		return err
	}
	// Fetch requests the fetch loops sent, per second (kmirror_fetch_requests_total). Not
	// sarama's request meter: it is kept per connection and drops what a closed connection
	// counted, so across a reconnect its difference went negative (-0.8/s at the steady rate).
	fetches := (sample(idleBody, "kmirror_fetch_requests_total") - sample(before, "kmirror_fetch_requests_total")) /
		time.Since(idleStart).Seconds()
	say("idle CPU %.1f%% of a core (brokers %.0f%%, %.0f%%), %.1f fetches/s; RSS %s; scrape %d bytes in %s",
		100*idle[0], 100*idle[1], 100*idle[2], fetches, mib(rssIdle), n, d)
	_ = os.WriteFile(filepath.Join(work, "idle-metrics.txt"), idleBody, 0o644)
	idleHeap := profile(o.at.metrics, filepath.Join(profiles, "idle-heap.pprof"), "heap", 0)
	goroutines := profile(o.at.metrics, filepath.Join(profiles, "idle-goroutine.pprof"), "goroutine", 0)
	idleMem := memstats(idleBody)
	row("resident memory after the idle window (VmRSS)", mib(rssIdle), "< 1 GiB")
	row("… of which the Go runtime (from /metrics)", idleMem, "")
	row(fmt.Sprintf("CPU idle, %s without a record (CPU-seconds / wall)", o.idle), share(idle[0], idleSlices), "< 5%")
	row("… the source and target brokers meanwhile", fmt.Sprintf("%.0f%%, %.0f%% of a core", 100*idle[1], 100*idle[2]), "")
	row("… fetch requests to the source meanwhile (kmirror_fetch_requests_total)", fmt.Sprintf("%.1f/s", fetches), "")
	row("/metrics scrape, idle", fmt.Sprintf("%.2f MiB in %s", float64(n)/(1<<20), d.Round(time.Millisecond)), "< 5 MiB")
	scrapeFamilies := seriesByFamily(idleBody)

	// Steady rate.
	say("steady: %d records/s over %d partitions for %s", o.rate, parts, o.steady)
	pctx, stopPace := context.WithCancel(ctx)
	written := make(chan int64, 1)
	srcBefore, _ := endOffsets(ctx, srcAdm, topics)
	paceStart := time.Now()
	go func() { written <- pace(pctx, srcCl, topics, o.partitions, o.rate) }()
	time.Sleep(10 * time.Second)
	_, _, steadyBefore, err := scrape(o.at.metrics)
	if err != nil {
		stopPace()
		return err
	}
	steadyStart := time.Now()
	go func() {
		profiled <- profile(o.at.metrics, filepath.Join(profiles, "steady-cpu.pprof"), "cpu", o.steady-10*time.Second)
	}()
	steady, steadySlices := cpuUse(o.steady-10*time.Second, pid, cl.pids["scale-src"], cl.pids["scale-dst"])
	steadyProfile := <-profiled
	rssSteady, _ := memory(pid)
	sn, sd, steadyBody, err := scrape(o.at.metrics)
	if err != nil {
		stopPace()
		return err
	}
	steadyFetches := (sample(steadyBody, "kmirror_fetch_requests_total") - sample(steadyBefore, "kmirror_fetch_requests_total")) /
		time.Since(steadyStart).Seconds()
	stopPace()
	w := <-written
	paced := time.Since(paceStart)
	srcSum, _ := endOffsets(ctx, srcAdm, topics)
	var dstSum int64
	caught := time.Now()
	for time.Since(caught) < 5*time.Minute {
		if dstSum, _ = endOffsets(ctx, dstAdm, topics); dstSum >= srcSum {
			break
		}
		time.Sleep(time.Second)
	}
	rate := float64(w) / paced.Seconds()
	say("steady CPU %.1f%% (brokers %.0f%%, %.0f%%), RSS %s, scrape %d bytes in %s; wrote %d (%.0f/s), source %d target %d",
		100*steady[0], 100*steady[1], 100*steady[2], mib(rssSteady), sn, sd, w, rate, srcSum-srcBefore, dstSum)
	_, hwmEnd := memory(pid)
	heapTop := profile(o.at.metrics, filepath.Join(profiles, "end-heap.pprof"), "heap", 0)
	row(fmt.Sprintf("CPU at a steady %.0f records/s (100-byte values) over all partitions", rate),
		share(steady[0], steadySlices), "")
	row("… the source and target brokers meanwhile", fmt.Sprintf("%.0f%%, %.0f%% of a core", 100*steady[1], 100*steady[2]), "")
	row("… fetch requests to the source meanwhile", fmt.Sprintf("%.1f/s", steadyFetches), "")
	row("resident memory at that rate (VmRSS); peak over the run (VmHWM)", fmt.Sprintf("%s; %s", mib(rssSteady), mib(hwmEnd)), "< 1 GiB")
	row("/metrics scrape at that rate", fmt.Sprintf("%.2f MiB in %s", float64(sn)/(1<<20), sd.Round(time.Millisecond)), "< 5 MiB")
	check := "every record on the target"
	if dstSum < srcSum {
		check = fmt.Sprintf("MISSING: target %d < source %d", dstSum, srcSum)
	}
	row("records on the source / on the target after the run", fmt.Sprintf("%d / %d (%s)", srcSum, dstSum, check), "equal")
	stopTook, stopErr := k.stop()
	stopNote := stopTook.Round(100 * time.Millisecond).String()
	if stopErr != nil {
		stopNote += " (" + stopErr.Error() + ")"
	}
	row("clean stop (SIGTERM to exit)", stopNote, "")
	_ = hwm

	fmt.Fprintf(&rep, "\nThe idle scrape: %s.\n", scrapeFamilies)
	fmt.Fprintf(&rep, "\nThe profiles are in `%s/` (`go tool pprof -top %s FILE`).\n", filepath.Base(profiles), o.bin)
	fmt.Fprintf(&rep, "\n## Start: target topics there and partitions flowing, by seconds after kmirror's start\n\n"+
		"(start-cpu.pprof: the first 30 s; start-goroutines-*.txt: every goroutine's stack each 5 s until all flow.)\n\n```\n%s\n```\n", timeline)
	fmt.Fprintf(&rep, "\n## CPU profile, idle (the measured %s)\n\n```\n%s```\n", o.idle, idleProfile)
	fmt.Fprintf(&rep, "\n## Heap in use after the idle window\n\n```\n%s```\n", idleHeap)
	fmt.Fprintf(&rep, "\n## Goroutines after the idle window\n\n```\n%s```\n", goroutines)
	fmt.Fprintf(&rep, "\n## CPU profile, steady rate (the measured %s)\n\n```\n%s```\n", o.steady-10*time.Second, steadyProfile)
	fmt.Fprintf(&rep, "\n## Heap in use at the end\n\n```\n%s```\n", heapTop)
	if err := os.WriteFile(o.out, []byte(rep.String()), 0o644); err != nil {
		return err
	}
	say("written to %s, the profiles to %s (kmirror's log is in %s)", o.out, profiles, work)
	return stopErr
}

// settings describes the kmirror settings a run changed.
func settings(set []string) string {
	if len(set) == 0 {
		return ""
	}
	return "; set: `" + strings.Join(set, "`, `") + "`"
}

// memstats summarises the Go runtime's memory from a scrape: what it holds from the OS, the heap
// in use and what it has released.
func memstats(body []byte) string {
	return fmt.Sprintf("heap in use %s (next GC at %s), stacks %s, runtime total from the OS %s, heap released %s, goroutines %.0f",
		mib(int64(sample(body, "go_memstats_heap_inuse_bytes"))), mib(int64(sample(body, "go_memstats_next_gc_bytes"))),
		mib(int64(sample(body, "go_memstats_stack_inuse_bytes"))), mib(int64(sample(body, "go_memstats_sys_bytes"))),
		mib(int64(sample(body, "go_memstats_heap_released_bytes"))), sample(body, "go_goroutines"))
}

// environment describes the environment variables a run gave kmirror.
func environment(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return "; environment: `" + strings.Join(env, "`, `") + "`"
}
