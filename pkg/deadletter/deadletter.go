// Package deadletter owns the dead-letter topic on the target cluster: where a record goes that
// the target topic refuses although the source accepted it (producer.refused_policy
// dead_letter), together with where it came from and why it was refused.
//
// It must never change a dead record's key, value or original headers (same bytes, same order,
// nulls kept), only add its own kmirror.dlq.* headers after them; and Write must never return nil
// before the target has acknowledged the record, so that the caller may count the source record
// as done (and commit past it) only once it is stored.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/record"
)

// Headers added to every dead-letter record, after the original ones.
const (
	HeaderSourceTopic     = "kmirror.dlq.source.topic"
	HeaderSourcePartition = "kmirror.dlq.source.partition"
	HeaderSourceOffset    = "kmirror.dlq.source.offset"
	// HeaderSourceTimestamp is the source record's timestamp in milliseconds since the epoch,
	// or -1 when it had none.
	HeaderSourceTimestamp = "kmirror.dlq.source.timestamp"
	// HeaderReason is the refusal's error text (it names the target topic config and the fix).
	HeaderReason = "kmirror.dlq.reason"
)

// DefaultTopic is the dead-letter topic's name when producer.dead_letter_topic is empty:
// "__kmirror.dead-letter.<source alias>". kmirror never mirrors a topic whose name starts with
// "__", so dead letters are not mirrored onward by a mirror reading this cluster.
func DefaultTopic(sourceAlias string) string { return config.DeadLetterPrefix + sourceAlias }

// headroom is added to MaxMessageBytes in the created topic's max.message.bytes: a dead letter
// is the refused record plus kmirror's headers, so a record the source accepted at its limit
// must still fit.
const headroom = 64 << 10

// Admin is the part of sarama.ClusterAdmin the writer uses to create the topic.
type Admin interface {
	CreateTopic(topic string, detail *sarama.TopicDetail, validateOnly bool) error
	DescribeCluster() (brokers []*sarama.Broker, controllerID int32, err error)
}

// Config configures a Writer.
type Config struct {
	// Producer writes to the target cluster. It is a SyncProducer, not an AsyncProducer or a
	// Client: dead letters are rare, and a call that returns once the record is acknowledged
	// (or has failed) is the whole contract the caller needs to decide whether the source
	// record is done; a caller-supplied producer can be a real one or a test double. It must
	// have Producer.Return.Successes set (sarama requires it for a SyncProducer), should use
	// acks=all, and its Producer.MaxMessageBytes must cover a refused record plus the added
	// headers. The Writer does not close it.
	Producer sarama.SyncProducer
	// Admin creates Topic on the target when it is missing. Nil: the topic must exist.
	Admin Admin
	// Topic is the dead-letter topic (DefaultTopic when empty needs SourceAlias).
	Topic string
	// SourceAlias names the source cluster, for DefaultTopic.
	SourceAlias string
	// Partitions of the topic when created; 1 when 0, which keeps refusals in order.
	Partitions int32
	// ReplicationFactor of the topic when created, capped at the target's broker count; 3 when 0.
	ReplicationFactor int16
	// MaxMessageBytes is the largest record the source accepts; the created topic's
	// max.message.bytes is this plus room for the added headers. 1048588 when 0.
	MaxMessageBytes int
	// Now is the clock giving each dead letter its timestamp; time.Now when nil.
	Now func() time.Time
	Log *zap.Logger
}

// DeadRecord is a source record the target refused, as the worker holds it.
type DeadRecord struct {
	// Topic, Partition and Offset locate the record on the source.
	Topic     string
	Partition int32
	Offset    int64
	// Key and Value are the record's bytes; nil stays null.
	Key, Value []byte
	// Headers are the record's own headers, written first and unchanged.
	Headers []sarama.RecordHeader
	// Timestamp is the source record's timestamp; the zero time when it had none.
	Timestamp time.Time
	// Reason is why the target refused it (a *topics.RefusedError, typically).
	Reason error
}

// Writer writes dead records to the dead-letter topic. It is safe for concurrent use.
type Writer struct {
	cfg Config
	log *zap.Logger

	mu      sync.Mutex
	created bool // the topic exists (created by us or found existing)
}

