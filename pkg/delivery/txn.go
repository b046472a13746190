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

	"github.com/kmirror/kmirror/pkg/produce"
	"github.com/kmirror/kmirror/pkg/record"
)

// Producer is the transactional producer of one slot: kmirror's produce pipeline under the
// slot's transactional id (produce.Txn: up to five requests in flight per broker, sequences per
// partition), and the client it runs on. Begin, Produce, Flush, Commit and Abort are
// produce.Txn's; they are called by one goroutine at a time.
type Producer interface {
	// Begin opens a transaction.
	Begin() error
	// ProduceBatch queues records of one partition, in order, in the open transaction; an
	// error (marked produce.ErrTxnAborted or produce.ErrTxnFatal) says the transaction can no
	// longer commit.
	ProduceBatch(msgs []*sarama.ProducerMessage) error
	// Flush waits until the target acknowledged every record of the open transaction (each
	// record's Offset is then its offset on the target), or says why it cannot commit.
	Flush(ctx context.Context) error
	// SendPositions starts adding the positions to the open transaction while its records
	// are still in flight, when it can (they become visible only when it commits); Commit then
	// waits for them. It reports whether it started.
	SendPositions(ctx context.Context, pos *produce.Positions) bool
	// Commit commits the open transaction with the positions, or aborts it and says why.
	Commit(ctx context.Context, pos *produce.Positions) error
	// Abort aborts the open transaction.
	Abort(ctx context.Context) error
	// Kill closes the producer's connections, so that nothing it still holds reaches the
	// target from now on, and fails what it holds. It does not block.
	Kill()
	// Close aborts an open transaction and closes the producer and its client.
	Close()
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
// Bytes bytes, or Age after its oldest record reached the slot (Arrived: before the transaction
// began when that record waited for the slot's previous commit). While more records wait for
// the slot (a backlog: catching up), committing at Age would only add commits: none of the
// waiting records becomes readable sooner for it, and the backlog drains more slowly. So a
// backlogged transaction stays open until Backlog after it began (within Records and Bytes);
// Backlog below Age is Age.
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
	group    string
	limits   Limits
	metadata func(sourceTopic string) string
	tracer   trace.Tracer
	obs      Observer

	p     Producer
	killP atomic.Pointer[producerRef] // p, for Abort, which must not wait for t.mu
	bound int
	// failed is why the open transaction can no longer commit, once the producer said so: it is
	// then due at once (its commit aborts it).
	failed atomic.Pointer[error]
	// aborted is set by Abort: the producer's connections are closed, so a commit would only
	// fail.
	aborted atomic.Bool

	mu      sync.Mutex
	closed  bool
	began   time.Time // zero while no transaction is open
	oldest  time.Time // when the open transaction's oldest record reached the slot (Arrived)
	pending []Held
	bytes   int64
	msgs    []*sarama.ProducerMessage                            // SendBatch's hand-over to the producer, reused
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
		slot: slot, id: id, open: cfg.Open, group: cfg.Group, limits: cfg.Limits,
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
	if len(t.pending) >= t.limits.Records || t.failed.Load() != nil || t.bytes >= t.limits.Bytes {
		return true
	}
	if backlogged {
		return now.Sub(t.began) >= max(t.limits.Age, t.limits.Backlog)
	}
	return now.Sub(t.oldest) >= t.limits.Age
}

// Arrived tells the open transaction that records it holds reached the slot at at: when that is
// before it began (they waited for the slot's previous commit), it is due by Age that much
// sooner (not by Backlog: a backlog's transactions stay as long). Else a record arriving just as
// a commit starts waited for that commit, then a whole Age, then its own commit: at 10,000
// records/s the commits (14 ms on average, up to 100 ms) added that much to the latency of a
// record in eight.
func (t *Txn) Arrived(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.began.IsZero() && at.Before(t.oldest) {
		t.oldest = at
	}
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
	return t.oldest.Add(t.limits.Age)
}

