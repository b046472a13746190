package worker

import (
	"context"
	"fmt"
	"sync"
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
// Order: a partition's records go through one producer in inbox order — the slot's produce
// pipeline (produce.Txn), whose sequences per partition keep order with up to five requests in
// flight per broker — and transactions one after another on that producer; a record that must
// travel alone, or needs a producer with another batch bound, first commits what is open, then
// reopens the slot's producer with the bound it needs.
//
// A commit (flush, AddOffsetsToTxn, EndTxn) waits for the target, so each slot the worker
// carries has a sender of its own: the worker routes records from its inbox to the senders in
// inbox order, and a slot's commit stalls that slot only. A partition belongs to one slot, so it
// still has one goroutine and one queue, in inbox order. Records move by runs, as at least once:
// an inbox batch goes to its slot's sender in one hand-over, and on to the producer in one call
// (delivery.Txn.SendBatch) up to the record where the transaction is due by size, so that
// transactions end where they would had the records been sent one at a time.

// slotQueue is the runs of records (a fetched batch's, or its share of one slot) routed to one
// slot's sender and not yet taken by it: enough to cover a commit at the slot's share of the
// worker's rate. The records count in their partitions' in-flight bound
// (ring.partition_in_flight) like those in the inbox.
const slotQueue = 64

// slotRun is a run of records routed to a slot's sender, and when it was routed: the records'
// transaction counts its age from then (delivery.Txn.Arrived), also when they wait for the slot's
// commit under way.
type slotRun struct {
	rs []*record.Record
	at time.Time
}

// sendTxn is the send loop of exactly-once delivery: it routes the records of each inbox batch
// to their slots' senders, a run of one slot's records in one hand-over, starting a sender the
// first time a slot has a record. When ctx ends it stops the senders and waits for them; the
// records they still queue are dropped (not acknowledged: read again).
func (w *Worker) sendTxn(ctx context.Context) {
	senders := make(map[int]chan slotRun)
	var wg sync.WaitGroup
	defer func() {
		for _, in := range senders {
			close(in)
		}
		wg.Wait()
	}()
	for {
		b, err := w.cfg.Inbox.Pop(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		rs, at := b.Records, time.Now()
		for len(rs) > 0 {
			// A batch is one partition's, so of one slot; a run ends where the slot changes
			// all the same.
			slot := w.cfg.Txns.Of(rs[0].Track.Topic(), rs[0].Track.Partition())
			n := 1
			for n < len(rs) && (rs[n].Track == rs[0].Track ||
				w.cfg.Txns.Of(rs[n].Track.Topic(), rs[n].Track.Partition()) == slot) {
				n++
			}
			in := senders[slot]
			if in == nil {
				in = make(chan slotRun, slotQueue)
				senders[slot] = in
				wg.Go(func() { w.sendSlot(ctx, slot, in) })
			}
			select {
			case in <- slotRun{rs[:n:n], at}:
			case <-ctx.Done():
				w.dropAll(rs)
				return
			}
			rs = rs[n:]
		}
	}
}

// sendSlot writes the records of one slot in its transactions. While records keep coming it
// takes them without blocking and commits a transaction when it is full or old (the clock is the
// coarse shared one; older while records wait for the slot — in its queue, behind in the run
// being sent, or on the source behind the record just sent: delivery.Limits); when none waits it
// sleeps until a run arrives or the open transaction is due by age. It returns once in is
// closed, dropping what it still holds after ctx ended.
func (w *Worker) sendSlot(ctx context.Context, slot int, in <-chan slotRun) {
	var cur *delivery.Txn // the slot's producer of the records last sent (it changes with the session)
	behind := false       // the record last sent had later ones on the source
	age := time.NewTimer(time.Hour)
	age.Stop()
	defer age.Stop()
	for {
		var run slotRun
		ok := true
		select {
		case run, ok = <-in:
		default:
			var due <-chan time.Time
			if cur != nil && cur.Open() {
				age.Reset(time.Until(cur.Deadline(behind)))
				due = age.C
			}
			select {
			case run, ok = <-in:
			case <-due:
				w.commitTxn(ctx, cur)
				continue
			case <-ctx.Done():
				run, ok = <-in
			}
			age.Stop()
		}
		if !ok {
			return
		}
		rs := run.rs
		if ctx.Err() != nil {
			w.dropAll(rs)
			continue
		}
		t := w.cfg.Txns.Txn(slot)
		if cur != nil && t != cur && cur.Open() {
			w.commitTxn(ctx, cur) // a new session's producer: what the last one holds goes first
		}
		cur = t
		for len(rs) > 0 {
			var n int
			var wrote bool
			n, wrote, behind = w.dispatchTxn(ctx, rs, t)
			rs = rs[n:]
			if wrote {
				t.Arrived(run.at)
			}
			if wrote && t.Open() && t.Due(w.cfg.Clock.now(), behind || len(rs) > 0 || len(in) > 0) {
				w.commitTxn(ctx, t)
			}
		}
	}
}

// dispatchTxn checks the first records of rs and writes them in t, the transaction of their
// slot: a record that goes its own way (from the target, refused, alone, or needing another
// batch bound) by itself, else the longest run of records that go like it (runTxn) in one
// hand-over. It returns how many of rs it took, at least one, whether t got them (false when
// they were dropped or failed before t was found), and whether the last of them had later
// records on the source (record.Record.Behind), read before any of them was settled.
func (w *Worker) dispatchTxn(ctx context.Context, rs []*record.Record, t *delivery.Txn) (n int, wrote, behind bool) {
	r := rs[0]
	behind = r.Behind // read now: a record settled below may be reused at once
	if w.aborted.Load() || r.Track.Stopped() {
		w.drop(r)
		return 1, false, behind
	}
	if t == nil {
		w.fail(r, fmt.Errorf("this member holds no transactional producer for the record's slot %d (a claim outside the session's slots)",
			w.cfg.Txns.Of(r.Track.Topic(), r.Track.Partition())))
		return 1, false, behind
	}
	if r.FromTarget {
		// Not copied, but its position moves in the transaction like a refused record's skip:
		// the positions on the target pass it only if the transaction commits, and it is
		// settled then (commitTxn), so that its claim does not drain under the open transaction.
		if err := t.Skip(r, ErrFromTarget); err != nil {
			w.fail(r, err)
			return 1, true, behind
		}
		w.noteFromTarget(r)
		return 1, true, behind
	}
	solo, refusal := w.check(r)
	if refusal != nil {
		w.refusedTxn(ctx, r, refusal, t)
		return 1, true, behind
	}
	bound := soloBound
	if !solo {
		bound = w.txnBound(r)
	}
	if bound != t.Bound() {
		if !w.commitTxn(ctx, t) {
			w.drop(r)
			return 1, true, behind
		}
		if err := t.Rebound(bound); err != nil {
			w.fail(r, err)
			return 1, true, behind
		}
	}
	n = 1
	if !solo {
		n = w.runTxn(rs, t)
	}
	run := rs[:n]
	behind = run[n-1].Behind
	now := time.Time{}
	for _, r := range run {
		if !r.Handed {
			r.Handed = true
			w.cfg.Observer.Sent(w.cfg.ID, r)
		}
		if r.Span != nil {
			if now.IsZero() {
				now = time.Now()
			}
			r.Sent = now
		}
	}
	if err := t.SendBatch(ctx, run); err != nil {
		if ctx.Err() != nil {
			w.dropAll(run)
			return n, true, behind
		}
		// Nothing of the run is in the transaction: its partition stops at its first record,
		// and the records after it are let go as those of a stopped partition are.
		w.fail(r, err)
		w.dropAll(run[1:])
		return n, true, behind
	}
	if solo {
		w.commitTxn(ctx, t) // alone: the broker's verdict concerns it alone
	}
	return n, true, behind
}

// txnBound is the batch bound of the transactional producer that writes r, a record that does
// not travel alone.
func (w *Worker) txnBound(r *record.Record) int {
	limit := r.Limit
	if limit <= 0 {
		limit = kafkaDefaultMaxMessageBytes
	}
	return batchBound(limit, w.cfg.Compressed)
}

// runTxn returns how many records at the head of rs go into t together with rs[0], a record
// that is written in a batch of t's bound: those of its partition, and target partition, that
// go the same way (not from the target, not refused, not alone, of the same limit and not of a
// stopped partition), up to where t is due by size (delivery.Txn.Room) — the record that reaches
// its byte limit included, as when they were sent one at a time.
func (w *Worker) runTxn(rs []*record.Record, t *delivery.Txn) int {
	first := rs[0]
	records, bytes := t.Room()
	bytes -= first.Size
	n := 1
	for ; n < len(rs) && n < records && bytes > 0; n++ {
		r := rs[n]
		if r.Track != first.Track || r.Msg.Topic != first.Msg.Topic || r.Msg.Partition != first.Msg.Partition ||
			r.FromTarget || r.Limit != first.Limit || r.Track.Stopped() {
			break
		}
		if solo, refusal := w.check(r); solo || refusal != nil {
			break
		}
		bytes -= r.Size
	}
	return n
}

// refusedTxn applies the refused-record policy inside a transaction: skip moves the position
// past r in the open transaction, which holds r until it commits; fail commits what came before
// r, then stops.
func (w *Worker) refusedTxn(ctx context.Context, r *record.Record, err error, t *delivery.Txn) {
	if w.cfg.Policy == config.RefusedSkip {
		if serr := t.Skip(r, err); serr != nil {
			w.fail(r, serr)
			return
		}
		w.noteSkip(r, err)
		return
	}
	w.commitTxn(ctx, t)
	w.refused(ctx, r, err)
}

// commitTxn commits t's open transaction and reports its records' fate; false when it failed.
//
// With an offset map (Config.WriteMap), the map is written before the positions: the
// transaction commits the records and the positions they reach at once, so a map written after
// it (by the flusher, an interval later) would lag the positions, and a crash in between would
// leave a hole no restart fills (the next run resumes after it). So once the target has
// acknowledged the transaction's records, their copies are recorded and written to the map, and
// only then are the positions added and the transaction committed; a map that cannot be written
// aborts it (the mirror stops and resumes from the positions the target holds). A transaction
// that aborts after its map was written leaves chunks mapping its records to copies no
// read_committed consumer reads; the run that resumes copies them again, higher in the same
// partition, and maps those copies before it commits them: the newest chunk covering an offset
// wins, so the aborted copies are translated to only until then (and a group resuming at one
// reads the copies made again after it: duplicates, never a loss).
func (w *Worker) commitTxn(ctx context.Context, t *delivery.Txn) bool {
	if !t.Open() {
		return true
	}
	var before func([]delivery.Held) error
	if w.cfg.WriteMap != nil {
		// Not cancelled with the worker: a commit under way when it stops completes as it
		// would without a map (the write is bounded by the map's own timeout).
		mctx := context.WithoutCancel(ctx)
		before = func(recs []delivery.Held) error { return w.mapTxn(mctx, recs) }
	}
	recs, err := t.CommitAfter(ctx, before)
	if err != nil {
		w.failTxn(recs, err)
		return false
	}
	now := time.Now()
	for _, h := range recs {
		r := h.Record
		if h.Skipped != nil {
			w.skipped(r, h.Skipped)
			continue
		}
		if r.Copies != nil && before == nil {
			r.Copies.Copied(r.Offset, r.Msg.Offset)
		}
		r.Track.Ack(r.Seq)
		w.cfg.Observer.Acked(w.cfg.ID, r, now)
		w.cfg.Records.Put(r)
	}
	return true
}

// heldCopies is a record.Copies told of the records a transaction holds (offsetmap.Recorder).
type heldCopies interface {
	Held(source int64, first bool)
}

// mapTxn records where the target put the copies of recs, a transaction acknowledged but not
// committed, and writes them to the offset map (commitTxn says why).
func (w *Worker) mapTxn(ctx context.Context, recs []delivery.Held) error {
	var cs []record.Copies
	seen := make(map[record.Copies]bool)
	for _, h := range recs {
		r := h.Record
		if r.Copies == nil {
			continue
		}
		first := !seen[r.Copies]
		if first {
			seen[r.Copies] = true
			cs = append(cs, r.Copies)
		}
		if hc, ok := r.Copies.(heldCopies); ok {
			hc.Held(r.Offset, first)
		}
		if h.Skipped == nil {
			r.Copies.Copied(r.Offset, r.Msg.Offset)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	if err := w.cfg.WriteMap(ctx, cs); err != nil {
		return fmt.Errorf("write the offset map before committing the positions it covers: %w", err)
	}
	return nil
}

// failTxn stops the partitions of an aborted transaction's records at their first record, and
// the mirror with them.
func (w *Worker) failTxn(recs []delivery.Held, err error) {
	first := make(map[failKey]bool)
	for _, h := range recs {
		r := h.Record
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
