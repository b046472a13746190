package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmirror/kmirror/pkg/record"
)

// Producer is the transactional producer of one slot and the client it runs on.
type Producer interface {
	sarama.AsyncProducer
	// Abort closes the producer's connections, so that nothing it still holds reaches the
	// target from now on. It does not block.
	Abort()
	// Release closes the client under the producer, once the producer has shut down.
	Release()
	// Knows reports whether the producer's metadata has partition of topic, refreshing the
	// topic's metadata first when it has not.
	Knows(topic string, partition int32) (bool, error)
}

// Open opens a transactional producer with transactional id id whose batches stay within
// bound bytes. Opening it initialises the id (InitProducerId), which fences every earlier
// producer of the id.
type Open func(id string, bound int) (Producer, error)

// Observer is told of every transaction's end. Implementations must not block.
type Observer interface {
	// Committed is called for each committed transaction with its commit latency (the flush of
	// its records, the offset commit and EndTxn) and its record count.
	Committed(d time.Duration, records int)
	// Aborted is called for each transaction that could not be committed.
	Aborted(err error)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) Committed(time.Duration, int) {}
func (NopObserver) Aborted(error)                {}

// Limits size a slot's transactions: one is due for commit once it holds Records records or
// Bytes bytes, or Age after it began. While more records wait for the slot (a backlog: catching
// up), committing at Age would only add commits: none of the waiting records becomes readable
// sooner for it, and the backlog drains more slowly. So a backlogged transaction stays open
// until Backlog after it began (within Records and Bytes); Backlog below Age is Age.
type Limits struct {
	Records int
	Bytes   int64
	Age     time.Duration
	Backlog time.Duration
}

// Held is a record of an open transaction: written to the target, or, when Skipped says why,
// not written but passed by its partition's position (a record that came from the target, or
// one the refused-record policy skips). Either way the record is settled — acknowledged to its
// tracker — only once the transaction has committed: a skip acknowledged before that would let
// its claim drain, and the slot's producer be closed by the next session, under a transaction
// that still holds its position.
type Held struct {
	Record  *record.Record
	Skipped error
}

// ErrClosed is returned for a transaction of a producer that was closed (its slot's session
// ended) before the transaction committed: it was never committed.
var ErrClosed = errors.New("the slot's transactional producer was closed before the transaction committed")

// Txn is one slot's transactional producer and its open transaction. Send, Skip, Commit and
// Rebound are called by the sender of the worker the slot is routed to; a Txn is never shared by
// two workers. Close comes from the session that ends (Slots.Begin, Slots.Close) and Refresh
// from the positions' keeper, on other goroutines: mu orders them with the sender's calls, so
// that none of them acts on a producer another has closed or on a transaction half updated.
type Txn struct {
	slot     int
	id       string
	open     Open
	group    *sarama.ConsumerGroupMetadata
	limits   Limits
	metadata func(sourceTopic string) string
	tracer   trace.Tracer
	obs      Observer

	p      Producer
	abortP atomic.Pointer[producerRef] // p, for Abort, which must not wait for t.mu
	bound  int
	done   chan struct{} // closed once p's reader goroutines have returned
	err    atomic.Pointer[error]
	// answered counts the records of p the target has answered (acknowledged or failed);
	// answer is signalled at each. sent (under mu) counts the records handed to p.
	answered atomic.Int64
	answer   chan struct{}
	// aborted is set by Abort: the producer's connections are closed, so a commit would only
	// retry its requests on them until the transactional retries run out.
	aborted atomic.Bool

	mu      sync.Mutex
	closed  bool
	began   time.Time // zero while no transaction is open
	pending []Held
	bytes   int64
	sent    int64
	next    map[string]map[int32]*sarama.PartitionOffsetMetadata // target topic → partition → position
	// last is the position of every partition this producer has committed or was given
	// (Keep), and when it was last committed: Refresh commits again the ones gone stale.
	last map[string]map[int32]*kept
}

// producerRef holds a Producer for an atomic.Pointer.
type producerRef struct{ Producer }

// kept is a partition's last committed position.
type kept struct {
	pos sarama.PartitionOffsetMetadata
	at  time.Time
}

// newTxn opens slot's producer (fencing its previous holders).
func newTxn(slot int, id string, bound int, cfg *Config) (*Txn, error) {
	t := &Txn{
		slot: slot, id: id, open: cfg.Open, group: sarama.NewConsumerGroupMetadata(cfg.Group), limits: cfg.Limits,
		metadata: cfg.Metadata, tracer: cfg.Tracer, obs: cfg.Observer,
	}
	if err := t.start(bound); err != nil {
		return nil, err
	}
	return t, nil
}

