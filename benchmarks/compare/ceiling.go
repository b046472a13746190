package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ceilings are the clusters' own limits for the workload, each measured alone: how fast the
// target takes the records and how fast the source gives them back. A mirror must do both at
// once on the same machine, so the slower of the two bounds it.
type ceilings struct {
	perfProducer   float64 // Kafka's producer performance tool(s) into the target, records/s
	nativeProducer float64 // franz-go producing the workload's own records into the target
	perfConsumer   float64 // Kafka's consumer performance tool reading the source
	nativeConsumer float64 // franz-go reading the source
}

// produce is the best rate at which anything here wrote the records into the target.
func (c ceilings) produce() float64 { return max(c.perfProducer, c.nativeProducer) }

// consume is the best rate at which anything here read the source.
func (c ceilings) consume() float64 { return max(c.perfConsumer, c.nativeConsumer) }

// ceiling is what a mirror is measured against: the slower of the best producer and the best
// consumer.
func (c ceilings) ceiling() float64 { return min(c.produce(), c.consume()) }

// medianCeilings is the median of each ceiling over the rounds.
func medianCeilings(cs []ceilings) ceilings {
	med := func(f func(ceilings) float64) float64 {
		v := make([]float64, len(cs))
		for i, c := range cs {
			v[i] = f(c)
		}
		return medianOf(v)
	}
	return ceilings{
		perfProducer:   med(func(c ceilings) float64 { return c.perfProducer }),
		nativeProducer: med(func(c ceilings) float64 { return c.nativeProducer }),
		perfConsumer:   med(func(c ceilings) float64 { return c.perfConsumer }),
		nativeConsumer: med(func(c ceilings) float64 { return c.nativeConsumer }),
	}
}

// measureCeilings measures every ceiling once, for round (the consumer perf tool's group is new
// each round, or it would find the source already read).
func (h *harness) measureCeilings(ctx context.Context, round int) (ceilings, error) {
	var c ceilings
	var err error
	if err = h.restartTarget(); err != nil { // an empty target, as each mirror run gets
		return c, err
	}
	if c.perfProducer, err = h.producerCeiling(ctx); err != nil {
		return c, err
	}
	if c.nativeProducer, err = h.nativeProducerCeiling(ctx, h.target, "ceiling-native", h.o.records); err != nil {
		return c, err
	}
	if c.perfConsumer, err = h.consumerCeiling(ctx, round); err != nil {
		return c, err
	}
	if c.nativeConsumer, err = h.nativeConsumerCeiling(ctx, h.source, topic, h.o.records); err != nil {
		return c, err
	}
	return c, nil
}

func (h *harness) createSourceTopic(ctx context.Context, name string, configs map[string]*string) error {
	return h.createTopicAt(ctx, h.source, "source", name, configs)
}

func (h *harness) createTargetTopic(ctx context.Context, name string, configs map[string]*string) error {
	return h.createTopicAt(ctx, h.target, "target", name, configs)
}

// createTopicAt is createTopic on a client of its own to the cluster at addrs.
func (h *harness) createTopicAt(ctx context.Context, addrs []string, side, name string, configs map[string]*string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return err
	}
	defer cl.Close()
	return h.createTopic(ctx, kadm.NewClient(cl), side, name, configs)
}

// createTopic creates topic name with the workload's partition count, one replica and configs on
// the cluster adm talks to (side names it in the error).
func (h *harness) createTopic(ctx context.Context, adm *kadm.Client, side, name string, configs map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, int32(h.o.partitions), 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create %s topic %q: %w", side, name, err)
	}
	return nil
}

