package worker

import (
	"fmt"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
)

// ProducerConfig sets up an idempotent, ordered sarama producer on top of base (which carries the
// target cluster's connection settings): acks from all in-sync replicas, one request in flight
// per broker (so retries cannot reorder), records sent to the partition they name.
func ProducerConfig(base *sarama.Config, p config.Producer) (*sarama.Config, error) {
	c := base
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Flush.Bytes = p.BatchBytes
	c.Producer.Flush.Messages = p.BatchRecords
	c.Producer.Flush.MaxMessages = p.BatchRecords
	c.Producer.Flush.Frequency = p.Linger
	c.Producer.MaxMessageBytes = p.MaxMessageBytes
	c.Producer.Retry.Max = p.RetryMax
	c.Producer.Retry.Backoff = p.RetryBackoff
	switch p.Compression {
	case "none", "":
		c.Producer.Compression = sarama.CompressionNone
	case "gzip":
		c.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		c.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		c.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		c.Producer.Compression = sarama.CompressionZSTD
	default:
		return nil, fmt.Errorf("producer.compression %q: want none, gzip, snappy, lz4 or zstd", p.Compression)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("producer settings: %w", err)
	}
	return c, nil
}
