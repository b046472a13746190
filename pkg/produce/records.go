package produce

import (
	"encoding/binary"
	"math/bits"
	"reflect"
	"time"
	"unsafe"

	"github.com/IBM/sarama"
)

// Uncompressed batches (the default, producer.compression none) have their records encoded by
// the pipeline into a buffer the batch carries until the target acknowledges it, and then leaves
// to a later batch (spares.go).
//
// sarama's RecordBatch.encode encodes a batch's records into a fresh buffer of their size
// (encodeRecords: a sizing pass, then an encoding pass through its packetEncoder interface) and
// keeps it in its unexported compressedRecords field, which it writes as it is when it is
// already set. In a catch-up those buffers were a quarter of everything kmirror allocated (903
// of 3,405 MB for 1 GB mirrored) and their encoding 9% of its CPU. So the pipeline encodes the
// records itself, in one pass, into a buffer it reuses, and sets that field through reflect,
// only when the field is there with exactly that type (findEncodedFields); a sarama that renamed or
// retyped it makes the pipeline leave the encoding to sarama (correct, only dearer).
// TestOwnEncodingIsSaramasToTheByte compares the bytes on the wire with sarama's own.

// encoder encodes batches' records into buffers acknowledged batches gave back (spares.go).
type encoder struct {
	on   bool // sarama's fields are there: encode the records here
	at   encodedFields
	bufs buffers
}

// encodedFields is where sarama's RecordBatch keeps its encoded records: the offsets of its
// unexported compressedRecords []byte and recordsLen int (read for its compression-ratio
// metric), looked up once, when the pipeline opens, not per batch.
type encodedFields struct{ records, length uintptr }

// findEncodedFields reports where RecordBatch keeps its encoded records, and whether both fields
// are there with exactly those types.
func findEncodedFields() (encodedFields, bool) {
	t := reflect.TypeFor[sarama.RecordBatch]()
	recs, ok1 := t.FieldByName("compressedRecords")
	n, ok2 := t.FieldByName("recordsLen")
	if !ok1 || !ok2 || recs.Type != reflect.TypeFor[[]byte]() || n.Type != reflect.TypeFor[int]() {
		return encodedFields{}, false
	}
	return encodedFields{records: recs.Offset, length: n.Offset}, true
}

// newEncoder returns the encoder of a pipeline of codec, keeping up to keep bytes of buffers, a
// full batch's of class bytes (buffers).
func newEncoder(codec sarama.CompressionCodec, keep, class int) *encoder {
	at, found := findEncodedFields()
	return &encoder{on: codec == sarama.CompressionNone && found, at: at, bufs: buffers{maxBytes: keep, class: class}}
}

// encode sets the records of b's record batch, encoded, unless sarama is to encode them or they
// are already; it runs outside the pipeline's lock, on a batch closed to more records.
//
// The encoding's size is b.wire less the batch header: the queue adds each record's exact
// encoded size to it (recordWire), so no pass over the records sizes them again
// (TestBatchWireIsItsEncodedSize). It only sizes the buffer: were it short (or a batch not
// built by the queue, without a wire), appendRecords would still encode every record, growing
// the buffer by append.
func (e *encoder) encode(b *batch) {
	if !e.on || b.enc != nil {
		return
	}
	need := max(b.wire-batchOverhead, 0)
	buf := e.bufs.get(need)
	b.enc = appendRecords(buf, b.recs, need)
	e.set(&b.rb, b.enc)
}

// release takes back the encoding buffer of an acknowledged batch.
func (e *encoder) release(b *batch) {
	e.bufs.put(b.enc)
	b.enc = nil
}

// set sets rb's encoded records and their length; e.on must be true (the fields are there, of
// the types findEncodedFields checked).
func (e *encoder) set(rb *sarama.RecordBatch, raw []byte) {
	base := unsafe.Pointer(rb)
	*(*[]byte)(unsafe.Add(base, e.at.records)) = raw
	*(*int)(unsafe.Add(base, e.at.length)) = len(raw)
}

// appendRecords appends recs encoded as Kafka's v2 records (KIP-98): for each, its length, then
// attributes, timestamp delta (milliseconds), offset delta, key, value and headers, with
// zig-zag varints and -1 for a nil key, value or header value, as sarama's Record.encode writes
// them.
//
// total is their size (a batch's wire less its header), worked out first so that dst is
// grown once to it: grown by append instead, a new buffer was copied over and over
// (growslice was 15% of the CPU of a catch-up and 36% of its allocations).
func appendRecords(dst []byte, recs []sarama.Record, total int) []byte {
	if free := cap(dst) - len(dst); free < total {
		dst = append(make([]byte, 0, len(dst)+total), dst...)
	}
	for i := range recs {
		r := &recs[i]
		dst = binary.AppendVarint(dst, int64(recordLen(r)))
		ts := int64(r.TimestampDelta / time.Millisecond)
		dst = append(dst, byte(r.Attributes))
		dst = binary.AppendVarint(dst, ts)
		dst = binary.AppendVarint(dst, r.OffsetDelta)
		dst = appendBytes(dst, r.Key)
		dst = appendBytes(dst, r.Value)
		dst = binary.AppendVarint(dst, int64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = appendBytes(dst, h.Key)
			dst = appendBytes(dst, h.Value)
		}
	}
	return dst
}

// recordLen is the length of r's encoding after its length.
func recordLen(r *sarama.Record) int {
	hdrs := 0
	for _, h := range r.Headers {
		hdrs += bytesLen(h.Key) + bytesLen(h.Value)
	}
	return bodyLen(r.Key, r.Value, len(r.Headers), hdrs, r.TimestampDelta, r.OffsetDelta)
}

// recordWire is the size appendRecords gives a record, its length included: key and value,
// n headers of hdrs bytes encoded (headersLen), at timestamp delta ts and offset delta off in
// its batch. A batch is filled by these sizes: those of the records a broker counts against
// max.message.bytes, not sarama's upper bounds, which are up to 36 bytes a record larger
// (recordOverhead), so that a batch fetched from the source fits one batch on the target: by
// the upper bounds, a fetched 1 MiB of 1 KiB records made a full batch and one of the few
// records left over, sent alone when its linger ran out.
func recordWire(key, val []byte, n, hdrs int, ts time.Duration, off int64) int {
	body := bodyLen(key, val, n, hdrs, ts, off)
	return varintLen(int64(body)) + body
}

// headersLen is the size of hs' keys and values encoded in a record.
func headersLen(hs []sarama.RecordHeader) int {
	n := 0
	for i := range hs {
		n += bytesLen(hs[i].Key) + bytesLen(hs[i].Value)
	}
	return n
}

// bodyLen is the length of a record's encoding after its length (recordWire).
func bodyLen(key, val []byte, n, hdrs int, ts time.Duration, off int64) int {
	return 1 + varintLen(int64(ts/time.Millisecond)) + varintLen(off) + bytesLen(key) + bytesLen(val) +
		varintLen(int64(n)) + hdrs
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

// varintLen is the length of v as a zig-zag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}