// New checks cfg and returns a Writer. Nothing is sent until Write (or Ensure).
func New(cfg Config) (*Writer, error) {
	if cfg.Producer == nil {
		return nil, errors.New("deadletter: a producer is required")
	}
	if cfg.Topic == "" {
		if cfg.SourceAlias == "" {
			return nil, errors.New("deadletter: name the topic or the source alias")
		}
		cfg.Topic = DefaultTopic(cfg.SourceAlias)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.ReplicationFactor <= 0 {
		cfg.ReplicationFactor = 3
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1048588
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	w := &Writer{cfg: cfg, log: cfg.Log.With(zap.String("dead_letter_topic", cfg.Topic))}
	if !strings.HasPrefix(cfg.Topic, "__") {
		w.log.Warn("the dead-letter topic's name does not start with \"__\": a mirror reading this cluster would mirror it " +
			"unless its topics.exclude names it")
	}
	return w, nil
}

// Topic returns the dead-letter topic's name.
func (w *Writer) Topic() string { return w.cfg.Topic }

// Ensure creates the dead-letter topic on the target unless it exists: cleanup.policy delete
// (keyless records accepted), CreateTime, max.message.bytes above what the source accepts. An
// existing topic is left as it is. Write calls it first; calling it at start surfaces a missing
// permission before any record is refused.
func (w *Writer) Ensure(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.created || w.cfg.Admin == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rf := w.cfg.ReplicationFactor
	brokers, _, err := w.cfg.Admin.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describe target cluster for dead-letter topic %q: %w", w.cfg.Topic, err)
	}
	if n := len(brokers); n > 0 && int(rf) > n {
		rf = int16(n)
	}
	str := func(s string) *string { return &s }
	detail := &sarama.TopicDetail{NumPartitions: w.cfg.Partitions, ReplicationFactor: rf, ConfigEntries: map[string]*string{
		"cleanup.policy":         str("delete"),
		"message.timestamp.type": str("CreateTime"),
		"max.message.bytes":      str(strconv.Itoa(w.cfg.MaxMessageBytes + headroom)),
	}}
	err = w.cfg.Admin.CreateTopic(w.cfg.Topic, detail, false)
	switch {
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
	case err != nil:
		return fmt.Errorf("create dead-letter topic %q (%d partitions, replication factor %d): %w", w.cfg.Topic, w.cfg.Partitions, rf, err)
	default:
		w.log.Info("created dead-letter topic", zap.Int32("partitions", w.cfg.Partitions), zap.Int16("replication_factor", rf))
	}
	w.created = true
	return nil
}

// Write stores m in the dead-letter topic and returns once the target has acknowledged it. The
// dead letter keeps m's key, value and headers byte for byte, adds the kmirror.dlq.* headers
// after them, and carries the current time as its timestamp (the source's is in a header):
// the time it was refused, and one the dead-letter topic accepts.
func (w *Writer) Write(ctx context.Context, m DeadRecord) error {
	if err := w.Ensure(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	msg := w.message(m)
	if _, _, err := w.cfg.Producer.SendMessage(msg); err != nil {
		return fmt.Errorf("write %s/%d offset %d to dead-letter topic %q: %w", m.Topic, m.Partition, m.Offset, w.cfg.Topic, err)
	}
	return nil
}

// WriteRecord is Write for a record in transit, as a partition worker holds it: the source
// position comes from its tracker, key, value, headers and timestamp from the message it was to
// be sent as (so a record whose source had no timestamp says -1).
func (w *Writer) WriteRecord(ctx context.Context, r *record.Record, reason error) error {
	return w.Write(ctx, DeadRecordOf(r, reason))
}

// DeadRecordOf describes a record in transit as a DeadRecord. Key and value are the record's
// own bytes, not copies; a record without a tracker has an empty source topic and partition 0.
func DeadRecordOf(r *record.Record, reason error) DeadRecord {
	d := DeadRecord{Offset: r.Offset, Headers: r.Msg.Headers, Timestamp: r.Msg.Timestamp, Reason: reason}
	if r.Track != nil {
		d.Topic, d.Partition = r.Track.Topic(), r.Track.Partition()
	}
	if r.Msg.Key != nil {
		d.Key, _ = r.Msg.Key.Encode() // the record's encoders never fail
	}
	if r.Msg.Value != nil {
		d.Value, _ = r.Msg.Value.Encode()
	}
	return d
}

// message builds the dead letter for m.
func (w *Writer) message(m DeadRecord) *sarama.ProducerMessage {
	ts := int64(-1) // none: the zero time, or before the epoch as sarama reports a -1
	if ms := m.Timestamp.UnixMilli(); ms >= 0 {
		ts = ms
	}
	reason := "unknown"
	if m.Reason != nil {
		reason = m.Reason.Error()
	}
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+5)
	headers = append(headers, m.Headers...)
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderSourceTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderSourcePartition), Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		sarama.RecordHeader{Key: []byte(HeaderSourceOffset), Value: strconv.AppendInt(nil, m.Offset, 10)},
		sarama.RecordHeader{Key: []byte(HeaderSourceTimestamp), Value: strconv.AppendInt(nil, ts, 10)},
		sarama.RecordHeader{Key: []byte(HeaderReason), Value: []byte(reason)},
	)
	msg := &sarama.ProducerMessage{Topic: w.cfg.Topic, Headers: headers, Timestamp: w.cfg.Now()}
	// A nil Encoder, not an encoder of a nil slice, is what keeps a null key or value null.
	if m.Key != nil {
		msg.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		msg.Value = sarama.ByteEncoder(m.Value)
	}
	return msg
}
