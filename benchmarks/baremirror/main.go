// Command baremirror is the benchmark's reference for what a Go Kafka client reaches on the
// machine: the smallest mirror franz-go allows, one topic from a source cluster to a target
// cluster, with none of kmirror's machinery. benchmarks/compare runs it as the contender "bare".
//
// A consumer group on the source reads the topic from the start (or from the group's committed
// offsets); every fetched record is handed, as it is, to an asynchronous producer on the target,
// to the same partition number of a topic of the same name (kgo.ManualPartitioner): key, value,
// headers and timestamp are kept. The producer is configured as the benchmark's other contenders:
// acks=all, idempotent (franz-go's default), linger 5 ms, 1 MiB batches, no compression. A full
// producer buffer blocks the fetch loop; that is the only backpressure. If the target topic is
// missing it is created with the source's partition count and the broker's default replication
// factor. The program runs until it is signalled, then stops fetching and flushes what it handed
// to the producer (for at most flushTimeout).
//
// It guarantees no more than the client does:
//   - offsets are committed by franz-go's autocommit (every 5 s, and on leaving the group), which
//     commits what was polled, not what the target acknowledged: a crash or kill -9 loses the
//     records polled but not yet written, and re-copies those written since the last commit;
//   - order per partition holds while the producer succeeds (the idempotent producer does not
//     reorder its retries); the first failed record stops the program with an error, and
//     neither it nor the records after it are retried, though the commit on leaving the group
//     may pass them;
//   - one topic, no topic config, ACL or group offset sync, no offset translation, no
//     exactly-once, no metrics.
//
// Usage:
//
//	baremirror --source HOST:PORT[,...] --target HOST:PORT[,...] --topic NAME --group ID
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/bare"
)

// flushTimeout bounds the soft stop: how long the records already handed to the producer get to
// be acknowledged before they are failed.
const flushTimeout = 10 * time.Second

func main() { bare.Main("baremirror", run) }

// run mirrors c.Topic until ctx is cancelled (nil then) or a fetch or a produce fails.
func run(ctx context.Context, c bare.Config) error {
	dst, err := kgo.NewClient(kgo.SeedBrokers(c.Target...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// 64 MiB in the producer's buffer is room for five in-flight requests of a 1 MiB batch
		// for each of a dozen partitions; franz-go's default bound is 50,000 records.
		kgo.MaxBufferedBytes(64<<20),
	)
	if err != nil {
		return fmt.Errorf("target client: %w", err)
	}
	defer dst.Close()
	// The source client starts consuming as soon as it exists: create the target topic first.
	if err := createTargetTopic(ctx, c.Source, kadm.NewClient(dst), c.Topic); err != nil {
		return err
	}
	// franz-go's fetch defaults are its throughput settings: 50 MiB per fetch, 1 MiB per
	// partition, one fetch in flight per broker, buffered while the previous one is handled.
	src, err := kgo.NewClient(kgo.SeedBrokers(c.Source...),
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return fmt.Errorf("source client: %w", err)
	}
	// Closed before dst (defers run in reverse) and after mirror's flush, so that the commit on
	// leaving the group covers records the target has acknowledged.
	defer src.Close()
	fmt.Fprintf(os.Stderr, "baremirror: mirroring %q as group %q\n", c.Topic, c.Group)
	return mirror(ctx, src, dst, c.Topic)
}

// createTargetTopic creates topic on the target (dst) with the partition count it has on the
// source unless it exists there; an existing one must have at least as many partitions.
func createTargetTopic(ctx context.Context, source []string, dst *kadm.Client, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(source...))
	if err != nil {
		return fmt.Errorf("source admin client: %w", err)
	}
	defer cl.Close()
	want, err := partitions(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return fmt.Errorf("describe source topic %q: %w", topic, err)
	}
	if want == 0 {
		return fmt.Errorf("source topic %q does not exist", topic)
	}
	have, err := partitions(ctx, dst, topic)
	if err != nil {
		return fmt.Errorf("describe target topic %q: %w", topic, err)
	}
	if have > 0 {
		if have < want {
			return fmt.Errorf("target topic %q has %d partitions, fewer than the source's %d", topic, have, want)
		}
		return nil
	}
	resp, err := dst.CreateTopic(ctx, int32(want), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create target topic %q with %d partitions: %w", topic, want, err)
	}
	return nil
}

// partitions is topic's partition count on the cluster adm talks to, 0 if it does not exist.
func partitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	t := topics[topic]
	if errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return 0, nil
	}
	return len(t.Partitions), t.Err
}

// mirror hands every record src fetches to dst under the topic name target, until ctx is
// cancelled or a fetch or a produce fails, then flushes dst.
//
// A fetched record is produced as it is: the consumer never touches it again, and the producer
// overwrites every field it sets (offset, attributes, producer id and epoch) while keeping key,
// value, headers, timestamp and, with the manual partitioner, the partition. No allocation per
// record, and one callback for all of them.
func mirror(ctx context.Context, src, dst *kgo.Client, target string) error {
	loop, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	// The records outlive ctx: a signal stops the loop, and what was handed to the producer
	// still gets flushTimeout to be written. hardStop fails whatever is left after that.
	records, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	produced := func(r *kgo.Record, err error) {
		if err != nil {
			fail(fmt.Errorf("produce to %s/%d: %w", r.Topic, r.Partition, err))
		}
	}
	for loop.Err() == nil {
		fs := src.PollFetches(loop)
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("fetch %s/%d: %w", t, p, err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			r.Topic = target
			dst.Produce(records, r, produced)
		})
	}
	flush, cancel := context.WithTimeout(records, flushTimeout)
	defer cancel()
	if err := dst.Flush(flush); err != nil {
		n := dst.BufferedProduceRecords()
		hardStop()
		return fmt.Errorf("flush the target producer: %d records not acknowledged within %s: %w", n, flushTimeout, err)
	}
	if cause := context.Cause(loop); !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}