func (t *Txn) start(bound int) error {
	p, err := t.open(t.id, bound)
	if err != nil {
		return fmt.Errorf("open the transactional producer %q: %w", t.id, err)
	}
	t.p, t.bound = p, bound
	t.killP.Store(&producerRef{p})
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
	if err := t.p.Begin(); err != nil {
		return fmt.Errorf("begin a transaction of %q: %w", t.id, err)
	}
	t.began = time.Now()
	t.oldest = t.began
	t.failed.Store(nil)
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
	return t.SendBatch(ctx, []*record.Record{r})
}

// SendBatch is Send for rs, records of one target partition in order, handed to the producer
// in one call: they stay pending until Commit, all of them or, when it returns an error, none.
func (t *Txn) SendBatch(ctx context.Context, rs []*record.Record) error {
	if len(rs) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The target names are taken before the producer owns the messages; rs are of one
	// partition, so the last record's position is the partition's.
	last := rs[len(rs)-1]
	topic, partition := last.Msg.Topic, last.Msg.Partition
	msgs := t.msgs[:0]
	for _, r := range rs {
		msgs = append(msgs, &r.Msg)
		t.pending = append(t.pending, Held{Record: r})
		t.bytes += r.Size
	}
	if err := t.p.ProduceBatch(msgs); err != nil {
		// The transaction can no longer commit: rs are held all the same, so that its commit
		// (due at once) aborts it with every record it holds, in order.
		t.failed.CompareAndSwap(nil, &err)
	}
	clear(msgs)
	t.msgs = msgs
	t.advance(last, topic, partition)
	return nil
}

// Room returns how many more records, and how many more bytes, the open transaction takes
// before it is due by size (Limits.Records, Limits.Bytes; both the limits themselves when none
// is open): a sender cuts its runs there, so that a transaction ends where it would have, had
// its records been sent one at a time.
func (t *Txn) Room() (records int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limits.Records - len(t.pending), t.limits.Bytes - t.bytes
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

// commit is Commit with t.mu held.
//
// The commit's requests are not cancelled with ctx: a commit under way when the worker stops
// completes (or fails) as the target answers, within producer.delivery_timeout, rather than
// leave its outcome unknown; Abort ends it at once.
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
	cctx := context.WithoutCancel(ctx)
	pos := &produce.Positions{Group: t.group, Offsets: offsets}
	var err error
	if t.aborted.Load() {
		err = errAborted
	} else {
		// The positions go into the transaction while its records are still being
		// acknowledged and mapped: they become visible only with its commit, after both.
		t.p.SendPositions(cctx, pos)
	}
	if err == nil && before != nil {
		// Every record acknowledged (with its target offset) before the step.
		if err = t.p.Flush(cctx); err == nil {
			err = before(recs)
		}
	}
	if err == nil && t.aborted.Load() {
		// Aborted while the records were written or mapped (the mirror stops).
		err = errAborted
	}
	if err == nil {
		// Commit flushes what is left, waits for the positions (or adds them now, when they
		// could not go early) and ends the transaction; it aborts it itself when it cannot
		// commit.
		err = t.p.Commit(cctx, pos)
	} else if aerr := t.p.Abort(cctx); aerr != nil {
		// The producer failed for good on the way: the coordinator aborts the transaction
		// when the slot's id is next initialised, or at its timeout; nothing of it is ever
		// visible to read_committed.
		err = fmt.Errorf("%w (and the abort failed: %w)", err, aerr)
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

// fail says what became of a transaction that failed with err (it was aborted).
func (t *Txn) fail(err error) error {
	if e := t.failed.Load(); e != nil && !errors.Is(err, *e) {
		err = fmt.Errorf("%w (first error: %w)", err, *e)
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
		t.p.Kill()
	}
	t.p.Close()
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
	t.killP.Load().Kill()
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
