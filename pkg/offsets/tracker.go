// Package offsets tracks, per source partition, which fetched records the target has
// acknowledged, and owns the Committer interface through which safe offsets reach storage.
//
// It must never report an offset the target has not acknowledged: Committed only moves past a
// record once that record and every record fetched before it (in the same partition) have been
// acknowledged or deliberately skipped.
package offsets

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// ErrFull is returned by Register when the partition already has Capacity records in flight.
var ErrFull = errors.New("partition in-flight window is full")

// Partition tracks the records of one source partition between fetch and target acknowledgement.
//
// Records are registered in fetch order, one registration at a time (the source serialises them
// under the partition's claim lock, whichever goroutine delivers; "the registering goroutine"
// below is whichever holds it), singly or a fetched batch's records at once (RegisterBatch: their
// slots are written first and tail published once), and may be acknowledged in any order by any goroutine. The tracker keeps a window of
// slots indexed by a per-partition sequence number: Register writes the slot at tail and then
// publishes tail; Ack sets the slot's done flag; advance pops slots from head while they are done.
//
// The slots live in pages of pageSlots, allocated as the window fills, so that a partition with
// few records in flight holds one small page rather than its whole capacity (one process may
// follow tens of thousands of partitions). Sequence number s lives in page generation
// s/pageSlots, which sits in directory entry generation mod len(dir). The directory starts with
// two entries and doubles, up to room for twice the capacity, whenever the pages from the oldest
// not yet taken out to the one entered would fill more than half of it; so the generation that
// used an entry before is always wholly popped by the time Register reaches the entry again
// (Register stays within capacity of head). An idle partition holds a directory of two entries
// and one page: about 1 KiB, where a directory sized for the capacity took 2 KiB more.
//
// Why it is correct without a lock:
//   - A slot between head and tail is written only by Register before tail is published, and read
//     by advancers after they have loaded tail, so its offset is visible to them; its page was
//     published in the directory before the slot was written.
//   - Only Register replaces the directory (grow), before it publishes the tail that needs the
//     larger one, and the new directory holds every page of the old one not yet taken out. A
//     reader loads the directory after tail (or after learning its sequence number from the
//     registering goroutine), so it finds the page of any slot below that tail. A directory
//     replaced is never written again; a reader that still holds one can only find a page
//     reclaimed since, as a losing advancer can (below).
//   - A slot is reused only when head has moved past it, and head moves past a slot only after
//     the advancer has read its offset; Register never writes a slot at or after head+capacity.
//   - A page leaves the directory only when head has passed its last slot, and only by Register
//     (reclaim), which keeps it for a later generation; every Ack of its slots came before head
//     passed them. A losing advancer may still read a reclaimed or reused page: it finds nil (and
//     looks again) or a value it discards when its compare-and-swap on head fails.
//   - Several goroutines may advance at once (the producer's ack path and the worker's skip
//     path); each pop is a compare-and-swap on head, so every slot is popped exactly once, and
//     committed is raised with a compare-and-swap maximum, so it never moves backwards.
//   - A failed record is never marked done, so head never passes it and nothing after it can
//     become committed.
//   - A slot's offset is written by Register and read by advancers that may lose the race for
//     the slot to another advancer, after which Register may reuse it; the offset is therefore
//     an atomic, so that a losing advancer's read (whose value it discards) is not a data race.
//
// A partition stops (Stopped) when a record fails or when its claim is given up (Fence): from
// then on nothing registered in it may be handed to the target, so that a record after a failed
// one, or a record of a partition this member no longer owns, is never written.
type Partition struct {
	topic     string
	partition int32
	mask      uint64 // capacity - 1
	dir       atomic.Pointer[directory]

	// Owned by the registering goroutine.
	reclaimed uint64  // every page generation below it has been taken out of dir
	spare     []*page // pages taken out of dir, for the next generations

	_    [64]byte // keep the hot counters on their own cache lines
	head atomic.Uint64
	_    [56]byte
	tail atomic.Uint64
	_    [56]byte

	committed atomic.Int64 // next offset to consume: highest contiguous acked offset + 1
	failed    atomic.Pointer[Failure]
	fenced    atomic.Bool

	// wantRoom is set (WantRoom) by a registerer that found the window full; the advance that
	// brings the records in flight down to half the capacity clears it and calls onRoom.
	wantRoom atomic.Bool
	onRoom   func()
}

// pageSlots is the number of slots in a page (1 << pageShift): 32 slots are 768 bytes. A
// capacity below it uses part of each page.
const (
	pageShift = 5
	pageSlots = 1 << pageShift
	pageMask  = pageSlots - 1
)

