package worker

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/produce"
	"github.com/kmirror/kmirror/pkg/record"
)

// resending holds the records a worker's producers gave back for the state of the target
// cluster rather than for what the records are: the produce pipeline gives a record back when it
// was not acknowledged within producer.delivery_timeout or when the pipeline was aborted (sarama's
// transactional producer when no broker is reachable, its retries run out, or its connection is
// closed under it).
//
// Why order survives a resend. The first record given back starts a recovery: every producer
// of the worker is aborted (its connections closed), so whatever they still hold comes back
// too, and nothing new is handed to them. The send loop then waits for them to close, sorts
// what came back by partition and sequence, and sends it again on fresh producers before it
// takes anything more from its inbox (a record it had taken meanwhile joins the list). Records
// of a partition come back as a suffix of what was handed (the pipeline fails a partition's
// queue from its first unacknowledged batch on, and settles a partition's records in order),
// so resending them in sequence order writes
// the partition's first copies in source order. The window left is a batch written by a broker
// that came back in the instant between the first record given back and the abort closing the
// connections.
type resending struct {
	recovering atomic.Bool
	mu         sync.Mutex
	records    []*record.Record
	cause      error
	wake       context.CancelFunc // ends the send loop's wait on the inbox
	pump       context.Context
	streak     int // recoveries in a row without an acknowledgement between (send loop only)
	acked      atomic.Bool
}

// pumpContext returns the context the send loop waits on the inbox with: ctx, ended early when a
// recovery needs the loop.
func (w *Worker) pumpContext(ctx context.Context) context.Context {
	rs := &w.resending
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.pump == nil || rs.pump.Err() != nil {
		rs.pump, rs.wake = context.WithCancel(ctx)
	}
	if rs.recovering.Load() {
		rs.wake()
	}
	return rs.pump
}

// requeue puts r on the list to send again; cause, for the first record of a recovery, starts it.
func (w *Worker) requeue(r *record.Record, cause error) {
	rs := &w.resending
	rs.mu.Lock()
	rs.records = append(rs.records, r)
	start := cause != nil && !rs.recovering.Load()
	if start {
		rs.recovering.Store(true)
		rs.cause = cause
		if rs.wake != nil {
			rs.wake()
		}
	}
	rs.mu.Unlock()
	if start {
		w.mu.Lock()
		for _, l := range w.lanes {
			l.p.Abort()
		}
		w.mu.Unlock()
	}
}

// resend runs a recovery from the send loop: it closes the aborted producers, waits for
// everything they held to come back, and sends it again in order.
func (w *Worker) resend(ctx context.Context) {
	w.requeuePending()
	w.mu.Lock()
	lanes := w.lanes
	w.lanes = make(map[int]*lane)
	w.mu.Unlock()
	w.last = nil
	for _, l := range lanes {
		l.p.Abort()
		l.p.AsyncClose()
	}
	for _, l := range lanes {
		<-l.p.Done()
		l.p.Release()
	}
	rs := &w.resending
	rs.mu.Lock()
	records, cause := rs.records, rs.cause
	rs.records, rs.cause = nil, nil
	rs.recovering.Store(false)
	rs.mu.Unlock()
	if len(records) == 0 {
		return
	}
	slices.SortStableFunc(records, func(a, b *record.Record) int {
		return cmp.Or(cmp.Compare(a.Track.Topic(), b.Track.Topic()), cmp.Compare(a.Track.Partition(), b.Track.Partition()),
			cmp.Compare(a.Seq, b.Seq))
	})
	if rs.acked.Swap(false) {
		rs.streak = 0
	}
	rs.streak++
	if rs.streak == 1 || rs.streak%10 == 0 {
		w.cfg.Log.Warn("the target did not take records; sending them again, in order, on new connections",
			zap.Int("records", len(records)), zap.Int("attempt", rs.streak), zap.NamedError("cause", cause))
	}
	// A pause that grows while the target stays away: the delivery deadline, not this loop,
	// decides when to give up.
	select {
	case <-ctx.Done():
	case <-time.After(produce.RetryPause(100*time.Millisecond, rs.streak-1)):
	}
	for i, r := range records {
		if ctx.Err() != nil {
			for _, r := range records[i:] {
				w.drop(r) // unacknowledged: read again by whoever owns the partition next
			}
			return
		}
		if !w.dispatch(ctx, r) {
			return
		}
	}
}
