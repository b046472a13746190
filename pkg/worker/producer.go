package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/produce"
)

// Producer is one of a worker's producers on the target: kmirror's produce pipeline (OpenPipeline;
// in tests, a fake). It takes a partition's records in one call and tells their fates, a batch at
// a time, to the produce.Done it was opened with (NewProducer), in the order it settled them: a
// partition's records in that partition's order. There is no channel per record either way.
type Producer interface {
	// ProduceBatch queues msgs, records of one partition in order, and returns how many it took
	// (all unless ctx ended while it waited for room; the rest are the caller's). It is not
	// called from AsyncClose on.
	ProduceBatch(ctx context.Context, msgs []*sarama.ProducerMessage) int
	// Abort closes the producer's connections so that nothing it still holds reaches the target
	// from now on: every such record is told failed. It does not block.
	Abort()
	// AsyncClose stops the producer once what it holds is settled; it does not block.
	AsyncClose()
	// Done is closed once every outcome was told (after AsyncClose).
	Done() <-chan struct{}
	// Knows reports whether the producer's metadata has partition of topic, refreshing the
	// topic's metadata first when it has not.
	Knows(topic string, partition int32) (bool, error)
	// Release closes the client under the producer, once Done is closed.
	Release()
}

// NewProducer opens a producer whose record batches (and so records) stay within
// maxMessageBytes, uncompressed, and that tells done the fate of every record it takes.
type NewProducer func(maxMessageBytes int, done produce.Done) (Producer, error)

// ProducerConfig sets up an idempotent, ordered sarama producer (the dead-letter writer; the
// mirrored records go through kmirror's produce pipelines, PipelineConfig) on top of base
// (which carries the target cluster's connection settings): acks from all in-sync replicas,
// one request in flight per broker (so retries cannot reorder), records sent to the partition
// they name, batches of at most maxMessageBytes per partition.
//
// Retriable errors are retried with a growing pause (producer.retry_backoff doubling up to
// a second) for as long as producer.delivery_timeout lasts: Kafka's delivery.timeout.ms,
// in sarama's terms of a retry count. The time bound itself is kept by the source side, which
// fails a partition whose oldest record has not been acknowledged within delivery_timeout
// whatever sarama is doing (a frozen broker holds one attempt for the whole read timeout).
func ProducerConfig(base *sarama.Config, p config.Producer, maxMessageBytes int) (*sarama.Config, error) {
	c := base
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Flush.Bytes = min(p.BatchBytes, maxMessageBytes)
	c.Producer.Flush.Messages = p.BatchRecords
	c.Producer.Flush.MaxMessages = p.BatchRecords
	c.Producer.Flush.Frequency = p.Linger
	c.Producer.MaxMessageBytes = maxMessageBytes
	// The producer's topic and partition stages buffer this many records (not bytes) each in
	// front of the batch: few, so that what a slow target holds stays within config.Memory.
	c.ChannelBufferSize = config.ProducerChannelRecords
	c.Producer.Retry.Max = retriesWithin(p.DeliveryTimeout, p.RetryBackoff)
	c.Producer.Retry.Backoff = p.RetryBackoff
	base0 := p.RetryBackoff
	c.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration { return produce.RetryPause(base0, retries) }
	codec, err := codecOf(p.Compression)
	if err != nil {
		return nil, err
	}
	c.Producer.Compression = codec
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("producer settings: %w", err)
	}
	return c, nil
}

// retriesWithin is how many retries fit in d when every attempt takes at least its pause. sarama
// keeps a little state per retry level and partition, so the count stays bounded (a few hundred).
func retriesWithin(d, base time.Duration) int {
	n, spent := 0, time.Duration(0)
	for spent < d && n < 10_000 {
		spent += max(produce.RetryPause(base, n), 10*time.Millisecond)
		n++
	}
	return max(n, 1)
}

// knows is Producer.Knows on the client c a producer runs on.
func knows(c sarama.Client, topic string, partition int32) (bool, error) {
	if has(c, topic, partition) {
		return true, nil
	}
	if err := c.RefreshMetadata(topic); err != nil {
		return false, fmt.Errorf("refresh producer metadata of %q: %w", topic, err)
	}
	return has(c, topic, partition), nil
}

func has(c sarama.Client, topic string, partition int32) bool {
	parts, err := c.Partitions(topic)
	if err != nil {
		return false
	}
	for _, p := range parts {
		if p == partition {
			return true
		}
	}
	return false
}
