package produce

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/IBM/sarama"
)

// An acknowledged batch leaves its records slice to the next batch and its encoding buffer to
// the next encoding, even across garbage collections (a sync.Pool is emptied by them: in a
// catch-up, which collects several times a second, most encodings found it empty); and what it
// leaves holds none of the records it carried.
func TestAcknowledgedBatchLeavesItsSlicesToTheNext(t *testing.T) {
	p, settled := runPipeline(t, fakeTarget(t, 1, 1))
	kept := func() (recs *sarama.Record, enc *byte) {
		t.Helper()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.shelf.list) != 1 || len(p.enc.bufs.list) != 1 {
			t.Fatalf("%d batches shelved and %d buffers kept after an acknowledgement, want 1 and 1",
				len(p.shelf.list), len(p.enc.bufs.list))
		}
		b := p.shelf.list[0]
		if b.msgs != nil || len(b.recs) != 0 || len(b.ptrs) != 0 || len(b.hdrs) != 0 || b.enc != nil || b.seqSet || b.closed {
			t.Fatalf("the shelved batch is not empty: %d messages, %d records, %d pointers, %d headers, encoding %d bytes",
				len(b.msgs), len(b.recs), len(b.ptrs), len(b.hdrs), len(b.enc))
		}
		for i, r := range b.recs[:cap(b.recs)] {
			if r.Key != nil || r.Value != nil || r.Headers != nil {
				t.Fatalf("the shelved batch's record %d still points at a written record's key, value or headers", i)
			}
		}
		for i, h := range b.hdrs[:cap(b.hdrs)] {
			if h != nil {
				t.Fatalf("the shelved batch's header pointer %d still points at a written message's header", i)
			}
		}
		for i, r := range b.ptrs[:cap(b.ptrs)] {
			if r != nil {
				t.Fatalf("the shelved batch's record pointer %d was not cleared", i)
			}
		}
		return unsafe.SliceData(b.recs), unsafe.SliceData(p.enc.bufs.list[0])
	}

	produceRun(t, p, settled, 0, oddRecords(0, 0))
	recs, enc := kept()
	runtime.GC()
	runtime.GC()
	produceRun(t, p, settled, 1, oddRecords(0, 0)) // the same sizes again
	recs2, enc2 := kept()
	if recs2 != recs {
		t.Error("the second batch did not take the first one's records slice")
	}
	if enc2 != enc {
		t.Error("the second batch was not encoded into the first one's buffer, two garbage collections later")
	}
}

// The shelf holds at most its bound of bytes and maxShelved batches, and a new batch takes only
// a records slice that holds what it is opened with and at most the most it may take.
func TestShelfIsBounded(t *testing.T) {
	batchOf := func(records int) *batch {
		b := &batch{recs: make([]sarama.Record, records), ptrs: make([]*sarama.Record, records),
			msgs: make([]*sarama.ProducerMessage, records)}
		for i := range b.recs {
			b.recs[i].Value = []byte("v")
		}
		return b
	}
	a := batchOf(100)
	s := shelf{maxBytes: shelvedBytes(a) + shelvedBytes(a)/2}
	s.keep(a)
	if len(s.list) != 1 || s.bytes != shelvedBytes(a) {
		t.Fatalf("shelved %d batches of %d bytes, want 1 of %d", len(s.list), s.bytes, shelvedBytes(a))
	}
	if s.keep(batchOf(100)); len(s.list) != 1 {
		t.Fatalf("shelved %d batches, want the second dropped: it does not fit beside the first", len(s.list))
	}
	if b := s.take(10, 64); b != nil {
		t.Fatal("a batch that may take 64 records took a slice of 100")
	}
	if b := s.take(101, 1000); b != nil {
		t.Fatal("a batch opened with 101 records took a slice of 100")
	}
	if b := s.take(10, 200); b != a || s.bytes != 0 || len(s.list) != 0 {
		t.Fatalf("a batch opened with 10 records that may take 200 did not take the slice of 100 (took %p, want %p; %d bytes left)", b, a, s.bytes)
	}

	s = shelf{maxBytes: 1 << 30}
	for range maxShelved + 5 {
		s.keep(batchOf(1))
	}
	if len(s.list) != maxShelved {
		t.Fatalf("shelved %d batches, want at most %d", len(s.list), maxShelved)
	}
}

