// Package record defines the unit that moves through kmirror: one source record, carried as
// the producer message it becomes on the target, tied to the tracker that must hear of its fate.
//
// It must never change a record's key, value, headers or timestamp, nor turn a null into an
// empty byte string or back.
package record

import (
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmirror/kmirror/pkg/offsets"
)

// overhead approximates a record's framing in a batch (length, attributes, deltas, counts).
const overhead = 24

// Record is one source record on its way to the target.
type Record struct {
	// Msg is what the target receives; Msg.Metadata points back at the Record.
	Msg sarama.ProducerMessage
	// Offset is the record's offset in its source partition.
	Offset int64
	// Seq is the record's sequence number in its partition's tracker.
	Seq uint64
	// Track is the tracker of the source partition; it must be told of the record's fate.
	Track *offsets.Partition
	// Size is the record's size in bytes as the ring's budget counts it.
	Size int64
	// Limit is the target topic's max.message.bytes.
	Limit int
	// Fetched is when kmirror received the record.
	Fetched time.Time
	// Enqueued is when the record entered its worker's inbox.
	Enqueued time.Time
	// Sent is when the worker handed the record to its producer.
	Sent time.Time
	// Span is the record's trace span when it is sampled, nil otherwise.
	Span trace.Span
}

// From converts a consumed source record into the record to produce into target, same
// partition number. Keys and values are shared, not copied: sarama hands each consumed record
// its own slices and does not reuse them.
func From(m *sarama.ConsumerMessage, target string, track *offsets.Partition, limit int) *Record {
	r := &Record{Offset: m.Offset, Track: track, Limit: limit}
	r.Msg.Topic = target
	r.Msg.Partition = m.Partition
	r.Msg.Timestamp = m.Timestamp
	size := int64(overhead)
	if m.Key != nil {
		r.Msg.Key = sarama.ByteEncoder(m.Key)
		size += int64(len(m.Key))
	}
	if m.Value != nil {
		r.Msg.Value = sarama.ByteEncoder(m.Value)
		size += int64(len(m.Value))
	}
	if len(m.Headers) > 0 {
		r.Msg.Headers = make([]sarama.RecordHeader, len(m.Headers))
		for i, h := range m.Headers {
			r.Msg.Headers[i] = *h
			size += int64(len(h.Key) + len(h.Value) + 2)
		}
	}
	r.Size = size
	r.Msg.Metadata = r
	return r
}

// Of returns the Record a producer message was made from, or nil for a foreign message.
func Of(m *sarama.ProducerMessage) *Record {
	r, _ := m.Metadata.(*Record)
	return r
}