// ID returns the transactional id.
func (t *Txn) ID() string { return t.id }

// Bound returns the batch bound of the producer.
func (t *Txn) Bound() int { return t.bound }

// Open reports whether a transaction is open.
func (t *Txn) Open() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.began.IsZero()
}

// Due reports whether the open transaction should be committed now; backlogged says that more
// records wait for the slot (see Limits).
func (t *Txn) Due(now time.Time, backlogged bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.began.IsZero() {
		return false
	}
	if len(t.pending) >= t.limits.Records || t.bytes >= t.limits.Bytes {
		return true
	}
	age := now.Sub(t.began)
	return age >= t.limits.Age && (!backlogged || age >= t.limits.Backlog)
}

// Deadline returns when the open transaction is due by age, backlogged or not (see Limits; zero
// when none is open).
func (t *Txn) Deadline(backlogged bool) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.began.IsZero() {
		return time.Time{}
	}
	if backlogged {
		return t.began.Add(max(t.limits.Age, t.limits.Backlog))
	}
	return t.began.Add(t.limits.Age)
}

func (t *Txn) start(bound int) error {
	p, err := t.open(t.id, bound)
	if err != nil {
		return fmt.Errorf("open the transactional producer %q: %w", t.id, err)
	}
	t.p, t.bound, t.done = p, bound, make(chan struct{})
	t.abortP.Store(&producerRef{p})
	t.err.Store(nil)
	t.sent = 0
	t.answered.Store(0)
	answer := make(chan struct{}, 1)
	t.answer = answer
	answered := func() {
		t.answered.Add(1)
		select {
		case answer <- struct{}{}:
		default:
		}
	}
	var both sync.WaitGroup
	both.Add(2)
	go func() {
		defer both.Done()
		for range p.Successes() { // the records stay pending until their transaction commits
			answered()
		}
	}()
	go func() {
		defer both.Done()
		for pe := range p.Errors() {
			err := fmt.Errorf("produce %s/%d: %w", pe.Msg.Topic, pe.Msg.Partition, pe.Err)
			t.err.CompareAndSwap(nil, &err)
			answered()
		}
	}()
	go func() { both.Wait(); close(t.done) }()
	return nil
}

// begin opens a transaction when none is. t.mu is held.
func (t *Txn) begin() error {
	if t.closed {
		return fmt.Errorf("begin a transaction of %q: %w", t.id, ErrClosed)
	}
	if !t.began.IsZero() {
		return nil
	}
	if err := t.p.BeginTxn(); err != nil {
		return fmt.Errorf("begin a transaction of %q: %w", t.id, err)
	}
	t.began = time.Now()
	t.next = make(map[string]map[int32]*sarama.PartitionOffsetMetadata)
	return nil
}

// advance moves the position of r's partition (topic/partition on the target) past r. It
// takes the target names from the caller: once r.Msg is handed to the producer, sarama owns it.
func (t *Txn) advance(r *record.Record, topic string, partition int32) {
	parts := t.next[topic]
	if parts == nil {
		parts = make(map[int32]*sarama.PartitionOffsetMetadata)
		t.next[topic] = parts
	}
	pos := parts[partition]
	if pos == nil {
		meta := t.metadata(r.Track.Topic())
		pos = &sarama.PartitionOffsetMetadata{Partition: partition, Metadata: &meta}
		parts[partition] = pos
	}
	pos.Offset = r.Offset + 1
}

// Send hands r to the producer inside the open transaction (opening one when none is). r stays
// pending until Commit. It returns an error, and r is not part of the transaction, when no
// transaction could be opened or ctx ended first.
func (t *Txn) Send(ctx context.Context, r *record.Record) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(); err != nil {
		return err
	}
	topic, partition := r.Msg.Topic, r.Msg.Partition
	select {
	case t.p.Input() <- &r.Msg:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.pending = append(t.pending, Held{Record: r})
	t.bytes += r.Size
	t.sent++
	t.advance(r, topic, partition)
	return nil
}

// Skip moves r's partition past r in the open transaction without writing r (why says why it is
// not written): the position passes it only if the transaction commits, and r is held — and
// returned by Commit — like a record sent.
func (t *Txn) Skip(r *record.Record, why error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(); err != nil {
		return err
	}
	t.pending = append(t.pending, Held{Record: r, Skipped: why})
	t.advance(r, r.Msg.Topic, r.Msg.Partition)
	return nil
}

