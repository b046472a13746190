package produce

import (
	"slices"
	"sync"
	"unsafe"

	"github.com/IBM/sarama"
)

// A batch the target acknowledged leaves its slices to later batches of the pipeline: its
// records (recs), the pointers sarama's RecordBatch reads them through (ptrs) and its header
// pointers (hdrs) to a new batch (shelf), its encoded records (enc) to a later encoding
// (buffers). In a catch-up, allocating them new was a quarter of what kmirror allocated for each
// GB it mirrored (the records' slice, grown by append while a batch lingers, 0.37 GB; the
// encoding buffers a sync.Pool no longer held after a garbage collection, 0.38 GB), and every
// allocation is paid again in collections and in clearing large buffers.
//
// Only an acknowledged batch gives its slices back: a request carrying it was then encoded and
// written whole, and its answer read, so nothing reads them any more. A batch failed or aborted
// is left to the garbage collector, since a request carrying it may still be being encoded
// (Abort). Its messages (msgs) are never kept: they go to Done, which may hold on to them (a Txn
// does, until the commit).
//
// Neither lets a batch carry much more memory than its own while it is in flight:
//   - an encoding buffer is taken only when it holds the encoding and is at most a quarter larger
//     (the smallest that fits is taken; a new one has an eighth more room than its encoding);
//   - a new batch takes a records slice that holds what it is opened with and at most twice as
//     many records as its partition's recent batches took (a batch grows while it lingers, so
//     what it is opened with says little of what it will hold).
//
// Bound: the shelf holds at most maxShelved batches and a quarter of the pipeline's
// MaxBufferedBytes (what it may hold of records in flight), the buffers at most maxBuffers
// buffers and half of it; a batch's slices that do not fit are dropped, an acknowledged buffer
// that does not fit replaces the buffers kept longest. With the encodings in flight (at most a
// quarter more than the records), a pipeline holds at most twice its MaxBufferedBytes besides
// its records (config.EncodingShare, in the memory bound).

const (
	maxShelved = 64
	maxBuffers = 16
	// minRecords and minBuffer are sizes below which waste does not matter.
	minRecords = 64
	minBuffer  = 4 << 10
)

// shelf keeps acknowledged batches' records slices for new batches; the pipeline's mutex guards it.
type shelf struct {
	list     []*batch
	bytes    int // held, as shelvedBytes counts them
	maxBytes int
}

// take returns a shelved batch, emptied, whose records slice holds at least records records and
// at most most; nil when there is none.
func (s *shelf) take(records, most int) *batch {
	for i := len(s.list) - 1; i >= 0; i-- {
		b := s.list[i]
		if c := cap(b.recs); c < records || c > most {
			continue
		}
		s.list = removeAt(s.list, i)
		s.bytes -= shelvedBytes(b)
		return b
	}
	return nil
}

// keep shelves b's slices, if they fit the bound; b's encoding buffer must have been taken off.
func (s *shelf) keep(b *batch) {
	n := shelvedBytes(b)
	if len(s.list) >= maxShelved || s.bytes+n > s.maxBytes {
		return
	}
	// Drop what the written records pointed at (fetched responses, messages); past their
	// lengths the slices were cleared before (or never written).
	clear(b.recs)
	clear(b.ptrs)
	clear(b.hdrs)
	*b = batch{recs: b.recs[:0], ptrs: b.ptrs[:0], hdrs: b.hdrs[:0]}
	s.list = append(s.list, b)
	s.bytes += n
}

// shelvedBytes is the memory of b's records slices.
func shelvedBytes(b *batch) int {
	return cap(b.recs)*int(unsafe.Sizeof(sarama.Record{})) + (cap(b.ptrs)+cap(b.hdrs))*int(unsafe.Sizeof(uintptr(0)))
}

// buffers keeps acknowledged batches' encoding buffers for later encodings. Encodings run
// outside the pipeline's mutex: it has its own.
//
// A buffer fits encodings up to a quarter smaller than it, so buffers must come in few sizes to
// be reused, and the kept ones must be of the sizes encodings need now. In a catch-up across an
// 80 ms round trip (batches of 0.75-1 MiB, most of them full) 458 of 1,002 encodings found only
// buffers of other sizes kept (sized an eighth above batches of 0.8 and 1 MiB, they do not
// fit each other), 434 acknowledged buffers were dropped because those filled the bound, and
// the encodings allocated 0.59 GB for each GB mirrored (0.15 GB on loopback). So a new buffer for
// a batch about as large as a full one (class, at most a quarter above it) is allocated at
// class, which then fits every such batch; and a buffer acknowledged when the bound is full
// replaces those kept longest, which no encoding has taken since.
type buffers struct {
	mu       sync.Mutex
	list     [][]byte // kept longest first
	bytes    int
	maxBytes int
	class    int // the size of a buffer for a full batch (0: none)
}

// get returns an empty buffer that holds need bytes: the smallest kept one that is at most a
// quarter larger, or a new one: of class when that is at most a quarter larger, else with an
// eighth more room than need (the next batch of the partition, about as large, then fits it
// too).
func (s *buffers) get(need int) []byte {
	s.mu.Lock()
	best := -1
	for i, b := range s.list {
		if c := cap(b); c >= need && c <= max(need+need/4, minBuffer) && (best < 0 || c < cap(s.list[best])) {
			best = i
		}
	}
	if best < 0 {
		s.mu.Unlock()
		size := need + need/8
		if s.class >= need && s.class <= need+need/4 {
			size = s.class
		}
		return make([]byte, 0, size)
	}
	buf := s.list[best]
	s.list = slices.Delete(s.list, best, best+1)
	s.bytes -= cap(buf)
	s.mu.Unlock()
	return buf[:0]
}

// put keeps buf, dropping the buffers kept longest when it does not fit the bound beside them
// (one larger than the whole bound is dropped itself).
func (s *buffers) put(buf []byte) {
	c := cap(buf)
	if c == 0 || c > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for len(s.list)-n >= maxBuffers || s.bytes+c > s.maxBytes {
		s.bytes -= cap(s.list[n])
		n++
	}
	s.list = append(slices.Delete(s.list, 0, n), buf)
	s.bytes += c
}

// removeAt removes list[i], moving the last element into its place (the order of spares does not
// matter), and clears the freed slot so that the list holds no reference to it.
func removeAt[T any](list []T, i int) []T {
	last := len(list) - 1
	list[i] = list[last]
	var zero T
	list[last] = zero
	return list[:last]
}