// maxSpare bounds the pages a partition keeps for reuse after its window shrank; pages beyond
// it go to the garbage collector, so a burst does not pin its memory for good.
const maxSpare = 4

// page is a fixed array, so that a slot is one load and an index away from the directory.
type page [pageSlots]slot

// directory holds the pages of the generations in flight; its length is a power of two.
type directory struct{ pages []atomic.Pointer[page] }

func newDirectory(entries uint64) *directory {
	return &directory{pages: make([]atomic.Pointer[page], entries)}
}

// at is the entry of page generation gen.
func (d *directory) at(gen uint64) *atomic.Pointer[page] {
	return &d.pages[gen&uint64(len(d.pages)-1)]
}

// maxDir is the number of entries in the largest directory: room for twice the capacity, and at
// least two.
func (p *Partition) maxDir() uint64 { return max(2, 2*(p.mask+1)/pageSlots) }

type slot struct {
	offset atomic.Int64
	ts     atomic.Int64 // the record's timestamp, Unix ms (0: none); for the backlog's age only
	done   atomic.Uint32
}

// Failure says which record stopped a partition from advancing, and why.
type Failure struct {
	Offset int64
	Err    error
}

// NewPartition returns a tracker for topic/partition whose next offset to consume is start, able
// to hold capacity records in flight (rounded up to a power of two). Slots are allocated as they
// are needed, a page at a time.
func NewPartition(topic string, partition int32, start int64, capacity int) *Partition {
	n := uint64(1)
	for n < uint64(capacity) {
		n <<= 1
	}
	p := &Partition{topic: topic, partition: partition, mask: n - 1}
	p.dir.Store(newDirectory(2))
	p.committed.Store(start)
	return p
}

// slot returns the slot of sequence number seq, or nil when its page was reclaimed (head passed
// it): only a losing advancer or a metrics read can ask for one.
func (p *Partition) slot(seq uint64) *slot {
	d := p.dir.Load()
	pg := d.at(seq >> pageShift).Load()
	if pg == nil {
		return nil
	}
	return &pg[seq&pageMask]
}

// enter makes sure the page of the generation that begins at sequence number t is in the
// directory, first taking out the pages head has passed and growing the directory when the
// pages in it would fill more than half of it. Only Register calls it.
func (p *Partition) enter(t uint64) {
	gen := t >> pageShift
	d := p.dir.Load()
	popped := p.head.Load() >> pageShift
	for ; p.reclaimed < popped; p.reclaimed++ {
		e := d.at(p.reclaimed)
		if pg := e.Load(); pg != nil {
			e.Store(nil)
			if len(p.spare) < maxSpare {
				p.spare = append(p.spare, pg)
			}
		}
	}
	if live, n := gen-p.reclaimed+1, uint64(len(d.pages)); live > n/2 && n < p.maxDir() {
		d = p.grow(d, gen, live)
	}
	e := d.at(gen)
	if e.Load() != nil {
		return // this generation's page is already in (a Register was taken back)
	}
	var pg *page
	if n := len(p.spare); n > 0 {
		pg, p.spare = p.spare[n-1], p.spare[:n-1]
	} else {
		pg = new(page)
	}
	e.Store(pg)
}

// grow replaces the directory d with one that has room for at least twice live pages (up to the
// largest), holding the pages of d from the oldest not yet taken out to generation gen. Only
// enter calls it, before gen's page is entered and before the tail that needs it is published.
// Every generation from p.reclaimed to gen sits in an entry of its own in d: the previous enter
// left at most half of d in use, and one more generation fits.
func (p *Partition) grow(d *directory, gen, live uint64) *directory {
	n := uint64(len(d.pages))
	for n < p.maxDir() && live > n/2 {
		n <<= 1
	}
	nd := newDirectory(n)
	for g := p.reclaimed; g <= gen; g++ {
		nd.at(g).Store(d.at(g).Load())
	}
	p.dir.Store(nd)
	return nd
}

// Topic is the source topic this tracker follows.
func (p *Partition) Topic() string { return p.topic }

// Partition is the source partition number this tracker follows.
func (p *Partition) Partition() int32 { return p.partition }

