// Package record defines the unit that moves through kmirror: one source record, carried as
// the producer message it becomes on the target, tied to the tracker that must hear of its fate.
//
// It must never change a record's key, value, headers or timestamp, nor turn a null into an
// empty byte string or back, and never copy a key or a value: the copy shares sarama's slices.
// The one exception is a record without a timestamp (-1 on the wire), which sarama cannot send
// as such: its copy is stamped with the producer's clock (see fill). Provenance, when asked for
// (topics.provenance_header), appends one header to a record that lacks it, after the record's
// own, which stay as they were.
package record

import (
	"bytes"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/topics"
)

// overhead approximates a record's framing in a batch (length, attributes, deltas, counts).
const overhead = 24

// Record is one source record on its way to the target.
type Record struct {
	// Msg is what the target receives; Msg.Metadata points back at the Record, and Msg.Key and
	// Msg.Value point at the Record's own encoders.
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
	// Accept, when set, is the target topic as it decides which records it accepts (cleanup
	// policy, timestamp bounds); shared by every record of a claim.
	Accept *topics.Topic
	// Copies, when set, is told where the target put the record's copy once it is acknowledged
	// (the offset map); shared by every record of a claim.
	Copies Copies
	// Handed is set when the worker has handed the record to its producer.
	Handed bool
	// FromTarget is set when the record's provenance header names the target cluster
	// (Provenance): it came from there and is not copied back; the worker counts it and moves
	// its partition's position past it.
	FromTarget bool
	// Behind is set when its source partition held later records than it when it was read (the
	// partition's high watermark was past it and the transaction marker that may follow it): the
	// mirror is catching up on that partition.
	Behind bool
	// Span is the record's trace span when it is sampled, nil otherwise.
	Span trace.Span
	// Fetched, Enqueued and Sent are when kmirror received the record, when it entered its
	// worker's inbox and when the worker handed it to its producer. They are noted only for a
	// record with a Span, whose stages they time: reading the clock costs about a tenth of
	// what kmirror spends on a record.
	Fetched, Enqueued, Sent time.Time

	// key and value are the encoders Msg.Key and Msg.Value point at. A sarama.ByteEncoder
	// stored in the Encoder interface escapes to the heap, one allocation each; a pointer to a
	// field of the Record costs nothing.
	key, value bytesEncoder
	// headers is the backing array of Msg.Headers, kept across reuse by a Pool.
	headers []sarama.RecordHeader
}

// Copies learns, from each acknowledgement, the target offset of a source record's copy.
type Copies interface {
	Copied(source, target int64)
}

// bytesEncoder is a sarama.Encoder over a slice it does not copy. A nil slice encodes as a null.
type bytesEncoder struct{ b []byte }

func (e *bytesEncoder) Encode() ([]byte, error) { return e.b, nil }
func (e *bytesEncoder) Length() int             { return len(e.b) }

// From converts a consumed source record into the record to produce into target, same
// partition number. Keys, values and header bytes are shared, not copied: sarama hands each
// consumed record its own slices and does not reuse them.
func From(m *sarama.ConsumerMessage, target string, track *offsets.Partition, limit int) *Record {
	r := &Record{}
	r.fill(m, target, track, limit)
	return r
}

func (r *Record) fill(m *sarama.ConsumerMessage, target string, track *offsets.Partition, limit int) {
	r.Offset, r.Track, r.Limit = m.Offset, track, limit
	r.Msg.Topic = target
	r.Msg.Partition = m.Partition
	r.Msg.Timestamp = m.Timestamp
	if m.Timestamp.UnixMilli() < 0 {
		// A record without a timestamp (-1) reaches us as the zero time when it leads its
		// fetched batch and as 1969-12-31T23:59:59.999Z (the batch's first timestamp plus a
		// negative delta) when it does not. sarama's producer stamps a zero time with its own
		// clock, but fails the whole request with "invalid timestamp" for the other when it
		// leads an outgoing batch, which would stop the partition for good. Both go out as the
		// zero time, so every such record is copied the same way: with the producer's clock.
		r.Msg.Timestamp = time.Time{}
	}
	size := int64(overhead)
	if m.Key != nil {
		r.key.b = m.Key
		r.Msg.Key = &r.key
		size += int64(len(m.Key))
	}
	if m.Value != nil {
		r.value.b = m.Value
		r.Msg.Value = &r.value
		size += int64(len(m.Value))
	}
	if n := len(m.Headers); n > 0 {
		if cap(r.headers) < n {
			r.headers = make([]sarama.RecordHeader, n)
		}
		r.Msg.Headers = r.headers[:n]
		for i, h := range m.Headers {
			r.Msg.Headers[i] = *h
			size += int64(len(h.Key) + len(h.Value) + 2)
		}
	}
	r.Size = size
	r.Msg.Metadata = r
}