// ErrFenced marks a transaction the target refused because another producer took its
// transactional id: the slot now belongs to another member.
var ErrFenced = errors.New("the slot's transactional id was taken over by another producer (fenced)")

// Commit commits the open transaction: every record sent or skipped since it began, and the
// positions they reach. It returns the records of the transaction, in the order they were held,
// whether it committed (err nil) or was aborted (err says why; ErrClosed when the producer was
// closed under it). Nothing is committed when no transaction is open.
func (t *Txn) Commit(ctx context.Context) ([]Held, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commit(ctx, nil)
}

// CommitAfter is Commit with a step before the positions are committed: once the target has
// acknowledged every record of the transaction (each record's Msg.Offset is then its offset on
// the target), before is given the transaction's records; the transaction commits only if it
// returns nil, and is aborted otherwise. The offset map is written there, so that no committed
// position is ever ahead of the map (see pkg/offsetmap).
func (t *Txn) CommitAfter(ctx context.Context, before func([]Held) error) ([]Held, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commit(ctx, before)
}

// acknowledged waits until the target has answered every record handed to the producer, the
// producer has shut down, or the transaction can no longer commit. The last matters: once the
// producer is fenced (a zombie whose slot another member took) abortWhenFatal closes its
// connections, and the records it still holds are retried until the delivery timeout; a
// commit that waited for them would hold the slot, its claims' drain and the member's stop
// that long, where AddOffsetsToTxn fails at once.
func (t *Txn) acknowledged() error {
	const cannotCommit = sarama.ProducerTxnFlagFatalError | sarama.ProducerTxnFlagAbortableError
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.answered.Load() < t.sent {
		if t.aborted.Load() {
			return errAborted
		}
		if st := t.p.TxnStatus(); st&cannotCommit != 0 {
			return fmt.Errorf("the transaction of %q can no longer commit (producer state %s)", t.id, st)
		}
		select {
		case <-t.answer:
		case <-tick.C:
		case <-t.done:
			if t.answered.Load() < t.sent {
				return fmt.Errorf("the producer of %q shut down before the target acknowledged the transaction's records", t.id)
			}
		}
	}
	if e := t.err.Load(); e != nil {
		return errors.New("a record of the transaction came back failed")
	}
	return nil
}

// commit is Commit with t.mu held.
func (t *Txn) commit(ctx context.Context, before func([]Held) error) ([]Held, error) {
	if t.began.IsZero() {
		return nil, nil
	}
	recs, offsets := t.pending, t.offsets()
	t.pending, t.bytes, t.next, t.began = nil, 0, nil, time.Time{}
	if t.closed {
		return recs, fmt.Errorf("commit a transaction of %q: %w", t.id, ErrClosed)
	}
	start := time.Now()
	var span trace.Span
	if t.tracer != nil {
		_, span = t.tracer.Start(ctx, "kmirror.commit", trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("kmirror.transactional_id", t.id), attribute.Int("kmirror.records", len(recs))))
		defer span.End()
	}
	stop := t.abortWhenFatal()
	defer stop()
	var err error
	if before != nil {
		if err = t.acknowledged(); err == nil {
			err = before(recs)
		}
	}
	if err == nil && t.aborted.Load() {
		// Aborted while the records were written or mapped (the mirror stops): CommitTxn would
		// retry AddOffsetsToTxn on closed connections for the whole transactional retry budget
		// (some 45 s), holding the slot and the member's stop.
		err = errAborted
	}
	if err == nil {
		err = t.p.AddOffsetsToTxnWithGroupMetadata(offsets, t.group)
	}
	if err == nil {
		err = t.p.CommitTxn()
	}
	if e := t.err.Load(); err == nil && e != nil {
		// Cannot happen with sarama (an error returned for a record puts the transaction in an
		// abortable state, which CommitTxn refuses), but a committed transaction that lost a
		// record would break the guarantee: stop rather than go on.
		err = fmt.Errorf("a record of the committed transaction came back failed: %w", *e)
	}
	if err != nil {
		err = t.fail(err)
		if span != nil {
			span.RecordError(err)
		}
		t.obs.Aborted(err)
		return recs, err
	}
	t.obs.Committed(time.Since(start), len(recs))
	t.keep(offsets, start)
	return recs, nil
}