// Register records that offset was fetched and is about to be handed on, and returns its sequence
// number, which Ack and Fail take. Only one goroutine may call Register (and Unregister) for a
// partition. It returns ErrFull when Capacity records are already in flight.
func (p *Partition) Register(offset int64) (uint64, error) {
	t := p.tail.Load()
	if t-p.head.Load() > p.mask {
		return 0, ErrFull
	}
	if t&pageMask == 0 {
		p.enter(t)
	}
	s := p.slot(t)
	s.offset.Store(offset)
	s.done.Store(0)
	p.tail.Store(t + 1)
	return t, nil
}

// Room returns how many records Register may take now (more, as records are acknowledged).
func (p *Partition) Room() int { return int(p.mask + 1 - (p.tail.Load() - p.head.Load())) }

// RegisterBatch registers n records at once, the i-th at offset(i), and returns the sequence
// number of the first (the others follow it). The slots are written first and tail published
// once, so an advancer sees all of them or none. It returns ErrFull, registering nothing, unless
// the window has room for all n. The same goroutine rule as Register's applies.
func (p *Partition) RegisterBatch(n int, offset func(i int) int64) (uint64, error) {
	t := p.tail.Load()
	if n <= 0 || t-p.head.Load()+uint64(n) > p.mask+1 {
		return 0, ErrFull
	}
	for i := range n {
		s := t + uint64(i)
		if s&pageMask == 0 || i == 0 && p.slot(s) == nil {
			p.enter(s)
		}
		sl := p.slot(s)
		sl.offset.Store(offset(i))
		sl.done.Store(0)
	}
	p.tail.Store(t + uint64(n))
	return t, nil
}

// UnregisterBatch takes back the most recent RegisterBatch (first, n), for records that were
// never handed on. Only the registering goroutine may call it.
func (p *Partition) UnregisterBatch(first uint64, n int) {
	if p.tail.Load() == first+uint64(n) {
		p.tail.Store(first)
	}
}

// OnRoom sets what is called when the window has room again after WantRoom: from the goroutine
// whose acknowledgement brought the records in flight down to half the capacity. It must not
// block. Set it before the partition is shared.
func (p *Partition) OnRoom(f func()) { p.onRoom = f }

// WantRoom asks for one call of the OnRoom func once the records in flight are down to half the
// capacity. Call it, then look at Room again: an acknowledgement between the two is then either
// seen by the second look or calls OnRoom.
func (p *Partition) WantRoom() { p.wantRoom.Store(true) }

