package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// TxnConfig makes a pipeline transactional.
type TxnConfig struct {
	// ID is the transactional id. Taking it fences every older producer of the id.
	ID string
	// Timeout is the transaction timeout the coordinator aborts an open transaction after
	// (producer.transaction_timeout).
	Timeout time.Duration
}

// Positions are the consumer positions committed in a transaction (TxnOffsetCommit).
type Positions struct {
	Group string
	// Generation, MemberID and InstanceID let the group coordinator fence a stale member
	// (TxnOffsetCommit v3+); with no MemberID the generation is sent as -1, which asks it not to.
	Generation int32
	MemberID   string
	InstanceID *string
	Offsets    map[string][]*sarama.PartitionOffsetMetadata
}

// txnState is the transactional part of a Pipeline. Fields after the first block are under
// Pipeline.mu.
type txnState struct {
	id      string
	timeout time.Duration
	wake    chan struct{} // a partition waits to be added

	added   map[topicPartition]bool // partitions added to the open transaction
	offsets bool                    // the positions' group was added to it (AddOffsetsToTxn)
	err     error                   // why the open transaction cannot commit
	fatal   bool                    // and why the producer cannot go on
	bump    bool                    // a batch failed: bump the epoch after the abort (KIP-360)

	renewed  bool // the open transaction took the producer id again (once at most)
	renewals int  // producer ids taken again after the coordinator forgot them (renewProducerID)
}

// inTxn reports whether part may send: always, unless transactional and part is not yet added
// to the open transaction; p.mu held.
func (p *Pipeline) inTxn(part *partition) bool {
	return p.txn == nil || p.txn.added[part.topicPartition]
}

// txnFailed records that a batch of the open transaction failed with err; p.mu held.
func (p *Pipeline) txnFailed(err error) {
	t := p.txn
	t.bump = true
	class := classifyTxn(err, false)
	if t.err == nil || (class == txnFatal && !t.fatal) {
		t.err, t.fatal = err, class == txnFatal
	}
}

// Txn is a transactional Pipeline: records produced between Begin and Commit are written in
// one transaction with the positions given to Commit. Outcomes go to Done when the transaction
// ends, not when the target acknowledges a batch: acknowledged (with target offsets) when it
// committed, failed (ErrTxnAborted or ErrTxnFatal) when it did not. Begin, Produce, Flush,
// Commit and Abort are called from one goroutine.
type Txn struct {
	p    *Pipeline
	t    *txnState
	done Done

	mu       sync.Mutex
	produced int // records produced in the open transaction
	settled  int // of which the pipeline settled
	pending  []settledBatch
	changed  chan struct{}

	open  bool
	early *earlyPositions // positions sent ahead of the commit (SendPositions), or nil
}

// earlyPositions is a positions commit under way while the transaction's batches are in flight.
type earlyPositions struct {
	done chan struct{} // closed when err is set
	err  error
}

// NewTxn opens a transactional pipeline: it takes tc.ID's producer id and epoch, fencing older
// producers of the id.
func NewTxn(cfg Config, tc TxnConfig, done Done) (*Txn, error) {
	if tc.ID == "" {
		return nil, errors.New("produce: a transactional pipeline needs a transactional id")
	}
	if tc.Timeout <= 0 {
		return nil, fmt.Errorf("produce: transaction timeout %s: want more than 0", tc.Timeout)
	}
	if cfg.Net != nil && !cfg.Net.Version.IsAtLeast(sarama.V0_11_0_0) {
		return nil, fmt.Errorf("produce: transactions need Kafka 0.11 or later, the target is configured as %s", cfg.Net.Version)
	}
	tx := &Txn{done: done, changed: make(chan struct{}, 1)}
	tx.t = &txnState{id: tc.ID, timeout: tc.Timeout, wake: make(chan struct{}, 1), added: map[topicPartition]bool{}}
	p, err := newPipeline(cfg, tx.settle, tx.t)
	if err != nil {
		return nil, err
	}
	tx.p = p
	p.wg.Add(1)
	go func() { defer p.wg.Done(); tx.adder() }()
	return tx, nil
}

