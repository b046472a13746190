package worker

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/record"
)

// Exactly-once delivery (Config.Txns set). Every partition of a slot is routed to one worker,
// which writes its records in transactions of the slot's producer (pkg/delivery). A record is
// reported to its tracker — acknowledged, copied in the offset map, handed back to the pool —
// only once its transaction has committed, so a partition's committed position, its drain and
// the source group's offsets never pass a record the target could still abort. A transaction
// that fails stops its records' partitions and the mirror, which resumes from the positions the
// target holds.
//
// Order: a partition's records go through one producer in inbox order, with one batch per
// partition in flight (idempotence) and transactions one after another on that producer; a
// record that must travel alone, or needs a producer with another batch bound, first commits
// what is open, then reopens the slot's producer with the bound it needs.

// sendTxn is the send loop of exactly-once delivery. While records keep coming it takes them
// without blocking and commits a transaction when it is full or old (the clock is the coarse
// shared one); when the inbox is empty it waits until a record arrives or the first open
// transaction is due by age.
func (w *Worker) sendTxn(ctx context.Context) {
	open := make(map[*delivery.Txn]bool)
	for n := 0; ; n++ {
		r, ok := w.cfg.Inbox.TryPop()
		if !ok {
			wait, cancel := ctx, context.CancelFunc(func() {})
			if d := earliest(open); !d.IsZero() {
				wait, cancel = context.WithDeadline(ctx, d)
			}
			var err error
			r, err = w.cfg.Inbox.Pop(wait)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.commitDue(ctx, open, time.Now())
				continue
			}
		}
		t := w.dispatchTxn(ctx, r, open)
		now := w.cfg.Clock.now()
		if t != nil && open[t] && t.Due(now) {
			w.commitTxn(ctx, t, open)
		}
		if n%64 == 0 && len(open) > 1 {
			w.commitDue(ctx, open, now) // the other slots' transactions age too
		}
	}
}

// earliest returns when the first of the open transactions is due by age.
func earliest(open map[*delivery.Txn]bool) time.Time {
	var d time.Time
	for t := range open {
		if td := t.Deadline(); d.IsZero() || td.Before(d) {
			d = td
		}
	}
	return d
}

// commitDue commits the open transactions that are due.
func (w *Worker) commitDue(ctx context.Context, open map[*delivery.Txn]bool, now time.Time) {
	for t := range open {
		if t.Due(now) {
			w.commitTxn(ctx, t, open)
		}
	}
}

// dispatchTxn checks r and writes it in its slot's transaction, which it returns (nil when r
// was dropped or failed before one was found).
func (w *Worker) dispatchTxn(ctx context.Context, r *record.Record, open map[*delivery.Txn]bool) *delivery.Txn {
	if w.aborted.Load() || r.Track.Stopped() {
		w.drop(r)
		return nil
	}
	slot := w.cfg.Txns.Of(r.Track.Topic(), r.Track.Partition())
	t := w.cfg.Txns.Txn(slot)
	if t == nil {
		w.fail(r, fmt.Errorf("this member holds no transactional producer for the record's slot %d (a claim outside the session's slots)", slot))
		return nil
	}
	if r.FromTarget {
		// Not copied, but its position moves in the transaction like a refused record's skip:
		// the positions on the target pass it only if the transaction commits.
		if err := t.Skip(r); err != nil {
			w.fail(r, err)
			return t
		}
		open[t] = true
		w.fromTarget(r)
		return t
	}
	solo, refusal := w.check(r)
	if refusal != nil {
		w.refusedTxn(ctx, r, refusal, t, open)
		return t
	}
	bound := soloBound
	if !solo {
		limit := r.Limit
		if limit <= 0 {
			limit = kafkaDefaultMaxMessageBytes
		}
		bound = batchBound(limit, w.cfg.Compressed)
	}
	if bound != t.Bound() {
		if !w.commitTxn(ctx, t, open) {
			w.drop(r)
			return t
		}
		if err := t.Rebound(bound); err != nil {
			w.fail(r, err)
			return t
		}
	}
	if !r.Handed {
		r.Handed = true
		w.cfg.Observer.Sent(w.cfg.ID, r)
	}
	if r.Span != nil {
		r.Sent = time.Now()
	}
	if err := t.Send(ctx, r); err != nil {
		if ctx.Err() != nil {
			w.drop(r)
			return t
		}
		w.fail(r, err)
		return t
	}
	open[t] = true
	if solo {
		w.commitTxn(ctx, t, open) // alone: the broker's verdict concerns it alone
	}
	return t
}

// refusedTxn applies the refused-record policy inside a transaction: skip moves the position
// past r in the open transaction; fail commits what came before r, then stops.
func (w *Worker) refusedTxn(ctx context.Context, r *record.Record, err error, t *delivery.Txn, open map[*delivery.Txn]bool) {
	if w.cfg.Policy == config.RefusedSkip {
		if serr := t.Skip(r); serr != nil {
			w.fail(r, serr)
			return
		}
		open[t] = true
		w.refused(ctx, r, err) // counts, logs once and acknowledges r (the tracker waits for the records before it)
		return
	}
	w.commitTxn(ctx, t, open)
	w.refused(ctx, r, err)
}

// commitTxn commits t's open transaction and reports its records' fate; false when it failed.
func (w *Worker) commitTxn(ctx context.Context, t *delivery.Txn, open map[*delivery.Txn]bool) bool {
	delete(open, t)
	if !t.Open() {
		return true
	}
	recs, err := t.Commit(ctx)
	if err != nil {
		w.failTxn(recs, err)
		return false
	}
	now := time.Now()
	for _, r := range recs {
		if r.Copies != nil {
			r.Copies.Copied(r.Offset, r.Msg.Offset)
		}
		r.Track.Ack(r.Seq)
		w.cfg.Observer.Acked(w.cfg.ID, r, now)
		w.cfg.Records.Put(r)
	}
	return true
}

// failTxn stops the partitions of an aborted transaction's records at their first record, and
// the mirror with them.
func (w *Worker) failTxn(recs []*record.Record, err error) {
	first := make(map[failKey]bool)
	for _, r := range recs {
		k := failKey{r.Track.Topic(), r.Track.Partition()}
		if first[k] {
			r.Track.Fail(r.Seq, err)
			w.cfg.Observer.Failed(w.cfg.ID, r, err)
			continue
		}
		first[k] = true
		w.fail(r, fmt.Errorf("the transaction holding it was aborted, so none of its records is visible to read_committed "+
			"consumers and the position stays before them: %w", err))
	}
	if len(recs) == 0 {
		w.cfg.Log.Error("transaction failed", zap.Error(err))
		w.cfg.Fatal(err)
	}
}
