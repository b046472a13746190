// Package ring owns the bounded, lock-free queues that carry batches of one partition's records
// from the source (its fetch loops, and the source's per-worker pusher) to the partition workers,
// and the fixed routing of source partitions onto them.
//
// It must never grow without bound and never drop: a full queue refuses TryPush (the source then
// keeps the batch and stops fetching its partition until room frees: backpressure onto the
// source partition) or makes Push wait, and every pushed item is popped exactly once.
package ring

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// Queue is a bounded multi-producer multi-consumer FIFO, bounded both in items and in bytes.
//
// It is Dmitry Vyukov's bounded MPMC array queue: every cell carries a sequence number that says
// whose turn it is. A pusher claims position pos by a compare-and-swap on enq when the cell's
// sequence equals pos, writes the value, then publishes it by storing pos+1; a popper claims pos
// when the sequence equals pos+1, reads, then frees the cell for the pusher one lap later by
// storing pos+capacity. A cell is therefore only ever touched by the one goroutine whose turn the
// sequence says it is, which is what makes the plain value read and write safe, and FIFO order
// holds per position (so per pusher, and so per source partition, whose batches are pushed one at
// a time, under the partition's claim lock, whichever goroutine pushes them). No mutex or channel is on the push/pop path: waiting goroutines park on a channel
// only after the fast path has found the queue full or empty.
//
// The byte bound is a reservation counter taken before a cell is claimed and given back when the
// item is popped. An item larger than the whole byte budget is still admitted into an empty
// queue, so one large record can never wedge a partition.
type Queue[T any] struct {
	cells    []cell[T]
	mask     uint64
	maxBytes int64

	_     [64]byte
	enq   atomic.Uint64
	_     [56]byte
	deq   atomic.Uint64
	_     [56]byte
	bytes atomic.Int64
	_     [56]byte
	count atomic.Int64 // the pushers' counts of the queued items (TryPushN)
	_     [56]byte

	notEmpty waiters
	notFull  waiters
}

type cell[T any] struct {
	seq   atomic.Uint64
	size  int64
	count int64
	val   T
}

// NewQueue returns a queue holding at most capacity items (rounded up to a power of two, at
// least 2) and maxBytes bytes as reported by the pushers.
func NewQueue[T any](capacity int, maxBytes int64) *Queue[T] {
	n := uint64(2)
	for n < uint64(capacity) {
		n <<= 1
	}
	q := &Queue[T]{cells: make([]cell[T], n), mask: n - 1, maxBytes: maxBytes}
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
	}
	q.notEmpty.init()
	q.notFull.init()
	return q
}

// Cap returns the queue's capacity in items.
func (q *Queue[T]) Cap() int { return len(q.cells) }

// Len returns how many items are in the queue (approximate while others push and pop).
func (q *Queue[T]) Len() int {
	n := int64(q.enq.Load()) - int64(q.deq.Load())
	if n < 0 {
		return 0
	}
	return int(n)
}

// Bytes returns the bytes reserved by queued items (approximate while others push and pop).
func (q *Queue[T]) Bytes() int64 { return q.bytes.Load() }

// Count returns the sum of the counts of the queued items (TryPushN; one per item pushed
// otherwise): the records in the queue when items are batches. Approximate while others push and
// pop.
func (q *Queue[T]) Count() int64 { return q.count.Load() }

// TryPush adds v, accounting size bytes, unless the queue is full in items or bytes.
func (q *Queue[T]) TryPush(v T, size int64) bool { return q.TryPushN(v, size, 1) }

// TryPushN is TryPush of an item that counts as n in Count (a batch of n records).
func (q *Queue[T]) TryPushN(v T, size int64, n int) bool {
	if b := q.bytes.Add(size); b > q.maxBytes && b != size {
		q.bytes.Add(-size) // over budget and not alone in the queue: give the reservation back
		return false
	}
	pos := q.enq.Load()
	var c *cell[T]
	for {
		c = &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos); {
		case dif == 0:
			if q.enq.CompareAndSwap(pos, pos+1) {
				goto claimed
			}
			pos = q.enq.Load()
		case dif < 0:
			q.bytes.Add(-size)
			return false
		default:
			pos = q.enq.Load()
		}
	}