// Pipeline is the pipeline under the transactions.
func (tx *Txn) Pipeline() *Pipeline { return tx.p }

// ProducerID returns the producer id and epoch the transactions run under.
func (tx *Txn) ProducerID() (int64, int16) {
	tx.p.mu.Lock()
	defer tx.p.mu.Unlock()
	return tx.p.pid, tx.p.epoch
}

// Renewals returns how many times the producer id was taken again because the coordinator no
// longer knew it (an idle transactional id expired).
func (tx *Txn) Renewals() int {
	tx.p.mu.Lock()
	defer tx.p.mu.Unlock()
	return tx.t.renewals
}

// settle is the pipeline's Done: it holds outcomes until the transaction ends.
func (tx *Txn) settle(msgs []*sarama.ProducerMessage, err error) {
	if err != nil { // e.g. a record refused before it was sent: the transaction cannot commit
		tx.p.mu.Lock()
		tx.p.txnFailed(err)
		tx.p.mu.Unlock()
	}
	tx.mu.Lock()
	tx.pending = append(tx.pending, settledBatch{msgs: msgs, err: err})
	tx.settled += len(msgs)
	tx.mu.Unlock()
	poke(tx.changed)
}

// Begin opens a transaction. It fails with ErrTxnFatal once the producer failed for good.
func (tx *Txn) Begin() error {
	p := tx.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case tx.t.fatal:
		return wrapTxn(tx.t.err, txnFatal)
	case tx.open:
		return errors.New("produce: a transaction is already open")
	}
	tx.open = true
	return nil
}

// Produce queues m in the open transaction. Once the transaction cannot commit it returns why
// instead (marked ErrTxnAborted: the caller aborts and resends from its positions; or
// ErrTxnFatal: the caller stops).
func (tx *Txn) Produce(m *sarama.ProducerMessage) error {
	return tx.ProduceBatch([]*sarama.ProducerMessage{m})
}

// ProduceBatch queues msgs, records of one partition in the order they are to be written, in
// the open transaction in one call (Pipeline.ProduceBatch: a record refused before it is sent
// is settled with why, and every record after it in msgs with ErrNotWritten). Once the
// transaction cannot commit it returns why instead, as Produce does, and takes none of msgs.
func (tx *Txn) ProduceBatch(msgs []*sarama.ProducerMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	p := tx.p
	p.mu.Lock()
	switch {
	case !tx.open:
		p.mu.Unlock()
		return errors.New("produce: no transaction is open (Begin first)")
	case tx.t.err != nil:
		err := tx.failure()
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	tx.mu.Lock()
	tx.produced += len(msgs)
	tx.mu.Unlock()
	p.ProduceBatch(context.Background(), msgs) // without a deadline it takes every record
	p.mu.Lock()
	wait := !tx.t.added[topicPartition{msgs[0].Topic, msgs[0].Partition}]
	p.mu.Unlock()
	if wait {
		poke(tx.t.wake)
	}
	return nil
}

// adder adds the partitions that hold batches of the open transaction to it, all it finds at
// once in one AddPartitionsToTxn, before any of their batches is sent. Once the transaction
// cannot commit, it fails the batches of partitions not added instead, so that a flush ends.
func (tx *Txn) adder() {
	p, t := tx.p, tx.t
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.wake:
		case <-tick.C:
		}
		p.mu.Lock()
		var want []topicPartition
		for tp, part := range p.parts {
			if len(part.batches) == 0 || t.added[tp] {
				continue
			}
			if t.err != nil {
				p.failQueue(part, 0, fmt.Errorf("not sent: the transaction must abort: %w", t.err))
				continue
			}
			want = append(want, tp)
		}
		pid, epoch := p.pid, p.epoch
		p.mu.Unlock()
		if len(want) == 0 {
			continue
		}
		err := p.addPartitions(p.ctx, want, pid, epoch)
		if err != nil {
			var renewed bool
			if renewed, err = tx.renewProducerID(err); renewed {
				poke(t.wake) // add them under the new producer id
				continue
			}
		}
		p.mu.Lock()
		if err != nil {
			p.txnFailed(err)
			if errors.Is(err, ErrTxnFatal) {
				t.fatal = true
			}
			for _, tp := range want {
				if part := p.parts[tp]; part != nil && !t.added[tp] {
					p.failQueue(part, 0, fmt.Errorf("not sent: %w", err))
				}
			}
		}
		var sinks []*sink
		for _, tp := range want {
			if part := p.parts[tp]; part != nil && part.sink != nil && t.added[tp] {
				sinks = append(sinks, part.sink)
			}
		}
		p.mu.Unlock()
		for _, s := range sinks {
			s.poke()
		}
		poke(p.wakeCtl) // partitions with no leader yet
	}
}

