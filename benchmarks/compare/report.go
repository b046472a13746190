package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// eosCostFloor is the exactly-once target: kmirror exactly-once keeps at least this share of
// kmirror at-least-once's catch-up throughput (exactly-once costs no more than 20%).
const eosCostFloor = 0.8

// bareMirrorFloor is the target against the bare mirror (benchmarks/baremirror): kmirror keeps at
// least this share of the catch-up throughput of franz-go's consumer feeding franz-go's producer
// with nothing in between, on loopback, where the clusters cost the mirror next to nothing.
const bareMirrorFloor = 0.9

func (h *harness) report(cs []contender, results map[string][]result, c ceilings) string {
	o := h.o
	var b strings.Builder
	host, _ := os.Hostname()
	var labels []string
	for _, c := range cs {
		labels = append(labels, c.label)
	}
	fmt.Fprintf(&b, "# kmirror vs MirrorMaker 2 — %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s. Kafka %s, one KRaft node per cluster on loopback, both clusters, the mirrors and the harness on the same machine. "+
		"Workload: %d records, %d-byte random values (incompressible), keys, 2 headers, %d partitions, preloaded with compression %s. "+
		"%d rounds, each measuring the ceilings, then %s; medians below. All mirrors: acks=all, idempotent, linger 5 ms, 1 MiB batches, no compression; "+
		"MirrorMaker 2 (connect-mirror %s) in dedicated mode with tasks.max = %d and the JVM heap its start script sets (-Xmx2g). kmirror: default settings%s.\n\n",
		host, numCPU(), runtime.Version(), o.version, o.records, o.valueBytes, o.partitions, o.sourceCompression, o.rounds, strings.Join(labels, ", "),
		o.version, o.partitions, kmirrorSettings(o))
	b.WriteString("Exactly-once: kmirror with `delivery.mode: exactly_once` (its default transaction sizing: 16 slots, each a transactional producer; a transaction commits at 10,000 records, 8 MiB or 100 ms); " +
		"MirrorMaker 2 with KIP-618 exactly-once source support (`us.exactly.once.source.support = enabled`, `dedicated.mode.enable.internal.rest = true`, source consumer `isolation.level = read_committed`; one transaction per task poll, the default boundary). " +
		"Before an exactly-once run the harness commits one transaction of its own on the fresh target, so that the broker has created its transaction state topic (the first transactional producer of a cluster waits about 10 s for that: a cost of the cluster, paid once, not of catching up). " +
		"The exactly-once contenders' target is read with read_committed: progress is the last stable offsets, a run is complete when the last committed record of every partition is the source's last, " +
		"and after the timed part the whole target topic is read back with read_committed and counted.\n\n")
	for _, c := range cs {
		switch c.program {
		case "baremirror":
			b.WriteString("Bare mirror: `benchmarks/baremirror`, the reference for what a Go client reaches here: franz-go's group consumer hands each fetched record as it is to franz-go's producer " +
				"(the same partition number, key, value, headers and timestamp; the producer settings above, a 64 MiB producer buffer, franz-go's fetch defaults, GOGC=200 as kmirror's default `runtime.gc_percent`), " +
				"with offsets autocommitted as polled: no ordering or loss guarantee beyond the client's, no offset tracking, no metrics.\n\n")
		case "baresarama":
			b.WriteString("Bare sarama mirror: `benchmarks/baresarama`, what sarama's high-level clients reach here, the library kmirror is built on: sarama's consumer group hands each message to sarama's idempotent async producer " +
				"(the same partition number, key, value, headers and timestamp; the producer settings above, which with idempotence mean `Net.MaxOpenRequests` = 1, one request in flight per broker; sarama's fetch defaults, protocol 3.6 as kmirror's default `cluster.version`, GOGC=200), " +
				"with offsets autocommitted as handed over: no ordering or loss guarantee beyond the clients', no offset tracking, no metrics.\n\n")
		}
	}
	mb := float64(o.records*o.valueBytes) / 1e6
	mbs := func(rps float64) float64 { return rps * float64(o.valueBytes) / 1e6 }
	rps := func(name string) float64 {
		return median(results[name], func(r result) float64 { return r.recordsPerSec })
	}
	rss := func(name string) float64 {
		return median(results[name], func(r result) float64 { return float64(r.peakRSS) })
	}
	b.WriteString("| contender | records/s (from start) | MB/s | records/s (from first record) | peak RSS MiB | CPU s per GB | source broker CPU s per GB | target broker CPU s per GB | machine busy | batches on the target: per GB, mean KiB |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cs {
		rs := results[c.name]
		steady := median(rs, func(r result) float64 { return r.steadyPerSec })
		cpu := median(rs, func(r result) float64 { return r.cpu.Seconds() })
		src := median(rs, func(r result) float64 { return r.sourceCPU.Seconds() })
		tgt := median(rs, func(r result) float64 { return r.targetCPU.Seconds() })
		busy := median(rs, func(r result) float64 { return r.busy })
		batches := median(rs, func(r result) float64 { return float64(r.batches.batches) })
		batchBytes := median(rs, func(r result) float64 { return float64(r.batches.bytes) })
		perGB, meanKiB := "", ""
		if batches > 0 {
			perGB, meanKiB = fmt.Sprintf("%.0f", batches/(batchBytes/1e9)), fmt.Sprintf("%.0f", batchBytes/batches/1024)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f%% | %s, %s |\n", c.label, rps(c.name), mbs(rps(c.name)), steady, rss(c.name)/(1<<20),
			cpu/(mb/1000), src/(mb/1000), tgt/(mb/1000), 100*busy, perGB, meanKiB)
	}
	ceilRow := func(name string, rps float64) {
		fmt.Fprintf(&b, "| ceiling: %s | %.0f | %.1f | | | | | | | |\n", name, rps, mbs(rps))
	}
	ceilRow(fmt.Sprintf("%d producer perf tool(s) → target", o.ceilingProducers), c.perfProducer) // medians of the rounds
	ceilRow("franz-go producer → target", c.nativeProducer)
	ceilRow("consumer perf tool ← source", c.perfConsumer)
	ceilRow("franz-go consumer ← source", c.nativeConsumer)
	b.WriteString("\n")
	for _, c := range cs {
		if !c.exactlyOnce {
			continue
		}
		var counts, ids []string
		for _, r := range results[c.name] {
			counts = append(counts, fmt.Sprint(r.committed))
			ids = append(ids, fmt.Sprint(r.txnIDs))
		}
		fmt.Fprintf(&b, "%s, read back with read_committed: %s records (of %d) in the rounds; transactional ids on the target: %s.\n\n",
			c.label, strings.Join(counts, ", "), o.records, strings.Join(ids, ", "))
	}
	steady := func(name string) float64 {
		return median(results[name], func(r result) float64 { return r.steadyPerSec })
	}
	kr, ks := rps("kmirror"), steady("kmirror")
	fmt.Fprintf(&b, "| target | measured (medians) | |\n|---|---|---|\n")
	b.WriteString(ratioRow("catch-up throughput ≥ 2× MirrorMaker 2", kr, rps("mirrormaker2"), 2, ""))
	if kr > 0 {
		fmt.Fprintf(&b, "| catch-up throughput ≥ 80%% of the ceiling (%.0f records/s: the slower of the best producer and the best consumer) | %.0f%% from start, %.0f%% from the first record | %s |\n",
			c.ceiling(), 100*kr/c.ceiling(), 100*ks/c.ceiling(), verdict(kr/c.ceiling() >= 0.8))
	}
	b.WriteString(bareMirrorRows(kr, rps("bare"), ks, steady("bare")))
	b.WriteString(ratioRow("kmirror / bare mirror (sarama) on loopback (no target)", kr, rps("baresarama"), 0, "records/s"))
	b.WriteString(ratioRow("kmirror / bare mirror (sarama) from the first record on the target (no target)", ks, steady("baresarama"), 0, "records/s"))
	krss, mrss := rss("kmirror"), rss("mirrormaker2")
	if krss > 0 && mrss > 0 {
		fmt.Fprintf(&b, "| peak RSS ≤ 1/10 of MirrorMaker 2's | %.3f (%.0f vs %.0f MiB) | %s |\n", krss/mrss, krss/(1<<20), mrss/(1<<20), verdict(krss/mrss <= 0.1))
	}
	b.WriteString(ratioRow("exactly-once costs ≤ 20% of catch-up throughput: kmirror exactly-once / kmirror at-least-once ≥ 0.8", rps("kmirror-eos"), kr, eosCostFloor, "records/s"))
	b.WriteString(ratioRow("the same from the first record on the target (no target)", steady("kmirror-eos"), ks, 0, "records/s"))
	b.WriteString(ratioRow("exactly-once catch-up: kmirror / MirrorMaker 2 (no target)", rps("kmirror-eos"), rps("mirrormaker2-eos"), 0, "records/s"))
	b.WriteString(ratioRow("MirrorMaker 2's own exactly-once cost: exactly-once / at-least-once (no target)", rps("mirrormaker2-eos"), rps("mirrormaker2"), 0, "records/s"))
	b.WriteString("\nEach run starts from a freshly started target cluster; \"from start\" includes process start-up and the consumer group join, \"from first record\" does not. " +
		"A ceiling is one client doing one side alone; a mirror does both sides at once on the same two cores as both brokers, so 100% is out of reach by construction. " +
		"The brokers' CPU per GB is what each broker used from the mirror's start to the end of its run (the harness's own offset listings included, the same for every mirror): on two shared cores a mirror whose requests cost the brokers more leaves itself less. " +
		"The batches on the target are counted after the run by reading the target topic back: how full each mirror made its batches (the target broker appends, indexes and answers each batch on its own). " +
		"Machine busy is the share of all cores busy from the first record on the target to the end (/proc/stat): near 100% the run was bound by CPU, well below it the mirror left cores idle (waiting on its own pipeline). " +
		"The machines are noisy: compare ratios within one report, not absolute numbers across reports.\n")
	return b.String()
}