// producerCeiling writes the workload's volume into the target with Kafka's producer performance
// tool (same batch, linger, acks and compression as the mirrors), in --ceiling-producers parallel
// instances, and returns their summed records/s. Its records are random values of the same size,
// without keys or headers (the tool writes none).
func (h *harness) producerCeiling(ctx context.Context) (float64, error) {
	if err := h.createTargetTopic(ctx, "ceiling-perf", nil); err != nil {
		return 0, err
	}
	n := h.o.ceilingProducers
	type out struct {
		rate float64
		err  error
	}
	results := make(chan out, n)
	for i := 0; i < n; i++ {
		go func() {
			cmd := h.java("org.apache.kafka.tools.ProducerPerformance", "--topic", "ceiling-perf",
				"--num-records", strconv.Itoa(h.o.records/n), "--record-size", strconv.Itoa(h.o.valueBytes), "--throughput", "-1",
				"--producer-props", "bootstrap.servers="+strings.Join(h.target, ","), "acks=all", "linger.ms=5",
				"batch.size=1048576", "compression.type=none", "enable.idempotence=true")
			b, err := h.spawn.CombinedOutput(cmd)
			if err != nil {
				results <- out{err: fmt.Errorf("producer perf: %w\n%s", err, b)}
				return
			}
			// The last line: "N records sent, X records/sec (Y MB/sec), ..."
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			last := lines[len(lines)-1]
			i := strings.Index(last, " records/sec")
			j := strings.LastIndex(last[:max(i, 0)], ", ")
			if i < 0 || j < 0 {
				results <- out{err: fmt.Errorf("producer perf: unexpected output %q", last)}
				return
			}
			r, err := strconv.ParseFloat(strings.TrimSpace(last[j+2:i]), 64)
			results <- out{rate: r, err: err}
		}()
	}
	var total float64
	var firstErr error
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		total += r.rate
	}
	return total, firstErr
}

// nativeProducerCeiling writes n of the workload's own records (keys, headers, values) into a new
// target topic t with franz-go, a client built for throughput, bootstrapping from brokers (the
// target's own listeners, or a latency proxy's), with the mirrors' producer settings: acks=all,
// idempotent, linger 5 ms, 1 MiB batches, no compression. It times from the first record handed
// to the client to the acknowledgement of the last.
func (h *harness) nativeProducerCeiling(ctx context.Context, brokers []string, t string, n int) (float64, error) {
	if err := h.createTargetTopic(ctx, t, nil); err != nil {
		return 0, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return 0, fmt.Errorf("native producer: %w", err)
	}
	start := time.Now()
	if err := h.produceAll(ctx, cl, t, n); err != nil {
		return 0, fmt.Errorf("native producer: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// produceAll writes the first n records of the workload into topic t with cl and waits for every
// acknowledgement.
func (h *harness) produceAll(ctx context.Context, cl *kgo.Client, t string, n int) error {
	var firstErr error
	for i := 0; i < n; i++ {
		cl.Produce(ctx, h.load.record(t, i), func(_ *kgo.Record, err error) {
			if err != nil && firstErr == nil {
				firstErr = err // callbacks run one at a time
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

// consumerCeiling reads the preloaded source topic with Kafka's consumer performance tool.
func (h *harness) consumerCeiling(_ context.Context, round int) (float64, error) {
	cmd := h.java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", strings.Join(h.source, ","),
		"--topic", topic, "--messages", strconv.Itoa(h.o.records), "--group", fmt.Sprintf("perf-ceiling-%d", round),
		"--consumer.config", "/dev/null", "--hide-header")
	out, err := h.spawn.CombinedOutput(cmd)
	if err != nil {
		return 0, fmt.Errorf("consumer perf: %w\n%s", err, out)
	}
	// CSV: start, end, MB, MB/s, msgs, msgs/s, rebalance ms, fetch ms, fetch MB/s, fetch msgs/s
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Split(lines[len(lines)-1], ",")
	if len(f) < 10 {
		return 0, fmt.Errorf("consumer perf: unexpected output %q", lines[len(lines)-1])
	}
	return strconv.ParseFloat(strings.TrimSpace(f[9]), 64) // fetch msgs/s: excludes the group join
}

// nativeConsumerCeiling reads the source topic t, preloaded with records, from the start with
// franz-go (direct partition consumption, no group), bootstrapping from brokers (the source's own
// listeners, or a latency proxy's), and times from the first record to the last.
func (h *harness) nativeConsumerCeiling(ctx context.Context, brokers []string, t string, records int) (float64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(t),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, h.o.timeout)
	defer cancel()
	var n int
	var first time.Time
	for n < records {
		fs := cl.PollFetches(cctx)
		if err := cctx.Err(); err != nil {
			return 0, fmt.Errorf("native consumer: read %d of %d records: %w", n, records, err)
		}
		if first.IsZero() && fs.NumRecords() > 0 {
			first = time.Now()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, fmt.Errorf("native consumer: %w", ferr)
		}
		n += fs.NumRecords()
	}
	return float64(n) / time.Since(first).Seconds(), nil
}