// appendHeader adds h after the record's headers, in the Record's own backing array (no
// allocation once a pooled Record has had room for it).
func (r *Record) appendHeader(h sarama.RecordHeader) {
	n := len(r.Msg.Headers)
	if cap(r.headers) < n+1 {
		grown := make([]sarama.RecordHeader, n+1, n+2)
		copy(grown, r.Msg.Headers)
		r.headers = grown
	} else {
		r.headers = r.headers[:n+1]
		copy(r.headers, r.Msg.Headers) // a no-op when Msg.Headers is already r.headers[:n]
	}
	r.headers[n] = h
	r.Msg.Headers = r.headers[:n+1]
	r.Size += int64(len(h.Key) + len(h.Value) + 2)
}

// Provenance is topics.provenance_header: every copy carries the header config.OriginHeader
// naming the cluster its record was first written to, so that in an active-active pair
// (europe→us and us→europe, identity policy) a record is never copied back to where it came
// from. A record that has the header keeps it as it is (it was copied before: its first cluster
// is already named); one without gets the source's alias, after its own headers. A record whose
// header names the target came from there: it is marked FromTarget and not copied.
type Provenance struct {
	key            []byte
	source, target []byte
}

// NewProvenance returns the provenance of a flow from source to target (the clusters' aliases),
// with header key key.
func NewProvenance(key, source, target string) *Provenance {
	return &Provenance{key: []byte(key), source: []byte(source), target: []byte(target)}
}

// Apply looks at the headers of m, the record r was made from: the first header with the
// provenance key decides (FromTarget when it names the target); without one, the header is
// added to r's copy.
func (p *Provenance) Apply(r *Record, m *sarama.ConsumerMessage) {
	for _, h := range m.Headers {
		if h != nil && bytes.Equal(h.Key, p.key) {
			r.FromTarget = bytes.Equal(h.Value, p.target)
			return
		}
	}
	r.appendHeader(sarama.RecordHeader{Key: p.key, Value: p.source})
}

// Key returns the record's key: nil for a null key.
func (r *Record) Key() []byte { return r.key.b }

// Of returns the Record a producer message was made from, or nil for a foreign message.
func Of(m *sarama.ProducerMessage) *Record {
	r, _ := m.Metadata.(*Record)
	return r
}

// Pool recycles Records, so that the steady state of the data path allocates none of its own
// per record. The zero value is ready to use.
//
// A Record may be put back only once its fate is final and nothing holds it any longer: the
// producer has returned its message (on Successes or Errors), the tracker has been told, and the
// observers have returned. Put drops every reference the Record held, so a Record waiting in the
// pool never keeps a fetched batch alive.
type Pool struct {
	p sync.Pool
}

// From is From, on a recycled Record when there is one. A nil Pool allocates.
func (p *Pool) From(m *sarama.ConsumerMessage, target string, track *offsets.Partition, limit int) *Record {
	if p == nil {
		return From(m, target, track, limit)
	}
	r, _ := p.p.Get().(*Record)
	if r == nil {
		r = &Record{}
	}
	r.fill(m, target, track, limit)
	return r
}

// Put returns r to the pool. r must not be used afterwards. A nil Pool does nothing.
func (p *Pool) Put(r *Record) {
	if p == nil {
		return
	}
	h := r.headers
	if cap(r.Msg.Headers) > cap(h) {
		h = r.Msg.Headers // grown by trace-context injection: keep the larger array
	}
	clear(h[:cap(h)])
	*r = Record{headers: h[:0]}
	p.p.Put(r)
}
