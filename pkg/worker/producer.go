package worker

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/produce"
)

// Producer is one sarama producer and the client it runs on, as a worker needs it.
type Producer interface {
	sarama.AsyncProducer
	// Abort closes the producer's connections so that nothing it still holds reaches the target
	// from now on: every such record comes back on Errors. It does not block.
	Abort()
	// Knows reports whether the producer's metadata has partition of topic, refreshing the
	// topic's metadata first when it has not.
	Knows(topic string, partition int32) (bool, error)
	// Release closes the client under the producer, once the producer has shut down (its
	// Successes and Errors channels are closed).
	Release()
}

// NewProducer opens a producer whose record batches (and so records) stay within
// maxMessageBytes, uncompressed.
type NewProducer func(maxMessageBytes int) (Producer, error)

// ProducerConfig sets up an idempotent, ordered sarama producer (the transactional producers of
// exactly-once and the dead-letter writer; at-least-once uses PipelineConfig) on top of base
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

// clientProducer is a sarama AsyncProducer on a client of its own, so that Abort can close the
// connections under it.
type clientProducer struct {
	sarama.AsyncProducer
	client  sarama.Client
	aborted atomic.Bool
}

// OpenProducer returns a NewProducer that opens producers on addrs with the configuration
// config returns for a given batch bound; seen, when set, is told of each client's name and
// configuration (for its metrics).
func OpenProducer(addrs []string, config func(maxMessageBytes int) (*sarama.Config, error)) NewProducer {
	return func(maxMessageBytes int) (Producer, error) {
		c, err := config(maxMessageBytes)
		if err != nil {
			return nil, err
		}
		cp := &clientProducer{}
		// sarama pauses for every message it cannot route (no leader known) before giving it back:
		// thousands of records held when the target went away would take minutes to come back,
		// and a closed producer would wait for all of them. A record on its first attempt, or any
		// record once the producer is aborted, is given back at once; the worker paces resending.
		pace := c.Producer.Retry.BackoffFunc
		c.Producer.Retry.BackoffFunc = func(retries, maxRetries int) time.Duration {
			if retries == 0 || cp.aborted.Load() || pace == nil {
				return 0
			}
			return pace(retries, maxRetries)
		}
		client, err := sarama.NewClient(addrs, c)
		if err != nil {
			return nil, fmt.Errorf("connect producer to %v: %w", addrs, err)
		}
		p, err := sarama.NewAsyncProducerFromClient(client)
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("start producer: %w", err)
		}
		cp.AsyncProducer, cp.client = p, client
		return cp, nil
	}
}

// Abort implements Producer. The client is closed on a goroutine of its own: closing a broker
// waits for its response reader, which may itself be waiting for the producer to take a
// response, and the producer may be waiting for the caller to read an error.
func (p *clientProducer) Abort() {
	if p.aborted.CompareAndSwap(false, true) {
		go func() { _ = p.client.Close() }()
	}
}

// Knows implements Producer.
func (p *clientProducer) Knows(topic string, partition int32) (bool, error) {
	return knows(p.client, topic, partition)
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

// Release implements Producer.
func (p *clientProducer) Release() {
	if p.aborted.CompareAndSwap(false, true) {
		_ = p.client.Close()
	}
}
