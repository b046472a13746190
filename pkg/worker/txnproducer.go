package worker

import (
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/produce"
)

// OpenTxn returns a delivery.Open that opens kmirror's transactional produce pipelines
// (produce.Txn) on addrs for the slots of exactly-once delivery: configured from p as the
// at-least-once pipelines are (PipelineConfig: batches within the bound, up to five requests in
// flight per broker, ordered retries within producer.delivery_timeout), under the slot's
// transactional id, with transaction timeout timeout. net returns the connection settings of
// the producer of a transactional id and batch bound.
func OpenTxn(addrs []string, p config.Producer, timeout time.Duration, log *zap.Logger,
	net func(id string, maxMessageBytes int) *sarama.Config) delivery.Open {
	return func(id string, bound int) (delivery.Producer, error) {
		c, err := PipelineConfig(net(id, bound), addrs, p, bound, log.With(zap.String("transactional_id", id)))
		if err != nil {
			return nil, err
		}
		// The records are held by the slot's transaction (delivery.Txn) until it ends: the
		// pipeline's report of them has nothing to add.
		tx, err := produce.NewTxn(c, produce.TxnConfig{ID: id, Timeout: timeout}, func([]*sarama.ProducerMessage, error) {})
		if err != nil {
			return nil, err
		}
		return txnProducer{tx}, nil
	}
}

// txnProducer is a produce.Txn as a slot's delivery.Producer.
type txnProducer struct{ *produce.Txn }

// Kill implements delivery.Producer.
func (p txnProducer) Kill() { p.Pipeline().Abort() }

// Knows implements delivery.Producer.
func (p txnProducer) Knows(topic string, partition int32) (bool, error) {
	return knows(p.Pipeline().Client(), topic, partition)
}