// Flush sends every batch of the open transaction without waiting for its linger and waits
// until the target settled each: it returns nil when all were acknowledged, else why the
// transaction cannot commit (marked as Produce marks it). Nothing is reported to Done yet.
func (tx *Txn) Flush(ctx context.Context) error {
	p := tx.p
	p.mu.Lock()
	var sinks []*sink
	for _, part := range p.parts {
		if n := len(part.batches); n > 0 {
			part.batches[n-1].closed = true
		}
	}
	for _, s := range p.sinks {
		sinks = append(sinks, s)
	}
	p.mu.Unlock()
	for _, s := range sinks {
		s.poke()
	}
	for {
		tx.mu.Lock()
		done := tx.settled >= tx.produced
		tx.mu.Unlock()
		if done {
			break
		}
		p.mu.Lock()
		fatal := tx.t.fatal
		p.mu.Unlock()
		if fatal {
			// The producer cannot go on (fenced, say): the batches still unsettled would only
			// be retried until the delivery timeout. end fails them at once.
			break
		}
		select {
		case <-tx.changed:
		case <-ctx.Done():
			return fmt.Errorf("flush the transaction: %w", ctx.Err())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return tx.failure()
}

// failure is why the open transaction cannot commit, marked ErrTxnFatal or ErrTxnAborted (it
// must be aborted), or nil; p.mu held.
func (tx *Txn) failure() error {
	switch {
	case tx.t.err == nil:
		return nil
	case tx.t.fatal:
		return wrapTxn(tx.t.err, txnFatal)
	case errors.Is(tx.t.err, ErrTxnAborted):
		return tx.t.err
	}
	return fmt.Errorf("%w: the transaction must abort: %w", ErrTxnAborted, tx.t.err)
}

// SendPositions starts committing pos in the open transaction now (AddOffsetsToTxn, then
// TxnOffsetCommit), while its batches may still be in flight, as Kafka's producer's
// sendOffsetsToTransaction does: the positions become visible only when the transaction commits
// and are discarded when it aborts, so sending them before the batches are acknowledged takes
// their round trips out of the commit without letting a position pass a record. Commit then
// waits for them instead of sending its own. It sends only once the transaction has started on
// the coordinator (a partition added) and reports whether it did; before that Commit sends the
// positions after its flush, where a producer id the coordinator forgot can still be taken
// again (renewProducerID). Called from the goroutine that calls Commit.
func (tx *Txn) SendPositions(ctx context.Context, pos *Positions) bool {
	p := tx.p
	if pos == nil || len(pos.Offsets) == 0 || tx.early != nil {
		return false
	}
	p.mu.Lock()
	ok := tx.open && tx.t.err == nil && len(tx.t.added) > 0
	pid, epoch := p.pid, p.epoch
	p.mu.Unlock()
	if !ok {
		return false
	}
	e := &earlyPositions{done: make(chan struct{})}
	tx.early = e
	go func() {
		defer close(e.done)
		e.err = p.commitPositions(ctx, pos, pid, epoch)
	}()
	return true
}

// waitEarly waits for the positions SendPositions sent and returns whether it had sent any and
// how that ended.
func (tx *Txn) waitEarly() (sent bool, err error) {
	e := tx.early
	if e == nil {
		return false, nil
	}
	<-e.done
	tx.early = nil
	return true, e.err
}

// Commit flushes the open transaction, commits pos in it (when not nil, and unless SendPositions
// sent positions already: then it waits for those), and commits it: only when every batch in it
// was acknowledged and the positions were added. Its records are then reported acknowledged to
// Done. Otherwise it aborts the transaction and returns an error marked ErrTxnAborted (resend
// from the positions) or ErrTxnFatal (stop); the records are reported failed. A commit whose
// answer is lost is fatal: its outcome is unknown until the next producer of the id takes it.
func (tx *Txn) Commit(ctx context.Context, pos *Positions) error {
	p := tx.p
	if !tx.isOpen() {
		return errors.New("produce: no transaction is open")
	}
	if err := tx.Flush(ctx); err != nil {
		return tx.end(ctx, err)
	}
	sent, err := tx.waitEarly()
	if err != nil {
		return tx.end(ctx, err)
	}
	p.mu.Lock()
	pid, epoch, started := p.pid, p.epoch, len(tx.t.added) > 0 || sent
	p.mu.Unlock()
	if !sent && pos != nil && len(pos.Offsets) > 0 {
		err := p.commitPositions(ctx, pos, pid, epoch)
		if err != nil && !started {
			var renewed bool
			if renewed, err = tx.renewProducerID(err); renewed {
				p.mu.Lock()
				pid, epoch = p.pid, p.epoch
				p.mu.Unlock()
				err = p.commitPositions(ctx, pos, pid, epoch)
			}
		}
		if err != nil {
			return tx.end(ctx, err)
		}
		started = true
	}
	if started {
		if err := p.endTxn(ctx, true, pid, epoch); err != nil {
			err = fmt.Errorf("%w: the commit's outcome is unknown: %w", ErrTxnFatal, err)
			p.mu.Lock()
			tx.t.err, tx.t.fatal = err, true
			p.mu.Unlock()
			return tx.end(ctx, err)
		}
	}
	tx.report(nil)
	return nil
}

// Abort flushes the open transaction and aborts it: none of its records or positions become
// visible, and its records are reported failed with ErrTxnAborted. After a failed batch it
// bumps the producer's epoch (KIP-360) so that the next transaction numbers its batches anew.
func (tx *Txn) Abort(ctx context.Context) error {
	if !tx.isOpen() {
		return nil
	}
	err := tx.end(ctx, errors.New("aborted by the caller"))
	if errors.Is(err, ErrTxnFatal) {
		return err
	}
	return nil
}

func (tx *Txn) isOpen() bool {
	tx.p.mu.Lock()
	defer tx.p.mu.Unlock()
	return tx.open
}

// end aborts the open transaction for cause and reports its records failed.
func (tx *Txn) end(ctx context.Context, cause error) error {
	p := tx.p
	// Positions still being sent end first: the abort must not race them.
	_, _ = tx.waitEarly()
	if err := tx.Flush(ctx); err != nil && !errors.Is(err, ErrTxnFatal) && !errors.Is(err, ErrTxnAborted) &&
		ctx.Err() != nil {
		cause = fmt.Errorf("%w: %w (and %w)", ErrTxnFatal, cause, err)
	}
	p.mu.Lock()
	fatal := tx.t.fatal || errors.Is(cause, ErrTxnFatal)
	pid, epoch, started, bump := p.pid, p.epoch, len(tx.t.added) > 0 || tx.t.offsets, tx.t.bump
	p.mu.Unlock()
	// With nothing added, no EndTxn: the coordinator refuses to end an empty transaction
	// (INVALID_TXN_STATE, fatal). An AddPartitionsToTxn whose answer was lost may have opened
	// one all the same; its partitions' batches were then failed, so the epoch bump below
	// (InitProducerId) aborts it.

	if !fatal && started {
		if err := p.endTxn(ctx, false, pid, epoch); err != nil {
			cause, fatal = fmt.Errorf("%w: %w (and the abort failed: %w)", ErrTxnFatal, cause, err), true
		}
	}
	if !fatal && bump {
		if err := p.initTxnProducerID(); err != nil {
			cause, fatal = fmt.Errorf("%w: %w (and the epoch bump failed: %w)", ErrTxnFatal, cause, err), true
		} else {
			p.cfg.Log.Info("transactional producer epoch bumped after an abort", zap.String("transactional_id", tx.t.id),
				zap.Int64("producer_id", p.pid), zap.Int16("epoch", p.epoch))
		}
	}
	if fatal {
		cause = wrapTxn(cause, txnFatal)
		p.mu.Lock()
		tx.t.err, tx.t.fatal = cause, true
		p.mu.Unlock()
		p.Abort() // fails at once what it held: wait until those outcomes came back
		for {
			tx.mu.Lock()
			done := tx.settled >= tx.produced
			tx.mu.Unlock()
			if done {
				break
			}
			<-tx.changed
		}
	} else if !errors.Is(cause, ErrTxnAborted) {
		cause = fmt.Errorf("%w: %w", ErrTxnAborted, cause)
	}
	tx.report(cause)
	return cause
}

// report hands the ended transaction's records to Done (failed with err when not nil) and
// makes ready for the next transaction.
func (tx *Txn) report(err error) {
	tx.mu.Lock()
	out := tx.pending
	tx.pending, tx.produced, tx.settled = nil, 0, 0
	tx.mu.Unlock()
	p := tx.p
	p.mu.Lock()
	clear(tx.t.added)
	tx.t.offsets, tx.t.renewed = false, false
	if !tx.t.fatal {
		tx.t.err, tx.t.bump = nil, false
	}
	tx.open = false
	p.mu.Unlock()
	for _, s := range out {
		e := err
		if e == nil {
			e = s.err // cannot be: a transaction with a failed record does not commit
		}
		if e != nil {
			for _, m := range s.msgs {
				m.Offset = -1
			}
		}
		tx.done(s.msgs, e)
	}
}

// Close aborts an open transaction and closes the pipeline.
func (tx *Txn) Close() {
	if tx.isOpen() {
		ctx, cancel := context.WithTimeout(context.Background(), tx.p.cfg.DeliveryTimeout)
		_ = tx.Abort(ctx)
		cancel()
	}
	tx.p.Close()
}

// renewProducerID recovers a transaction that has not started on the coordinator (no partition
// and no group added yet) from a coordinator that no longer knows the producer id: an idle
// transactional id expired (transactional.id.expiration.ms; INVALID_PRODUCER_ID_MAPPING) or its
// producer's state was lost (UNKNOWN_PRODUCER_ID). Nothing of the transaction was sent (a
// partition sends only once added), so it takes the id again and the caller goes on under it
// (renewed). It asks with the producer id and epoch it holds (KIP-360), so that the coordinator
// fences it (PRODUCER_FENCED, returned marked ErrTxnFatal) rather than hand it the id when
// another producer took the id meanwhile: the fencing of zombies holds. Otherwise, or on targets
// before 2.5 (which cannot tell a zombie apart), err comes back as it was.
func (tx *Txn) renewProducerID(err error) (renewed bool, _ error) {
	p := tx.p
	if !errors.Is(err, sarama.ErrInvalidProducerIDMapping) && !errors.Is(err, sarama.ErrUnknownProducerID) {
		return false, err
	}
	if !p.cfg.Net.Version.IsAtLeast(sarama.V2_5_0_0) {
		return false, err
	}
	p.mu.Lock()
	started := len(tx.t.added) > 0 || tx.t.offsets || tx.t.err != nil || tx.t.renewed
	tx.t.renewed = true
	oldPID, oldEpoch := p.pid, p.epoch
	p.mu.Unlock()
	if started {
		return false, err
	}
	if berr := p.initTxnProducerID(); berr != nil {
		return false, fmt.Errorf("%w (taking the transactional id again after: %v)", berr, err)
	}
	p.mu.Lock()
	tx.t.renewals++
	pid, epoch := p.pid, p.epoch
	p.mu.Unlock()
	p.cfg.Log.Info("the target no longer knew the transactional producer id (expired while idle); took it again before "+
		"the transaction started", zap.String("transactional_id", tx.t.id), zap.Int64("old_producer_id", oldPID),
		zap.Int16("old_epoch", oldEpoch), zap.Int64("producer_id", pid), zap.Int16("epoch", epoch), zap.Error(err))
	return true, nil
}
