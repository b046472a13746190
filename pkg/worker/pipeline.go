package worker

import (
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/produce"
)

// PipelineConfig is the configuration of a produce pipeline (at-least-once) on the target whose
// connection settings base carries: batches of at most maxMessageBytes (batchBound's, header
// included, so its margins hold), flushed at producer.batch_bytes,
// producer.batch_records or producer.linger, compressed with producer.compression, retried in
// order for producer.delivery_timeout.
func PipelineConfig(base *sarama.Config, addrs []string, p config.Producer, maxMessageBytes int, log *zap.Logger) (produce.Config, error) {
	codec, err := codecOf(p.Compression)
	if err != nil {
		return produce.Config{}, err
	}
	return produce.Config{
		Addrs: addrs, Net: base, Linger: p.Linger,
		BatchBytes: min(p.BatchBytes, maxMessageBytes), BatchRecords: p.BatchRecords,
		MaxBatchBytes: maxMessageBytes + batchOverhead, Codec: codec,
		DeliveryTimeout: p.DeliveryTimeout, RetryBackoff: p.RetryBackoff, Log: log,
		// What the memory bound counts (config.Memory.InFlight): five requests in flight and
		// the batch being filled. produce's own default (32 MiB) held a frozen target's whole
		// backlog across the workers (TestMemoryStaysWithinBoundWithFrozenTarget: 434 MiB).
		MaxBufferedBytes: config.PipelineBatches * min(p.BatchBytes, maxMessageBytes),
	}, nil
}

// ProducerSizing returns p as it fits a target tgt away: its linger becomes p.DistantLinger when
// the target's round trip (the fastest of three ApiVersions requests) is distantRTT or more
// (config.Producer.LingerAt), and the start-up log says so. A round trip that cannot be measured
// keeps p.Linger.
func ProducerSizing(tgt sarama.Client, p config.Producer, distantRTT time.Duration, log *zap.Logger) config.Producer {
	if distantRTT <= 0 || p.DistantLinger <= p.Linger {
		return p
	}
	rtt, err := cluster.RoundTrip(tgt, 3)
	if err != nil {
		log.Warn("cannot measure the round trip to the target; producing with producer.linger", zap.Error(err))
		return p
	}
	if linger := p.LingerAt(rtt, distantRTT); linger != p.Linger {
		log.Info("the target is distant: batches linger producer.distant_linger",
			zap.Duration("target_rtt", rtt), zap.Duration("distant_rtt", distantRTT),
			zap.Duration("linger", linger), zap.Duration("configured", p.Linger))
		p.Linger = linger
	}
	return p
}

func codecOf(compression string) (sarama.CompressionCodec, error) {
	switch compression {
	case "none", "":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return 0, fmt.Errorf("producer.compression %q: want none, gzip, snappy, lz4 or zstd", compression)
}

// OpenPipeline returns a NewProducer that opens kmirror's own produce pipelines (pkg/produce) on
// addrs, configured by PipelineConfig from p and the connection settings net returns for a
// given batch bound.
func OpenPipeline(addrs []string, p config.Producer, log *zap.Logger, net func(maxMessageBytes int) *sarama.Config) NewProducer {
	return func(maxMessageBytes int, done produce.Done) (Producer, error) {
		c, err := PipelineConfig(net(maxMessageBytes), addrs, p, maxMessageBytes, log)
		if err != nil {
			return nil, err
		}
		pp, err := produce.New(c, done)
		if err != nil {
			return nil, err
		}
		return &pipelineProducer{Pipeline: pp, closed: make(chan struct{})}, nil
	}
}

// pipelineProducer is a produce pipeline as a worker's Producer: the worker hands it a
// partition's records in one call (ProduceBatch) and the pipeline tells their fates a batch at a
// time (the done it was opened with).
type pipelineProducer struct {
	*produce.Pipeline
	once   sync.Once
	closed chan struct{} // closed once Close returned: everything was settled
}

var _ Producer = (*pipelineProducer)(nil)

// AsyncClose implements Producer: the pipeline settles what it holds, then Done is closed.
func (p *pipelineProducer) AsyncClose() {
	p.once.Do(func() { go func() { p.Close(); close(p.closed) }() })
}

// Done implements Producer.
func (p *pipelineProducer) Done() <-chan struct{} { return p.closed }

// Knows implements Producer.
func (p *pipelineProducer) Knows(topic string, partition int32) (bool, error) {
	return knows(p.Client(), topic, partition)
}

// Release implements Producer: the pipeline closed its client when it closed.
func (p *pipelineProducer) Release() { p.Abort() }
