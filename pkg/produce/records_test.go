package produce

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// batchHeaderBytes is a v2 record batch's size before its records: base offset (8), length (4),
// leader epoch (4), magic (1), CRC (4), attributes (2), last offset delta (4), first and max
// timestamps (16), producer id (8) and epoch (2), first sequence (4), record count (4).
const batchHeaderBytes = 61

// oddRecords is a run of records of every shape the encoding has a case for: nil and empty keys
// and values, headers with nil and empty values, lengths that need one to three varint bytes,
// timestamps before and after the batch's first (negative and positive deltas), and more than
// 64 records (two-byte offset deltas).
func oddRecords(partition int32, run int) []*sarama.ProducerMessage {
	base := time.UnixMilli(1_700_000_000_000).Add(time.Duration(run) * time.Hour)
	var msgs []*sarama.ProducerMessage
	for i := range 300 {
		m := &sarama.ProducerMessage{Topic: "t", Partition: partition,
			Timestamp: base.Add(time.Duration(i%7-3) * 1500 * time.Millisecond)}
		switch i % 5 {
		case 0: // nil key and value
		case 1:
			m.Key, m.Value = sarama.ByteEncoder{}, sarama.ByteEncoder{}
		case 2:
			m.Key = sarama.StringEncoder(fmt.Sprintf("key-%d-%d", run, i))
			m.Value = sarama.ByteEncoder(bytes.Repeat([]byte{byte(i)}, 40*i))
		default:
			m.Key = sarama.StringEncoder("k")
			m.Value = sarama.StringEncoder(fmt.Sprintf("value %d of run %d", i, run))
		}
		if i%3 == 0 {
			m.Headers = []sarama.RecordHeader{{Key: []byte("h"), Value: nil}, {Key: []byte(""), Value: []byte{}},
				{Key: []byte("trace"), Value: bytes.Repeat([]byte("x"), i)}}
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// recordSections produces three runs of oddRecords, one after the other (so that the later
// batches are encoded into the first one's buffer, taken back from the pool), and returns the
// records of each produce request's batch as the target received them.
func recordSections(t *testing.T, own bool) [][]byte {
	t.Helper()
	c := fakeTarget(t, 1, 1)
	batches := embedded.CaptureBatches(c)
	p, settled := runPipeline(t, c)
	if !p.enc.on {
		t.Fatal("the pipeline does not encode records itself: sarama's RecordBatch has no compressedRecords " +
			"[]byte and recordsLen int any more (records.go); sarama encodes them, correctly but dearer")
	}
	p.enc.on = own
	for run := range 3 {
		produceRun(t, p, settled, run, oddRecords(0, run))
	}
	var got [][]byte
	for _, b := range batches() {
		got = append(got, b[batchHeaderBytes:])
	}
	return got
}

// produceAcked produces msgs in one call through a pipeline of cfg and fails the test unless every
// record is acknowledged within 10 s.
func produceAcked(t *testing.T, cfg Config, msgs []*sarama.ProducerMessage) {
	t.Helper()
	o := newOutcomes()
	open(t, cfg, o).ProduceBatch(context.Background(), msgs)
	o.wait(t, len(msgs), 10*time.Second)
	for v, err := range o.failed {
		t.Fatalf("record %.20q failed: %v", v, err)
	}
}

// runPipeline opens a pipeline on c for runs of oddRecords, each sent as one batch when full,
// and returns it with the channel its Done sends each batch's error to.
func runPipeline(t *testing.T, c *kfake.Cluster) (*Pipeline, chan error) {
	t.Helper()
	cfg := testConfig(c)
	cfg.Linger, cfg.BatchRecords = time.Second, 300
	settled := make(chan error, 3)
	p, err := New(cfg, func(msgs []*sarama.ProducerMessage, err error) { settled <- err })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, settled
}

// produceRun produces msgs, run number run, as one call and waits until they are settled, on
// settled (the pipeline's Done sends each batch's error there).
func produceRun(t *testing.T, p *Pipeline, settled <-chan error, run int, msgs []*sarama.ProducerMessage) {
	t.Helper()
	if n := p.ProduceBatch(context.Background(), msgs); n != len(msgs) {
		t.Fatalf("run %d: the pipeline took %d of %d records", run, n, len(msgs))
	}
	select {
	case err := <-settled:
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run %d not acknowledged after 10 s", run)
	}
}

// The records the pipeline encodes itself reach the target as the very bytes sarama's own
// encoding sends, for records of every shape and in reused buffers; and they read back as
// produced.
func TestOwnEncodingIsSaramasToTheByte(t *testing.T) {
	own, theirs := recordSections(t, true), recordSections(t, false)
	if len(own) != 3 || len(theirs) != 3 {
		t.Fatalf("want one batch per run: own encoding sent %d, sarama's %d", len(own), len(theirs))
	}
	for i := range own {
		if !bytes.Equal(own[i], theirs[i]) {
			j := 0
			for j < min(len(own[i]), len(theirs[i])) && own[i][j] == theirs[i][j] {
				j++
			}
			t.Fatalf("batch %d: own encoding %d bytes, sarama's %d; first difference at byte %d", i, len(own[i]), len(theirs[i]), j)
		}
	}

	// Read back through franz-go's decoder, each record as produced.
	for run, raw := range own {
		want := oddRecords(0, run)
		for i, m := range want {
			var r kmsg.Record
			if err := r.ReadFrom(raw); err != nil {
				t.Fatalf("run %d record %d: %v", run, i, err)
			}
			raw = raw[firstRecordLen(t, raw):]
			key, val := encoded(m.Key), encoded(m.Value)
			if !bytes.Equal(r.Key, key) || (r.Key == nil) != (key == nil) || !bytes.Equal(r.Value, val) ||
				(r.Value == nil) != (val == nil) || len(r.Headers) != len(m.Headers) || r.OffsetDelta != int32(i) {
				t.Fatalf("run %d record %d read back as key %q value %d bytes, %d headers, offset delta %d",
					run, i, r.Key, len(r.Value), len(r.Headers), r.OffsetDelta)
			}
			for h := range m.Headers {
				if r.Headers[h].Key != string(m.Headers[h].Key) || !bytes.Equal(r.Headers[h].Value, m.Headers[h].Value) {
					t.Fatalf("run %d record %d header %d read back as %q=%q", run, i, h, r.Headers[h].Key, r.Headers[h].Value)
				}
			}
		}
		if len(raw) != 0 {
			t.Fatalf("run %d: %d bytes after the last record", run, len(raw))
		}
	}
}

// recordsSize is the size of recs encoded by appendRecords, record by record: what the queue's
// sum (a batch's wire less its header) must equal.
func recordsSize(recs []sarama.Record) int {
	total := 0
	for i := range recs {
		n := recordLen(&recs[i])
		total += varintLen(int64(n)) + n
	}
	return total
}

func encoded(e sarama.Encoder) []byte {
	if e == nil {
		return nil
	}
	b, _ := e.Encode()
	return b
}

// firstRecordLen is the length of the record raw starts with, its length varint included.
func firstRecordLen(t *testing.T, raw []byte) int {
	t.Helper()
	var r kmsg.Record
	if err := r.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	return varintLen(int64(r.Length)) + int(r.Length)
}

// A batch's records are encoded with one allocation at most, none into a buffer large enough:
// grown by append instead, a new buffer was copied again at each doubling (36% of a catch-up's
// allocations).
func TestEncodingAllocatesOnceAtMost(t *testing.T) {
	recs := make([]sarama.Record, 1000)
	for i := range recs {
		recs[i] = sarama.Record{OffsetDelta: int64(i), Key: []byte("key"), Value: make([]byte, 1024),
			Headers: []*sarama.RecordHeader{{Key: []byte("h"), Value: []byte("v")}}}
	}
	need := recordsSize(recs)
	if n := testing.AllocsPerRun(20, func() { _ = appendRecords(nil, recs, need) }); n != 1 {
		t.Errorf("encoding into no buffer: %.0f allocations, want 1", n)
	}
	buf := appendRecords(nil, recs, need)
	if len(buf) != need {
		t.Fatalf("encoded %d bytes, recordsSize said %d", len(buf), need)
	}
	if n := testing.AllocsPerRun(20, func() { _ = appendRecords(buf[:0], recs, need) }); n != 0 {
		t.Errorf("encoding into a buffer large enough: %.0f allocations, want 0", n)
	}
}

// The encoder puts its buffer where sarama's RecordBatch reads its encoded records (checked by
// name, through reflect, as sarama's own fields), so that sarama writes those bytes and does
// not encode the records again.
func TestEncodedRecordsAreWhereSaramaReadsThem(t *testing.T) {
	e := newEncoder(sarama.CompressionNone, 0, 0)
	if !e.on {
		t.Fatal("sarama's RecordBatch has no compressedRecords []byte and recordsLen int: records.go cannot set them")
	}
	recs := []sarama.Record{{Key: []byte("k"), Value: []byte("v")}, {OffsetDelta: 1, Value: []byte("w")}}
	b := &batch{recs: recs, wire: batchOverhead + recordsSize(recs)} // the wire the queue sums
	e.encode(b)
	v := reflect.ValueOf(&b.rb).Elem()
	enc, n := v.FieldByName("compressedRecords"), v.FieldByName("recordsLen")
	if enc.Len() != len(b.enc) || enc.Len() == 0 || enc.Pointer() != reflect.ValueOf(b.enc).Pointer() || int(n.Int()) != len(b.enc) {
		t.Fatalf("RecordBatch holds %d encoded bytes (length field %d), want the encoder's %d", enc.Len(), n.Int(), len(b.enc))
	}
}

// The largest batch a broker takes under Kafka's default max.message.bytes, as a producer on the
// source may write it (Kafka's own, batch.size 1 MiB), goes to the target as one batch, its
// records byte for byte, under the same limit and producer.batch_bytes 1 MiB (as the worker sets
// them): batches are filled by the records' exact sizes. By sarama's upper bounds (36 bytes a
// record more), its 1 KiB records made a full batch and a second one of the records left over.
func TestSourceBatchIsOneTargetBatch(t *testing.T) {
	const maxMessageBytes = 1048588 // Kafka's default
	// The source batch, encoded by franz-go: a batch of 1,100 records cut after the last record
	// that keeps it within maxMessageBytes.
	src := fakeTarget(t, 1, 1)
	sourceBatches := embedded.CaptureBatches(src)
	cl, err := kgo.NewClient(kgo.SeedBrokers(src.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.ProducerBatchMaxBytes(4<<20), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ManualFlushing(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ts := time.UnixMilli(1_700_000_000_000)
	var msgs []*sarama.ProducerMessage
	for i := range 1100 {
		v := bytes.Repeat([]byte{byte(i)}, 1024)
		cl.Produce(context.Background(), &kgo.Record{Value: v, Timestamp: ts}, nil)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder(v), Timestamp: ts})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sb kmsg.RecordBatch
	raw := sourceBatches()
	if len(raw) != 1 || sb.ReadFrom(raw[0]) != nil || sb.NumRecords != 1100 {
		t.Fatalf("franz-go wrote the 1,100 records as %d batches, not one", len(raw))
	}
	n, size := 0, batchHeaderBytes
	for rest := raw[0][batchHeaderBytes:]; len(rest) > 0; n++ {
		l := firstRecordLen(t, rest)
		if size+l > maxMessageBytes {
			break
		}
		size += l
		rest = rest[l:]
	}
	want := raw[0][batchHeaderBytes:size]

	tgt := fakeTarget(t, 1, 1)
	targetBatches := embedded.CaptureBatches(tgt)
	cfg := testConfig(tgt)
	cfg.Linger, cfg.BatchRecords = 5*time.Millisecond, 10000
	cfg.MaxBatchBytes, cfg.BatchBytes = maxMessageBytes, min(1<<20, maxMessageBytes-batchHeaderBytes)
	produceAcked(t, cfg, msgs[:n])
	got := targetBatches()
	if len(got) != 1 {
		sizes := make([]int, len(got))
		for i, b := range got {
			sizes[i] = len(b)
		}
		t.Fatalf("a source batch of %d records, %d bytes, went to the target as %d batches of %v bytes, want one",
			n, size, len(got), sizes)
	}
	if !bytes.Equal(got[0][batchHeaderBytes:], want) {
		t.Fatalf("the target batch's records (%d bytes) are not the source batch's (%d bytes)",
			len(got[0])-batchHeaderBytes, len(want))
	}
}

// randomRecords returns n records of topic t, partition 0, of random shapes: a key (two in
// three) of up to 200 bytes, a value (nine in ten) of up to 1,500, up to two headers, and
// timestamps up to five minutes either side of one another.
func randomRecords(rng *rand.Rand, n int) []*sarama.ProducerMessage {
	base := time.UnixMilli(1_700_000_000_000)
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := range n {
		m := &sarama.ProducerMessage{Topic: "t", Timestamp: base.Add(time.Duration(rng.IntN(600_000)-300_000) * time.Millisecond)}
		if rng.IntN(3) > 0 {
			m.Key = sarama.ByteEncoder(bytes.Repeat([]byte("k"), rng.IntN(200)))
		}
		if rng.IntN(10) > 0 {
			m.Value = sarama.StringEncoder(bytes.Repeat([]byte{byte(i)}, rng.IntN(1500)))
		}
		for range rng.IntN(3) {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte("h"), Value: bytes.Repeat([]byte("v"), rng.IntN(100))})
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// Filled by exact sizes, no batch exceeds the limit, whatever its records' shapes (keys, headers,
// timestamps before and after the batch's first, one- to three-byte varints), and each batch but
// the last is full: the next record would not have fitted.
func TestBatchesFilledByExactSizeStayWithinTheLimit(t *testing.T) {
	const limit = 6000
	c := fakeTarget(t, 1, 1)
	batches := embedded.CaptureBatches(c)
	cfg := testConfig(c)
	cfg.Linger, cfg.BatchRecords, cfg.MaxBatchBytes, cfg.BatchBytes = time.Second, 10000, limit, limit
	msgs := randomRecords(rand.New(rand.NewPCG(1, 2)), 2000)
	largest := 0
	for _, m := range msgs {
		largest = max(largest, 32+len(encoded(m.Key))+len(encoded(m.Value))+len(m.Headers)*110)
	}
	produceAcked(t, cfg, msgs)
	got := batches()
	records := 0
	for i, b := range got {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		records += int(rb.NumRecords)
		if len(b) > limit {
			t.Fatalf("batch %d is %d bytes, over the limit of %d", i, len(b), limit)
		}
		if i < len(got)-1 && len(b) < limit-largest {
			t.Errorf("batch %d is %d bytes and the next record did not fit: it is not full (%d bytes the largest record)", i, len(b), largest)
		}
	}
	if records != len(msgs) {
		t.Fatalf("%d records in %d batches, want %d", records, len(got), len(msgs))
	}
}

// A batch's wire, the sum of the exact sizes the queue adds record by record, is its records'
// encoded size plus the batch header, whatever the records' shapes: the encoder sizes its buffer
// by it instead of sizing the records again, and the encoding fills that buffer exactly.
func TestBatchWireIsItsEncodedSize(t *testing.T) {
	p := &Pipeline{
		cfg: Config{Linger: time.Hour, BatchRecords: 100_000, BatchBytes: 6000, MaxBatchBytes: 6000,
			MaxBufferedBytes: 1 << 30},
		parts: map[topicPartition]*partition{}, busy: map[*partition]struct{}{},
		wakeCtl: make(chan struct{}, 1), enc: newEncoder(sarama.CompressionNone, 0, 0),
	}
	if !p.enc.on {
		t.Skip("sarama's encoded-records fields are gone: the encoder is off and sizes nothing")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	msgs := append(oddRecords(0, 0), randomRecords(rng, 3000)...)
	for len(msgs) > 0 {
		n := min(len(msgs), 1+rng.IntN(50))
		if took := p.ProduceBatch(context.Background(), msgs[:n]); took != n {
			t.Fatalf("queued %d of %d records", took, n)
		}
		msgs = msgs[n:]
	}
	part := p.parts[topicPartition{"t", 0}]
	if part == nil || len(part.batches) < 10 {
		t.Fatalf("want at least 10 batches queued, have %v", part)
	}
	for i, b := range part.batches {
		if got, want := b.wire-batchOverhead, recordsSize(b.recs); got != want {
			t.Fatalf("batch %d of %d records: wire less the header %d, records encoded %d", i, len(b.recs), got, want)
		}
		p.enc.encode(b)
		if len(b.enc) != b.wire-batchOverhead || cap(b.enc) < len(b.enc) {
			t.Fatalf("batch %d: encoded %d bytes, wire less the header %d", i, len(b.enc), b.wire-batchOverhead)
		}
	}
}
