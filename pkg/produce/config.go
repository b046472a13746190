package produce

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// MaxInFlight is how many produce requests a pipeline keeps in flight per broker: Kafka's bound
// for an idempotent producer (the broker remembers the last five batches of each producer per
// partition, which is what lets it answer a resent batch with its original offset).
const MaxInFlight = 5

// Config configures a Pipeline.
type Config struct {
	// Addrs are the target cluster's bootstrap addresses.
	Addrs []string
	// Net is the sarama configuration the pipeline's client connects with (version, TLS, SASL,
	// timeouts). Its producer settings are not used, except Producer.Timeout (the broker's time
	// to wait for the in-sync replicas); Net.MaxOpenRequests is set to MaxInFlight.
	Net *sarama.Config
	// Linger is how long a batch waits for more records after its first (producer.linger).
	Linger time.Duration
	// BatchBytes closes a batch at this many bytes, encoded before compression
	// (producer.batch_bytes).
	BatchBytes int
	// BatchRecords closes a batch at this many records (producer.batch_records).
	BatchRecords int
	// MaxBatchBytes bounds a batch as the broker counts it, its header and records encoded
	// (before compression): the target topic's max.message.bytes, less a margin for compression.
	// A record whose upper-bound size (as sarama counts it) does not fit a batch of its own is
	// refused before it is sent.
	MaxBatchBytes int
	// Codec compresses batches.
	Codec sarama.CompressionCodec
	// DeliveryTimeout bounds how long a record may wait for its acknowledgement, retries
	// included (producer.delivery_timeout).
	DeliveryTimeout time.Duration
	// RetryBackoff is the first pause before a retry; it doubles up to a second.
	RetryBackoff time.Duration
	// MaxBufferedBytes bounds the bytes of records held (not yet acknowledged); Produce blocks
	// above it. 0 is 4 × MaxBatchBytes, at least 32 MiB.
	MaxBufferedBytes int
	// Log logs retries and failures (not per record).
	Log *zap.Logger
}

// ErrDeliveryTimeout is returned for records not acknowledged within Config.DeliveryTimeout.
var ErrDeliveryTimeout = errors.New("not acknowledged within producer.delivery_timeout")

// ErrAborted is returned for records the pipeline held when it was aborted.
var ErrAborted = errors.New("produce pipeline aborted")

// ErrNotWritten is the error of records behind a batch of their partition that failed: they were
// not sent (or not judged) and are not refused by the target for what they are.
var ErrNotWritten = errors.New("not written")

func (c *Config) validate() error {
	switch {
	case len(c.Addrs) == 0:
		return errors.New("produce: no target bootstrap addresses")
	case c.Net == nil:
		return errors.New("produce: no sarama configuration")
	case !c.Net.Version.IsAtLeast(sarama.V0_11_0_0):
		return fmt.Errorf("produce: an idempotent producer needs Kafka 0.11 or later, the target is configured as %s", c.Net.Version)
	case c.MaxBatchBytes <= 0:
		return fmt.Errorf("produce: MaxBatchBytes %d: want more than 0", c.MaxBatchBytes)
	case c.BatchBytes <= 0 || c.BatchRecords <= 0:
		return fmt.Errorf("produce: producer.batch_bytes %d and producer.batch_records %d: want more than 0", c.BatchBytes, c.BatchRecords)
	case c.DeliveryTimeout <= 0:
		return fmt.Errorf("produce: producer.delivery_timeout %s: want more than 0", c.DeliveryTimeout)
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = max(4*c.MaxBatchBytes, 32<<20)
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	c.Net.Net.MaxOpenRequests = MaxInFlight
	c.Net.Producer.Idempotent = false // the pipeline is; sarama's producer is not used
	return c.Net.Validate()
}

// requestVersion is the ProduceRequest version for the configured Kafka version, as sarama's
// own producer picks it (sarama lowers it further to what the broker supports).
func requestVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V3_7_0_0):
		return 10
	case v.IsAtLeast(sarama.V2_8_0_0):
		return 9
	case v.IsAtLeast(sarama.V2_4_0_0):
		return 8
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 7
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 6
	case v.IsAtLeast(sarama.V1_0_0_0):
		return 5
	default:
		return 3
	}
}

// RetryPause is the pause before retry number n (0-based): base doubling, at most a second. The
// workers pace their own retries (and the dead-letter writer's sarama producer) with it too.
func RetryPause(base time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	return min(base<<min(n, 16), time.Second)
}

// outcome is how the pipeline treats a partition's answer.
type outcome int

const (
	written  outcome = iota // the batch is on the target
	retry                   // not written (or unknown): send again, same sequence
	moved                   // as retry, after finding the partition's leader again
	sequence                // the broker lost our sequence: bump the epoch, renumber
	refused                 // the batch will never be written: fail the partition's queue
)

// classify sorts a partition's error code from a produce response.
func classify(err sarama.KError) outcome {
	switch err {
	case sarama.ErrNoError, sarama.ErrDuplicateSequenceNumber:
		return written
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownTopicOrPartition,
		sarama.ErrKafkaStorageError, sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch,
		sarama.ErrNetworkException, sarama.ErrReplicaNotAvailable, sarama.ErrBrokerNotAvailable:
		return moved
	case sarama.ErrRequestTimedOut, sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend,
		sarama.ErrInvalidMessage, sarama.ErrThrottlingQuotaExceeded, sarama.ErrConcurrentTransactions:
		return retry
	case sarama.ErrOutOfOrderSequenceNumber, sarama.ErrUnknownProducerID, sarama.ErrInvalidProducerEpoch:
		return sequence
	default:
		return refused
	}
}