// bareMirrorRows are the targets-table rows comparing kmirror with the bare mirror, from start
// (against bareMirrorFloor) and from the first record on the target (no target); empty when
// either was not measured.
func bareMirrorRows(kmirror, bare, kmirrorSteady, bareSteady float64) string {
	return ratioRow("kmirror / bare mirror (franz-go) ≥ 0.9 on loopback", kmirror, bare, bareMirrorFloor, "records/s") +
		ratioRow("kmirror / bare mirror from the first record on the target (no target)", kmirrorSteady, bareSteady, 0, "records/s")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// ratioRow is a row of the targets table: num/den, with both values when unit is set, against
// floor (met when the ratio is at least floor; floor 0: no target, the ratio alone). It is empty
// when either side was not measured in the run.
func ratioRow(target string, num, den, floor float64, unit string) string {
	if num <= 0 || den <= 0 {
		return ""
	}
	measured := fmt.Sprintf("%.2f×", num/den)
	if unit != "" {
		measured += fmt.Sprintf(" (%.0f vs %.0f %s)", num, den, unit)
	}
	v := ""
	if floor > 0 {
		v = verdict(num/den >= floor)
	}
	return fmt.Sprintf("| %s | %s | %s |\n", target, measured, v)
}

func kmirrorSettings(o options) string {
	changed := append(append([]string(nil), o.kmirrorSet...), o.kmirrorEnv...)
	if len(changed) == 0 {
		return ""
	}
	return " but " + strings.Join(changed, ", ")
}

func labelOf(name string) string {
	for _, c := range contenders {
		if c.name == name {
			return c.label
		}
	}
	return name
}

func latencyReport(o options, lats []latency) string {
	if len(lats) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Steady-state latency\n\nEnd to end: the time each copy became readable on the target minus the original's create time on the source (carried in a header), over %s of paced production after a %s warm-up; 1 ms resolution (broker append times are milliseconds). "+
		"A copy is readable at its append time on the target (the target topic is `message.timestamp.type=LogAppendTime`) for the at-least-once contenders; for the exactly-once ones the target is read with read_committed and a copy is readable at the append time of its transaction's commit marker. "+
		"The source topic is LogAppendTime too, so each record's latency splits into the source side (create → source append: the paced producer and the source broker, no mirror involved) and the mirror's part (source append → readable on the target). The last column is the CPU each process used while the stream was measured, in %% of one core (mirror / source broker / target broker / this harness: paced producer and measuring consumers); a sum near %d%% means the machine was saturated and every process, the brokers included, waited for a core. Target: end-to-end p99 < 50 ms.\n\n"+
		"| contender | rate (records/s) | p50 | p99 | p99.9 | max | mirror's part p50 / p99 / p99.9 | source side p99 | samples | p99 < 50 ms | CPU %% mirror / source / target / harness |\n|---|---|---|---|---|---|---|---|---|---|---|\n", o.pacedFor, warmUp, 100*numCPU())
	for _, l := range lats {
		if l.behind {
			fmt.Fprintf(&b, "| %s | %d | fell behind: no measured record reached the target within the run | | | | | | 0 | **missed** | %s |\n", labelOf(l.name), l.rate, l.cpu)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f ms | %.1f ms | %.1f ms | %.0f ms | %.0f / %.0f / %.0f ms | %.0f ms | %d | %s | %s |\n", labelOf(l.name), l.rate, ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max),
			ms(l.mirror.p50), ms(l.mirror.p99), ms(l.mirror.p999), ms(l.sourceSide.p99), l.samples, verdict(l.p99 < 50*time.Millisecond), l.cpu)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