claimed:
	c.val = v
	c.size = size
	c.count = int64(n)
	q.count.Add(int64(n))
	c.seq.Store(pos + 1)
	q.notEmpty.wake()
	return true
}

// TryPop removes the oldest item, if there is one.
func (q *Queue[T]) TryPop() (T, bool) {
	var zero T
	pos := q.deq.Load()
	var c *cell[T]
	for {
		c = &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos+1); {
		case dif == 0:
			if q.deq.CompareAndSwap(pos, pos+1) {
				goto claimed
			}
			pos = q.deq.Load()
		case dif < 0:
			return zero, false
		default:
			pos = q.deq.Load()
		}
	}
claimed:
	v, size, n := c.val, c.size, c.count
	c.val = zero // let the garbage collector have it
	c.seq.Store(pos + q.mask + 1)
	q.bytes.Add(-size)
	q.count.Add(-n)
	q.notFull.wake()
	return v, true
}

// Push adds v, waiting while the queue is full. It returns ctx's error, having added nothing, if
// ctx ends first.
func (q *Queue[T]) Push(ctx context.Context, v T, size int64) error {
	if q.TryPush(v, size) {
		return nil
	}
	for spins := 0; ; spins++ {
		if q.TryPush(v, size) {
			return nil
		}
		if spins < 8 {
			runtime.Gosched()
			continue
		}
		pushed, err := q.notFull.park(ctx, parkTimeout, func() bool { return q.TryPush(v, size) })
		if pushed {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// WaitRoom lets a goroutine that found the queue full wait for a pop without parking inside Push
// (the source's pusher waits for room and for other events at once). It announces a waiter and
// returns a channel that receives when an item is popped after the announcement, and the func to
// call once the caller stops waiting. Announce first, try TryPush second, then wait: a pop either
// sees the waiter or comes before the try, so no wake-up is lost. A token may also be taken by a
// goroutine waiting in Push, so callers wait with a timeout as well.
func (q *Queue[T]) WaitRoom() (room <-chan struct{}, done func()) {
	q.notFull.sleeping.Add(1)
	return q.notFull.ch, func() { q.notFull.sleeping.Add(-1) }
}

// Pop removes the oldest item, waiting while the queue is empty. It returns ctx's error if ctx
// ends first.
func (q *Queue[T]) Pop(ctx context.Context) (T, error) {
	if v, ok := q.TryPop(); ok {
		return v, nil
	}
	for spins := 0; ; spins++ {
		if v, ok := q.TryPop(); ok {
			return v, nil
		}
		if spins < 8 {
			runtime.Gosched()
			continue
		}
		// A queue has one popper (its worker), so a push's wake-up token cannot go to another
		// one: the timeout only guards, and grows while the queue stays empty, so that an idle
		// worker does not wake 200 times a second.
		var v T
		d := min(parkTimeout<<min(spins-8, 5), idleParkTimeout)
		popped, err := q.notEmpty.park(ctx, d, func() (ok bool) { v, ok = q.TryPop(); return ok })
		if popped {
			return v, nil
		}
		if err != nil {
			return v, err
		}
	}
}

// waiters parks goroutines that found the queue full (or empty) until the other side makes
// progress. The fast path only pays an atomic load (wake with no sleepers).
type waiters struct {
	sleeping atomic.Int32
	ch       chan struct{}
}

func (w *waiters) init() { w.ch = make(chan struct{}, 1) }

func (w *waiters) wake() {
	if w.sleeping.Load() > 0 {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// parkTimeout bounds one sleep, so that a wake-up token lost to another sleeper only costs a
// short delay, never a hang. A popper that keeps finding the queue empty sleeps up to
// idleParkTimeout.
const (
	parkTimeout     = 5 * time.Millisecond
	idleParkTimeout = 100 * time.Millisecond
)

// park announces a sleeper, then tries once more (announcing first, trying second is what
// prevents a lost wake-up: the other side either sees the sleeper or the sleeper sees its work),
// and otherwise sleeps until woken, ctx ends or timeout passes. It reports whether the try
// succeeded; the caller retries otherwise.
func (w *waiters) park(ctx context.Context, timeout time.Duration, try func() bool) (bool, error) {
	w.sleeping.Add(1)
	defer w.sleeping.Add(-1)
	if try() {
		return true, nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.ch:
		return false, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
