// Command baresarama is the benchmark's reference for what sarama's high-level clients reach on
// the machine: the smallest mirror sarama's ConsumerGroup and AsyncProducer allow, one topic from
// a source cluster to a target cluster, with none of kmirror's machinery. benchmarks/compare
// runs it as the contender "baresarama", beside benchmarks/baremirror (the same mirror on
// franz-go): the two show what each client reaches here, and kmirror against them what its own
// layer costs or gains.
//
// A sarama consumer group on the source reads the topic from the start (or from the group's
// committed offsets); every message a claim delivers is handed to sarama's asynchronous producer
// on the target, to the same partition number of a topic of the same name
// (sarama.NewManualPartitioner): key, value, headers and timestamp are kept. The producer is
// configured as the benchmark's other contenders, in sarama's terms as kmirror sets them:
// acks=all, idempotent, linger 5 ms (Producer.Flush.Frequency), 1 MiB (Producer.Flush.Bytes:
// sarama sends a broker's request once that much is buffered for it, a partition's batch staying
// under Producer.MaxMessageBytes, Kafka's default max.message.bytes), no compression. Idempotence
// is what makes sarama require Net.MaxOpenRequests = 1: one produce request in flight per broker.
// The consumer keeps sarama's fetch defaults (1 MiB per partition, at most 500 ms of wait) and
// speaks Kafka 3.6's protocol, kmirror's default cluster.version. A full producer input blocks the
// claim; that is the only backpressure. If the target topic is missing it is created with the
// source's partition count and the broker's default replication factor. The program runs until it
// is signalled, then leaves the group and closes the producer, which sends what it was handed
// (for at most flushTimeout).
//
// It guarantees no more than the clients do:
//   - offsets are committed by sarama's autocommit (every second, and when the session ends) for
//     the messages marked, and a message is marked once it is handed to the producer, not once
//     the target acknowledged it: a crash or kill -9 loses the records handed over but not yet
//     written, and re-copies those written since the last commit;
//   - order per partition holds while the producer succeeds (the idempotent producer with one
//     request in flight does not reorder its retries); the first failed record stops the
//     program with an error, and neither it nor the records after it are retried, though the
//     commit at the end of the session may pass them;
//   - one topic, no topic config, ACL or group offset sync, no offset translation, no
//     exactly-once, no metrics.
//
// Usage:
//
//	baresarama --source HOST:PORT[,...] --target HOST:PORT[,...] --topic NAME --group ID
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/benchmarks/bare"
)

// flushTimeout bounds the soft stop: how long the records already handed to the producer get to
// be acknowledged before the producer's connections are closed under it.
const flushTimeout = 10 * time.Second

// kafkaDefaultMaxMessageBytes is Kafka's default max.message.bytes, the largest record batch a
// target topic takes unless configured otherwise; kmirror assumes it for such topics too.
const kafkaDefaultMaxMessageBytes = 1048588

func main() { bare.Main("baresarama", run) }

// baseConfig is what both sides share: the protocol version and the client id.
func baseConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = "baresarama"
	return c
}

// producerConfig is the target side: sarama's idempotent producer with the benchmark's producer
// settings. Successes are not returned: nothing waits for them.
func producerConfig() *sarama.Config {
	c := baseConfig()
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1 // sarama refuses idempotence with more
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Flush.Bytes = 1 << 20
	c.Producer.MaxMessageBytes = kafkaDefaultMaxMessageBytes
	c.Producer.Compression = sarama.CompressionNone
	c.Producer.Return.Successes = false
	c.Producer.Return.Errors = true
	return c
}

// consumerConfig is the source side: a group member starting at the oldest offset when the
// group has none, with sarama's fetch and autocommit defaults.
func consumerConfig() *sarama.Config {
	c := baseConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Return.Errors = true
	return c
}

// run mirrors c.Topic until ctx is cancelled (nil then) or a fetch or a produce fails.
func run(ctx context.Context, c bare.Config) error {
	pc := producerConfig()
	if err := pc.Validate(); err != nil {
		return fmt.Errorf("producer settings: %w", err)
	}
	// The group starts consuming as soon as it joins: create the target topic first.
	if err := createTargetTopic(c.Source, c.Target, c.Topic); err != nil {
		return err
	}
	dst, err := sarama.NewClient(c.Target, pc)
	if err != nil {
		return fmt.Errorf("target client: %w", err)
	}
	prod, err := sarama.NewAsyncProducerFromClient(dst)
	if err != nil {
		_ = dst.Close()
		return fmt.Errorf("target producer: %w", err)
	}
	loop, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	// The producer's errors are read until it closes the channel, after its last record (an
	// unread error channel would block it): the first one stops the loop and is kept for the
	// flush at the end, when the loop is over.
	produceErr, drained := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(drained)
		for pe := range prod.Errors() {
			err := fmt.Errorf("produce to %s/%d: %w", pe.Msg.Topic, pe.Msg.Partition, pe.Err)
			select {
			case produceErr <- err:
			default:
			}
			fail(err)
		}
	}()
	group, err := sarama.NewConsumerGroup(c.Source, c.Group, consumerConfig())
	if err != nil {
		_ = closeProducer(prod, dst, drained)
		return fmt.Errorf("source consumer group %q: %w", c.Group, err)
	}
	fmt.Fprintf(os.Stderr, "baresarama: mirroring %q as group %q\n", c.Topic, c.Group)
	err = mirror(loop, fail, group, prod, c.Topic)
	// The group is closed before the producer, so that no claim is left blocked on its input;
	// it commits what was marked: handed over, not necessarily acknowledged (the package doc).
	if cerr := group.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("leave the source group: %w", cerr)
	}
	flushErr := closeProducer(prod, dst, drained)
	if err == nil {
		select {
		case err = <-produceErr: // failed while flushing
		default:
			err = flushErr
		}
	}
	return err
}