// RegisterWait is Register that waits, politely, while the window is full. It returns ctx's
// error if ctx ends first.
func (p *Partition) RegisterWait(ctx context.Context, offset int64) (uint64, error) {
	for spins := 0; ; spins++ {
		seq, err := p.Register(offset)
		if err == nil {
			return seq, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		backoff(spins)
	}
}

// Unregister takes back the most recent Register, for a record that was never handed on (its
// hand-off was cancelled). Only the registering goroutine may call it, and only for the last seq.
func (p *Partition) Unregister(seq uint64) {
	if p.tail.Load() == seq+1 {
		p.tail.Store(seq)
	}
}

// Ack records that the record with sequence number seq is safely on the target (or was
// deliberately skipped) and advances the committed offset as far as contiguity allows.
func (p *Partition) Ack(seq uint64) {
	p.slot(seq).done.Store(1)
	p.advance()
}

// Fail records that the record with sequence number seq will never be acknowledged. The
// partition stops advancing at it; the first failure is kept.
func (p *Partition) Fail(seq uint64, err error) {
	f := &Failure{Offset: p.slot(seq).offset.Load(), Err: err}
	p.failed.CompareAndSwap(nil, f)
}

// Stamp notes the timestamp of the record registered as seq (by the registering goroutine), for
// OldestTimestamp.
func (p *Partition) Stamp(seq uint64, ts time.Time) {
	var ms int64
	if !ts.IsZero() && ts.UnixMilli() > 0 {
		ms = ts.UnixMilli()
	}
	p.slot(seq).ts.Store(ms)
}

// OldestTimestamp returns the timestamp of the oldest record not yet acknowledged, if one is in
// flight and has one. The slot may be reused while it is read: the answer is for metrics.
func (p *Partition) OldestTimestamp() (time.Time, bool) {
	h := p.head.Load()
	if h == p.tail.Load() {
		return time.Time{}, false
	}
	s := p.slot(h)
	if s == nil {
		return time.Time{}, false // popped while we looked
	}
	ms := s.ts.Load()
	if ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// Expire fails the oldest record not yet acknowledged (the one the partition waits for) with
// err, and returns the failure that now stops the partition (an earlier one, if any), or nil
// when nothing is in flight.
func (p *Partition) Expire(err error) *Failure {
	h := p.head.Load()
	if h == p.tail.Load() {
		return p.failed.Load()
	}
	if s := p.slot(h); s != nil {
		p.failed.CompareAndSwap(nil, &Failure{Offset: s.offset.Load(), Err: err})
	}
	return p.failed.Load()
}

// Fence stops the partition without a failure: its claim was given up before every record was
// acknowledged, and records still waiting to be sent must not be.
func (p *Partition) Fence() { p.fenced.Store(true) }

// Stopped reports whether records of this partition may no longer be handed to the target: one
// of them failed, or the partition was fenced.
func (p *Partition) Stopped() bool { return p.failed.Load() != nil || p.fenced.Load() }

// Settled reports whether every record registered before sequence number seq has been
// acknowledged (or deliberately skipped).
func (p *Partition) Settled(seq uint64) bool { return p.head.Load() >= seq }

// SettledBefore reports whether every record registered before the one at offset has been
// acknowledged (or deliberately skipped): the offset map asks it, from the acknowledgement of
// the record at offset, before it takes the source offsets between that record and the one
// acknowledged before it for offsets that hold no record. A false answer is always safe (the map
// then starts a new chunk); a true one is given only when the oldest record not yet popped is
// at or after offset, read while head stood still, so that its slot was not reused meanwhile.
func (p *Partition) SettledBefore(offset int64) bool {
	for {
		h := p.head.Load()
		if h == p.tail.Load() {
			return true
		}
		d := p.dir.Load()
		pg := d.at(h >> pageShift).Load()
		if pg == nil {
			continue // popped and reclaimed meanwhile; look again
		}
		off := pg[h&pageMask].offset.Load()
		if p.head.Load() == h {
			return off >= offset
		}
	}
}

func (p *Partition) advance() {
	// The page of the generation being popped is looked up once per generation: while head is in
	// that generation the page cannot have been reclaimed. committed is raised once, to the last
	// offset this call popped.
	var pg *page
	gen := ^uint64(0)
	next := int64(-1)
	for {
		h := p.head.Load()
		if h == p.tail.Load() {
			break
		}
		if g := h >> pageShift; g != gen || pg == nil {
			d := p.dir.Load()
			gen, pg = g, d.at(g).Load()
			if pg == nil {
				continue // popped and reclaimed meanwhile; look again
			}
		}
		s := &pg[h&pageMask]
		if s.done.Load() == 0 {
			break
		}
		off := s.offset.Load() + 1
		if !p.head.CompareAndSwap(h, h+1) {
			continue // another advancer popped it; look again
		}
		next = off
	}
	if next < 0 {
		return
	}
	for {
		c := p.committed.Load()
		if next <= c || p.committed.CompareAndSwap(c, next) {
			break
		}
	}
	if p.wantRoom.Load() && p.tail.Load()-p.head.Load() <= (p.mask+1)/2 && p.wantRoom.CompareAndSwap(true, false) && p.onRoom != nil {
		p.onRoom()
	}
}

// Committed returns the next offset to consume: one past the highest offset that, together with
// every offset registered before it, the target has acknowledged.
func (p *Partition) Committed() int64 { return p.committed.Load() }

// InFlight returns how many registered records are not yet popped (acknowledged in order).
func (p *Partition) InFlight() int { return int(p.tail.Load() - p.head.Load()) }

// Failed returns the failure that stopped this partition, or nil.
func (p *Partition) Failed() *Failure { return p.failed.Load() }

// Drain waits until every registered record has been acknowledged or the partition has failed,
// or ctx ends. It returns nil when all were acknowledged, the failure when one failed, and an
// error naming what was left when ctx ended first.
func (p *Partition) Drain(ctx context.Context) error {
	for spins := 0; ; spins++ {
		if f := p.failed.Load(); f != nil {
			return fmt.Errorf("%s/%d stopped at offset %d: %w", p.topic, p.partition, f.Offset, f.Err)
		}
		if p.InFlight() == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s/%d: %d records still unacknowledged, committed up to offset %d: %w",
				p.topic, p.partition, p.InFlight(), p.Committed(), context.Cause(ctx))
		}
		backoff(spins)
	}
}

// backoff spins briefly, then yields, then sleeps up to a millisecond: waiting here only happens
// when a window is full or a drain is in progress, never on the hot path.
func backoff(spins int) {
	switch {
	case spins < 16:
		runtime.Gosched()
	default:
		d := time.Duration(spins-15) * 50 * time.Microsecond
		if d > time.Millisecond {
			d = time.Millisecond
		}
		time.Sleep(d)
	}
}
