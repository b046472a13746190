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
)

const scaleMetrics = "127.0.0.1:47464"

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
	cl, err := upClusters(o.heap, o.keep)
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
	say("one record in each of the %d source partitions", parts)

	cfg := filepath.Join(work, "kmirror.yaml")
	body := fmt.Sprintf(`source: {alias: src, bootstrap: [%s]}
target: {alias: dst, bootstrap: [%s]}
topics: {include: ["scale\\..*"], replication_factor: 1}
telemetry: {listen: %q, pprof: true}
log: {format: json}
`, strings.Join(cl.src, ", "), strings.Join(cl.dst, ", "), scaleMetrics)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	k, err := startKmirror(o.bin, cfg, filepath.Join(work, "kmirror.log"), scaleMetrics)
	if err != nil {
		return err
	}
	defer func() {
		if k.alive() == nil {
			_ = k.cmd.Process.Kill()
		}
	}()
	pid := k.cmd.Process.Pid

	// All flowing: every target partition has its record.
	var flowing, created time.Duration
	deadline := time.Now().Add(15 * time.Minute)
	for {
		if err := k.alive(); err != nil {
			return err
		}
		_, n := endOffsets(ctx, dstAdm, topics)
		if created == 0 {
			if td, err := dstAdm.ListTopics(ctx, topics...); err == nil && len(td.TopicsSet()) == o.topics && td.Error() == nil {
				created = time.Since(k.started)
			}
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
	rss, hwm := memory(pid)
	say("all %d partitions flowing %s after start (target topics all there at %s); RSS %s, HWM %s",
		parts, flowing.Round(100*time.Millisecond), created.Round(time.Second), mib(rss), mib(hwm))

	fmt.Fprintf(&rep, "# kmirror at scale: %d topics × %d partitions in one process — %s\n\n", o.topics, o.partitions,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&rep, "Command: `%s` (make bench-scale).\n\n", commandLine())
	fmt.Fprintf(&rep, "Machine: %d CPUs, %s; Kafka 4.3.1, one KRaft node per cluster (heap %s), source and target on this machine. "+
		"kmirror with its defaults but for the topics, replication factor 1, and /metrics with pprof on.\n\n", runtime.NumCPU(), runtime.Version(), o.heap)
	fmt.Fprintln(&rep, "| measure | figure | target |")
	fmt.Fprintln(&rep, "|---|---|---|")
	row("time from start to all partitions flowing (each target partition has its record; kmirror creates the target topics)",
		flowing.Round(100*time.Millisecond).String(), "< 60 s")
	row("… of which, until every target topic existed", created.Round(time.Second).String(), "")

	// Idle: wait for the commits and the first watcher rounds to settle, then measure.
	time.Sleep(15 * time.Second)
	say("idle: measuring CPU for %s", o.idle)
	idle := cpuUse(o.idle, pid, cl.pids["scale-src"], cl.pids["scale-dst"])
	rssIdle, hwmIdle := memory(pid)
	n, d, families, err := scrape(scaleMetrics)
	if err != nil {
		return err
	}
	say("idle CPU %.1f%% of a core (brokers %.0f%%, %.0f%%); RSS %s; scrape %d bytes in %s", 100*idle[0], 100*idle[1], 100*idle[2], mib(rssIdle), n, d)
	idleProfile := profile(scaleMetrics, filepath.Join(work, "idle.pprof"), 20*time.Second, false)
	row("resident memory, idle (VmRSS)", mib(rssIdle), "< 1 GiB")
	row(fmt.Sprintf("CPU idle, %s without a record (CPU-seconds / wall)", o.idle), fmt.Sprintf("%.1f%% of a core", 100*idle[0]), "< 5%")
	row("… the source and target brokers meanwhile", fmt.Sprintf("%.0f%%, %.0f%% of a core", 100*idle[1], 100*idle[2]), "")
	row("/metrics scrape, idle", fmt.Sprintf("%.2f MiB in %s", float64(n)/(1<<20), d.Round(time.Millisecond)), "< 5 MiB")
	scrapeFamilies := families

	// Steady rate.
	say("steady: %d records/s over %d partitions for %s", o.rate, parts, o.steady)
	pctx, stopPace := context.WithCancel(ctx)
	written := make(chan int64, 1)
	srcBefore, _ := endOffsets(ctx, srcAdm, topics)
	go func() { written <- pace(pctx, srcCl, topics, o.partitions, o.rate) }()
	time.Sleep(10 * time.Second)
	steady := cpuUse(o.steady-10*time.Second, pid, cl.pids["scale-src"], cl.pids["scale-dst"])
	rssSteady, _ := memory(pid)
	sn, sd, _, err := scrape(scaleMetrics)
	if err != nil {
		stopPace()
		return err
	}
	steadyProfile := profile(scaleMetrics, filepath.Join(work, "steady.pprof"), 15*time.Second, false)
	stopPace()
	w := <-written
	srcSum, _ := endOffsets(ctx, srcAdm, topics)
	var dstSum int64
	caught := time.Now()
	for time.Since(caught) < 5*time.Minute {
		if dstSum, _ = endOffsets(ctx, dstAdm, topics); dstSum >= srcSum {
			break
		}
		time.Sleep(time.Second)
	}
	rate := float64(w) / (o.steady + 15*time.Second).Seconds()
	say("steady CPU %.1f%% (brokers %.0f%%, %.0f%%), RSS %s, scrape %d bytes in %s; wrote %d (%.0f/s), source %d target %d",
		100*steady[0], 100*steady[1], 100*steady[2], mib(rssSteady), sn, sd, w, rate, srcSum-srcBefore, dstSum)
	_, hwmEnd := memory(pid)
	heapTop := profile(scaleMetrics, filepath.Join(work, "heap.pprof"), 0, true)
	row(fmt.Sprintf("CPU at a steady %.0f records/s (100-byte values) over all partitions", rate),
		fmt.Sprintf("%.0f%% of a core", 100*steady[0]), "")
	row("… the source and target brokers meanwhile", fmt.Sprintf("%.0f%%, %.0f%% of a core", 100*steady[1], 100*steady[2]), "")
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
	_ = hwmIdle

	fmt.Fprintf(&rep, "\nThe idle scrape: %s.\n", scrapeFamilies)
	fmt.Fprintf(&rep, "\n## CPU profile, idle (20 s)\n\n```\n%s```\n", idleProfile)
	fmt.Fprintf(&rep, "\n## CPU profile, steady rate (15 s)\n\n```\n%s```\n", steadyProfile)
	fmt.Fprintf(&rep, "\n## Heap in use at the end\n\n```\n%s```\n", heapTop)
	if err := os.WriteFile(o.out, []byte(rep.String()), 0o644); err != nil {
		return err
	}
	say("written to %s (kmirror's log and the profiles are in %s)", o.out, work)
	return stopErr
}