// abortWhenFatal watches the producer while a commit runs: once its transaction is beyond
// repair (fenced by the slot's next holder, or another fatal error), sarama would still retry
// what it holds for the whole delivery timeout before CommitTxn returned; closing the
// connections fails it at once. It returns the function that ends the watch.
func (t *Txn) abortWhenFatal() func() {
	p := t.p
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if p.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 {
				p.Abort()
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done) }
}

// fail aborts the transaction after err and says what became of it.
func (t *Txn) fail(err error) error {
	if e := t.err.Load(); e != nil {
		err = fmt.Errorf("%w (first record error: %w)", err, *e)
	}
	switch {
	case errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch):
		err = fmt.Errorf("%w: %w", ErrFenced, err)
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed):
		err = fmt.Errorf("%w (exactly-once commits the source positions under the target topics' names, which needs "+
			"Read on the target topics besides Write: grant it, validate --connect checks it)", err)
	case errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed) || errors.Is(err, sarama.ErrGroupAuthorizationFailed):
		err = fmt.Errorf("%w (grant Write and Describe on the transactional ids with the prefix and Read on the positions "+
			"group; validate --connect checks both)", err)
	}
	if aerr := t.p.AbortTxn(); aerr != nil {
		// The coordinator aborts it at the transaction timeout, or at once when the next
		// holder of the id initialises it; nothing of it is ever visible to read_committed.
		t.p.Abort()
		return fmt.Errorf("transaction of %q failed and was not aborted cleanly (%v): %w", t.id, aerr, err)
	}
	return fmt.Errorf("transaction of %q aborted: %w", t.id, err)
}

// offsets returns the open transaction's positions in AddOffsetsToTxn's form.
func (t *Txn) offsets() map[string][]*sarama.PartitionOffsetMetadata {
	out := make(map[string][]*sarama.PartitionOffsetMetadata, len(t.next))
	for topic, parts := range t.next {
		for _, pos := range parts {
			out[topic] = append(out[topic], pos)
		}
	}
	return out
}

// Rebound replaces the producer with one whose batches stay within bound (the same
// transactional id: initialising it again fences nobody but the producer replaced). No
// transaction may be open.
func (t *Txn) Rebound(bound int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("rebound the producer of %q: %w", t.id, ErrClosed)
	}
	if !t.began.IsZero() {
		return fmt.Errorf("rebound the producer of %q: a transaction is open", t.id)
	}
	t.shut()
	return t.start(bound)
}

// shut closes the producer: an open transaction is aborted by closing the connections (the
// coordinator aborts it when the id is next initialised, or at its timeout). t.mu is held.
func (t *Txn) shut() {
	if !t.began.IsZero() {
		t.p.Abort()
	}
	t.p.AsyncClose()
	<-t.done
	t.p.Release()
}

// Knows reports whether the producer knows partition of topic (see Producer.Knows).
func (t *Txn) Knows(topic string, partition int32) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false, fmt.Errorf("look up %s/%d for %q: %w", topic, partition, t.id, ErrClosed)
	}
	return t.p.Knows(topic, partition)
}

// Abort makes sure nothing more of the producer reaches the target: its connections are
// closed, and the open transaction is never committed. It does not block (nor take t.mu: it
// must reach a producer whose commit hangs).
func (t *Txn) Abort() {
	t.aborted.Store(true)
	t.abortP.Load().Abort()
}

// errAborted fails a commit after Abort.
var errAborted = errors.New("the slot's producer was aborted before the transaction committed (the mirror is stopping)")

// Close shuts the producer down. Records of a transaction still open are returned: they were
// not committed, and a later Commit of them fails with ErrClosed.
func (t *Txn) Close() []Held {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	left := t.pending
	t.shut()
	t.closed = true
	return left
}

// RetryBackoff is the pause before transactional request retry number retries (0-based), for
// sarama's Producer.Transaction.Retry.BackoffFunc. The coordinator answers
// CONCURRENT_TRANSACTIONS to the next transaction's first AddPartitionsToTxn while the markers
// of the one just committed are still being written, which takes milliseconds: a fixed 100 ms
// (sarama's default; 20 ms for that first retry) would idle the slot for longer than that at
// every transaction. It starts at 5 ms and doubles to a second: 50 retries span about 45 s.
func RetryBackoff(retries, _ int) time.Duration {
	return min(5*time.Millisecond<<min(retries, 8), time.Second)
}