// An encoding takes the smallest kept buffer that holds it and is at most a quarter larger, so a
// small batch in flight never pins a large buffer; the buffers kept are bounded.
func TestEncodingTakesTheSmallestBufferThatFits(t *testing.T) {
	s := buffers{maxBytes: 1 << 20}
	small, medium, large := make([]byte, 5, 20_000), make([]byte, 0, 25_000), make([]byte, 0, 100_000)
	s.put(large)
	s.put(medium)
	s.put(small)
	if got := s.get(1_000); unsafe.SliceData(got) == unsafe.SliceData(small) || unsafe.SliceData(got) == unsafe.SliceData(large) || cap(got) < 1_000 {
		t.Fatalf("an encoding of 1,000 bytes took a kept buffer of %d", cap(got))
	}
	if got := s.get(15_000); unsafe.SliceData(got) == unsafe.SliceData(small) {
		t.Fatal("an encoding of 15,000 bytes took the buffer of 20,000: more than a quarter larger")
	}
	if got := s.get(17_000); unsafe.SliceData(got) != unsafe.SliceData(small) || len(got) != 0 {
		t.Fatalf("an encoding of 17,000 bytes took a buffer of %d (length %d), want the emptied 20,000", cap(got), len(got))
	}
	if got := s.get(21_000); unsafe.SliceData(got) != unsafe.SliceData(medium) {
		t.Fatalf("an encoding of 21,000 bytes took a buffer of %d, want the 25,000", cap(got))
	}
	if got := s.get(85_000); unsafe.SliceData(got) != unsafe.SliceData(large) {
		t.Fatalf("an encoding of 85,000 bytes did not take the buffer of 100,000 (got %d)", cap(got))
	}
	if len(s.list) != 0 || s.bytes != 0 {
		t.Fatalf("%d buffers of %d bytes left, want none", len(s.list), s.bytes)
	}

	s = buffers{maxBytes: 150_000}
	s.put(make([]byte, 0, 100_000))
	second := make([]byte, 0, 100_000)
	if s.put(second); len(s.list) != 1 || s.bytes != 100_000 || unsafe.SliceData(s.list[0]) != unsafe.SliceData(second) {
		t.Fatalf("kept %d buffers of %d bytes, want only the second: two do not fit 150,000 bytes", len(s.list), s.bytes)
	}
	if s.put(make([]byte, 0, 200_000)); len(s.list) != 1 || unsafe.SliceData(s.list[0]) != unsafe.SliceData(second) {
		t.Fatal("a buffer larger than the whole bound was kept")
	}
	s = buffers{maxBytes: 1 << 30}
	for range maxBuffers + 3 {
		s.put(make([]byte, 0, 10))
	}
	if len(s.list) != maxBuffers {
		t.Fatalf("kept %d buffers, want at most %d", len(s.list), maxBuffers)
	}
}

// Buffers kept that no encoding fits (batches of another size) do not keep out those that would:
// an acknowledged buffer replaces the ones kept longest, so the next encoding of its size takes
// it instead of allocating. With the bound full of misfits, each encoding allocated anew before.
func TestMisfitBuffersAreReplaced(t *testing.T) {
	s := buffers{maxBytes: 3_000_000}
	for range 3 {
		s.put(make([]byte, 0, 900_000)) // fits 720,000-900,000 bytes
	}
	var acked *byte
	for i := range 5 {
		buf := s.get(1_000_000)
		if i > 0 && unsafe.SliceData(buf) != acked {
			t.Fatalf("encoding %d of 1,000,000 bytes allocated a buffer, want the one acknowledged before", i)
		}
		if i > 0 && len(s.list) != 2 {
			t.Fatalf("encoding %d: %d buffers kept, want 2 (one replaced)", i, len(s.list))
		}
		acked = unsafe.SliceData(buf)
		s.put(buf[:0])
		if s.bytes > s.maxBytes {
			t.Fatalf("kept %d bytes, bound %d", s.bytes, s.maxBytes)
		}
	}
}

// A new buffer for a batch about as large as a full one is of the full batch's size, so full
// batches of different sizes (a batch closes with the record that reaches batch_bytes, and
// partial ones close at the linger) take each other's buffers.
func TestBuffersOfFullBatchesAreOneSize(t *testing.T) {
	s := buffers{maxBytes: 10 << 20, class: 1_100_000}
	for _, need := range []int{1_000_000, 900_000, 1_099_000} {
		if got := cap(s.get(need)); got != 1_100_000 {
			t.Fatalf("a new buffer for %d bytes holds %d, want the full batch's 1,100,000", need, got)
		}
	}
	for _, need := range []int{500_000, 870_000} { // the class would be more than a quarter larger
		if got := cap(s.get(need)); got != need+need/8 {
			t.Fatalf("a new buffer for %d bytes holds %d, want %d", need, got, need+need/8)
		}
	}
	if got := cap(s.get(1_200_000)); got != 1_350_000 { // larger than a full batch (one large record)
		t.Fatalf("a new buffer for 1,200,000 bytes holds %d, want 1,350,000", got)
	}
	s.put(make([]byte, 0, 1_100_000))
	if got := s.get(880_000); cap(got) != 1_100_000 {
		t.Fatalf("an encoding of 880,000 bytes did not take the kept full batch's buffer (got %d)", cap(got))
	}
}