// closeProducer closes prod, which sends what it holds, and then its client dst; drained closes
// once prod's error channel has (prod has settled every record). Past flushTimeout it closes dst
// first, which fails whatever prod still holds.
func closeProducer(prod sarama.AsyncProducer, dst sarama.Client, drained <-chan struct{}) error {
	prod.AsyncClose()
	select {
	case <-drained:
		_ = dst.Close()
		return nil
	case <-time.After(flushTimeout):
		_ = dst.Close()
		<-drained
		return fmt.Errorf("flush the target producer: records not acknowledged within %s", flushTimeout)
	}
}

// createTargetTopic creates topic on the target with the partition count it has on the source
// unless it exists there; an existing one must have at least as many partitions.
func createTargetTopic(source, target []string, topic string) error {
	src, err := sarama.NewClusterAdmin(source, baseConfig())
	if err != nil {
		return fmt.Errorf("source admin client: %w", err)
	}
	defer src.Close()
	want, err := partitions(src, topic)
	if err != nil {
		return fmt.Errorf("describe source topic %q: %w", topic, err)
	}
	if want == 0 {
		return fmt.Errorf("source topic %q does not exist", topic)
	}
	dst, err := sarama.NewClusterAdmin(target, baseConfig())
	if err != nil {
		return fmt.Errorf("target admin client: %w", err)
	}
	defer dst.Close()
	have, err := partitions(dst, topic)
	if err != nil {
		return fmt.Errorf("describe target topic %q: %w", topic, err)
	}
	if have > 0 {
		if have < want {
			return fmt.Errorf("target topic %q has %d partitions, fewer than the source's %d", topic, have, want)
		}
		return nil
	}
	err = dst.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: int32(want), ReplicationFactor: -1}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create target topic %q with %d partitions: %w", topic, want, err)
	}
	return nil
}

// partitions is topic's partition count on the cluster adm talks to, 0 if it does not exist.
func partitions(adm sarama.ClusterAdmin, topic string) (int, error) {
	md, err := adm.DescribeTopics([]string{topic})
	if err != nil {
		return 0, err
	}
	for _, t := range md {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Err, sarama.ErrUnknownTopicOrPartition) {
			return 0, nil
		}
		if t.Err != sarama.ErrNoError {
			return 0, t.Err
		}
		return len(t.Partitions), nil
	}
	return 0, nil
}

// mirror runs group's sessions on topic, each claim handing its messages to prod, until loop
// ends: cancelled with its parent (nil then) or failed through fail by the group, a fetch or a
// produce (that failure then).
func mirror(loop context.Context, fail context.CancelCauseFunc, group sarama.ConsumerGroup, prod sarama.AsyncProducer, topic string) error {
	go func() { // until group.Close closes the channel
		for err := range group.Errors() {
			fail(fmt.Errorf("consume %q: %w", topic, err))
		}
	}()
	h := handler{prod: prod, topic: topic}
	for loop.Err() == nil {
		// Consume returns at the end of each session (a rebalance, or loop's end); the loop
		// joins the next.
		if err := group.Consume(loop, []string{topic}, h); err != nil {
			fail(fmt.Errorf("consume %q: %w", topic, err))
		}
	}
	if cause := context.Cause(loop); !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// handler hands each message of its claims to prod as a record of topic on the target.
type handler struct {
	prod  sarama.AsyncProducer
	topic string
}

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim copies the claim's messages until the claim or the session ends. sarama's
// consumer and producer types differ (pointers to headers, encoders for key and value), so each
// message becomes a new ProducerMessage: the copy sarama's two clients require.
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			pm := &sarama.ProducerMessage{Topic: h.topic, Partition: m.Partition, Timestamp: m.Timestamp}
			if m.Key != nil {
				pm.Key = sarama.ByteEncoder(m.Key)
			}
			if m.Value != nil {
				pm.Value = sarama.ByteEncoder(m.Value)
			}
			if len(m.Headers) > 0 {
				pm.Headers = make([]sarama.RecordHeader, len(m.Headers))
				for i, hd := range m.Headers {
					pm.Headers[i] = *hd
				}
			}
			select {
			case h.prod.Input() <- pm:
			case <-sess.Context().Done():
				return nil
			}
			sess.MarkMessage(m, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}
