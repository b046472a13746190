// Package worker owns a partition worker: it takes records from its inbox in order, checks each
// against what its target topic accepts, produces it to the target with idempotent producers of
// its own, and reports every record's fate to the record's partition tracker.
//
// It must never report a record as acknowledged before the target has acknowledged it (or, under
// the skip and dead-letter policies, before it has been counted, logged and, for dead-letter,
// written there; for a record that came from the target under topics.provenance_header, before
// it has been counted and, in exactly-once, its position moved in the transaction), never drop
// one silently, and never hand the target a record of a partition
// that has stopped: once a record of a partition fails, or its claim is given up, nothing after
// it in that partition is sent.
//
// How order survives failures. Records of one partition always go through one producer (the
// one for its target topic's size limit) in inbox order. In at-least-once that producer is
// kmirror's produce pipeline (pkg/produce): up to five requests in flight per target broker,
// per-partition sequence numbers, and every failure the cluster's state explains (a leader
// moved, a connection broken, a timeout, a lost sequence) retried inside the pipeline by
// resending the partition's unacknowledged batches in order, so the worker sees only a record's
// final fate, in the partition's order. The worker hands the pipeline a partition's records in
// one call (pending.go: a run of one partition taken from the inbox, at most a target batch of
// bytes, handed over as soon as the inbox has nothing more ready) and is told their fates a
// batch at a time on the pipeline's delivery goroutine: no channel per record either way. In
// exactly-once, the same pipeline runs under each slot's transactional id (produce.Txn,
// pkg/delivery). A record the target refuses for
// what it is (too large, a timestamp out of bounds, no key in a compacted topic) is caught
// before it is sent,
// where the record is known exactly: records that might fit only compressed are sent alone, once
// everything before them in their partition is settled, so the broker's verdict names them
// alone; a batch refused anyway fails with everything after it in its partition, none of which
// the pipeline sends. A record given back for any other reason (not acknowledged within
// producer.delivery_timeout, or its producer aborted) starts a recovery (resend.go): the
// worker's producers are aborted (their connections closed) before anything later in the
// partition can be sent, and what they held is sent again in order on new producers.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/produce"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// Observer is told of every record's fate. Implementations must be cheap and must not block:
// they run on the worker's hot path.
type Observer interface {
	// Sent is called when a record is handed to the producer.
	Sent(worker int, r *record.Record)
	// Acked is called when the target acknowledged a record.
	Acked(worker int, r *record.Record, at time.Time)
	// Skipped is called when a record the target refuses was skipped or written to the
	// dead-letter topic instead, under the refused-record policy, and when a record is not
	// copied because it came from the target (err is ErrFromTarget).
	Skipped(worker int, r *record.Record, err error)
	// Failed is called when a record could not be produced and its partition stops.
	Failed(worker int, r *record.Record, err error)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) Sent(int, *record.Record)             {}
func (NopObserver) Acked(int, *record.Record, time.Time) {}
func (NopObserver) Skipped(int, *record.Record, error)   {}
func (NopObserver) Failed(int, *record.Record, error)    {}

// DeadLetter keeps records the target refuses, with the reason.
type DeadLetter interface {
	Write(ctx context.Context, r *record.Record, reason error) error
}

// Config configures a Worker.
type Config struct {
	// ID is the worker's index in the ring.
	ID int
	// Inbox is the queue the worker drains: batches of one partition's records each, in offset
	// order.
	Inbox *ring.Queue[*record.Batch]
	// Records takes back each record whose fate is final (acknowledged, skipped, or dropped
	// because its partition stopped) once the tracker and the observer have been told; nil
	// leaves them to the garbage collector. A failed record is never put back: the error may
	// still refer to it.
	Records *record.Pool
	// NewProducer opens the worker's producers, one per batch size bound (the target topics'
	// max.message.bytes); the worker owns them and closes them when it stops.
	NewProducer NewProducer
	// Compressed says whether the producers compress batches: the target then checks a batch's
	// compressed size, so a record larger than the limit may still fit.
	Compressed bool
	// Policy is what to do with a record the target refuses: config.RefusedFail,
	// config.RefusedSkip or config.RefusedDeadLetter.
	Policy string
	// DeadLetter receives refused records under the dead-letter policy.
	DeadLetter DeadLetter
	// Clock tells the time for the timestamp checks; nil reads the real clock every time.
	Clock *Clock
	// Fatal is called (from the worker's goroutines) when a record fails for good; the mirror
	// then stops.
	Fatal    func(error)
	Observer Observer
	Log      *zap.Logger
	// Txns, when set, is exactly-once delivery: records go in transactions of their slot's
	// producer (txn.go) instead of through the idempotent producers.
	Txns *delivery.Slots
	// WriteMap, when set with Txns, writes what the given records' Copies recorded to the offset
	// map, durably, before the transaction holding those records commits (see commitTxn).
	WriteMap func(ctx context.Context, copies []record.Copies) error
}

// Worker moves records from its inbox to the target.
type Worker struct {
	cfg Config

	mu    sync.Mutex
	lanes map[int]*lane // by batch bound; soloLane for records sent alone

	aborted atomic.Bool
	logged  sync.Map // refusal reasons and failures already logged: one line each

	// The lane of the previous record (send loop only): consecutive records mostly share a
	// limit, and the lane map is behind a lock.
	lastLimit int
	last      *lane

	pending // records taken from the inbox for a producer, handed over together (send loop only)

	resending // records the producers gave back, to send again in order (resend.go)
}

// Clock is a coarse wall clock for the timestamp checks, shared by the workers: reading the real
// one for every record costs a tenth of what kmirror spends on it, and the bounds it is compared
// with are minutes to hours wide. Run keeps it within 10 ms; a nil or stopped Clock reads the
// real one.
type Clock struct{ unixNano atomic.Int64 }

func (c *Clock) now() time.Time {
	if c != nil {
		if n := c.unixNano.Load(); n != 0 {
			return time.Unix(0, n)
		}
	}
	return time.Now()
}

// Run keeps the clock current until ctx ends.
func (c *Clock) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		c.unixNano.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			c.unixNano.Store(0)
			return
		case <-t.C:
		}
	}
}

// lane is one producer, whose outcomes come to w.outcome a batch at a time on the producer's own
// delivery goroutine.
type lane struct {
	p    Producer
	solo bool
}

// kafkaDefaultMaxMessageBytes is Kafka's default max.message.bytes.
const kafkaDefaultMaxMessageBytes = 1048588

// soloLane keys the producer for records sent alone: its bound is the largest request.
const soloLane = -1

// New returns a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if cfg.Inbox == nil || cfg.NewProducer == nil {
		return nil, errors.New("worker: an inbox and a producer factory are required")
	}
	if cfg.Policy == config.RefusedDeadLetter && cfg.DeadLetter == nil {
		return nil, errors.New("worker: the dead-letter policy needs a dead-letter writer")
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Fatal == nil {
		cfg.Fatal = func(error) {}
	}
	cfg.Log = cfg.Log.With(zap.Int("worker", cfg.ID))
	return &Worker{cfg: cfg, lanes: make(map[int]*lane)}, nil
}

// Run sends records until ctx ends, then shuts its producers down and waits for the outcome of
// every record it sent, so that when Run returns every record taken from the inbox has been
// reported to its tracker. Callers end ctx only once the source has drained or given up its
// partitions: whatever a producer still holds then is past its partition's drain deadline and is
// aborted, never flushed, so that it cannot land after another member took the partition.
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.Txns != nil {
		w.sendTxn(ctx)
	} else {
		w.send(ctx)
	}
	w.Abort()
	w.mu.Lock()
	lanes := make([]*lane, 0, len(w.lanes))
	for _, l := range w.lanes {
		lanes = append(lanes, l)
		l.p.AsyncClose()
	}
	w.mu.Unlock()
	// Without the lock: an outcome told meanwhile may take it (givenBack starting a recovery).
	// Only the send loop, which has returned, opens lanes.
	for _, l := range lanes {
		<-l.p.Done()
	}
	for _, l := range lanes {
		l.p.Release()
	}
	w.resending.mu.Lock()
	left := w.resending.records
	w.resending.records = nil
	w.resending.mu.Unlock()
	for _, r := range left {
		w.drop(r) // given back and not sent again before the stop: read again later
	}
	if left := w.cfg.Inbox.Len(); left > 0 {
		w.cfg.Log.Info("worker stopped with batches of records still in its inbox; they were not committed and will be read again",
			zap.Int("batches", left))
	}
	return nil
}

// Abort stops the worker from writing anything more to the target: records not yet sent are
// not sent, and the producers' connections are closed so that what they hold is not sent
// either. Records that were sent but not acknowledged come back as failed; their partitions
// stop. It does not block.
func (w *Worker) Abort() {
	if !w.aborted.CompareAndSwap(false, true) {
		return
	}
	if w.cfg.Txns != nil {
		w.cfg.Txns.AbortAll()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lanes {
		l.p.Abort()
	}
}

// Prepare makes sure the worker's producers know partition of topic before records of it are
// pushed (a partition added since they last refreshed their metadata would otherwise be refused
// by sarama's partitioner). Producers opened later read fresh metadata.
func (w *Worker) Prepare(ctx context.Context, topic string, partition int32) error {
	var producers []interface {
		Knows(topic string, partition int32) (bool, error)
	}
	w.mu.Lock()
	for _, l := range w.lanes {
		producers = append(producers, l.p)
	}
	w.mu.Unlock()
	if w.cfg.Txns != nil {
		for _, t := range w.cfg.Txns.All() {
			producers = append(producers, t)
		}
	}
	for _, p := range producers {
		for attempt := 0; ; attempt++ {
			ok, err := p.Knows(topic, partition)
			if ok {
				break
			}
			if attempt == 50 {
				return fmt.Errorf("producer %d does not see partition %d of target topic %q after %d metadata refreshes: %v",
					w.cfg.ID, partition, topic, attempt, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(produce.RetryPause(50*time.Millisecond, attempt)):
			}
		}
	}
	return nil
}

// send takes batches from the inbox and their records in order, one at a time, through
// dispatch (which gathers a partition's run for one hand-over to its producer: pending.go),
// until ctx ends.
func (w *Worker) send(ctx context.Context) {
	pump := w.pumpContext(ctx)
	for {
		b, ok := w.cfg.Inbox.TryPop()
		if !ok {
			// Nothing more is ready: hand over what is pending before waiting.
			if !w.flush(ctx) {
				return
			}
			var err error
			if b, err = w.cfg.Inbox.Pop(pump); err != nil {
				if ctx.Err() != nil {
					return // ctx ended: the orderly way to stop
				}
				w.resend(ctx) // woken to resend what the producers gave back
				pump = w.pumpContext(ctx)
				continue
			}
		}
		for i, r := range b.Records {
			if w.recovering.Load() {
				w.requeue(r, nil) // after what is being resent, in order
				w.resend(ctx)
				pump = w.pumpContext(ctx)
				continue
			}
			if !w.dispatch(ctx, r) || ctx.Err() != nil {
				w.dropPending()
				w.dropAll(b.Records[i+1:])
				return
			}
		}
	}
}

// dropAll lets go of records taken from the inbox that will not be sent (ctx ended): they stay
// unacknowledged, as records still in the inbox do.
func (w *Worker) dropAll(rs []*record.Record) {
	for _, r := range rs {
		w.drop(r)
	}
}

// dispatch checks r and hands it to the right producer (alone, if it must travel alone);
// false when ctx ended first.
func (w *Worker) dispatch(ctx context.Context, r *record.Record) bool {
	if w.aborted.Load() || r.Track.Stopped() {
		w.drop(r)
		return true
	}
	if r.FromTarget {
		if !w.flush(ctx) {
			return false
		}
		w.fromTarget(r)
		return true
	}
	solo, refusal := w.check(r)
	if refusal != nil {
		if !w.flush(ctx) { // the policy may wait for the records before r to settle
			return false
		}
		w.refused(ctx, r, refusal)
		return true
	}
	if solo {
		if !w.flush(ctx) {
			return false
		}
		w.sendAlone(ctx, r)
		return true
	}
	l := w.last
	if l == nil || r.Limit != w.lastLimit {
		if l = w.laneFor(ctx, r, r.Limit); l == nil {
			w.drop(r)
			return true
		}
		w.lastLimit, w.last = r.Limit, l
	}
	return w.hand(ctx, l, r)
}

// hand gives r to l's producer; false when ctx ended first (r stays unacknowledged and is read
// again).
func (w *Worker) hand(ctx context.Context, l *lane, r *record.Record) bool {
	if !r.Handed { // a record sent again is still counted in flight once
		r.Handed = true
		w.cfg.Observer.Sent(w.cfg.ID, r)
	}
	if r.Span != nil {
		r.Sent = time.Now()
	}
	return w.pend(ctx, l, r)
}

// sendAlone sends r by itself, once everything before it in its partition is settled, and
// waits until r is settled too: the broker's verdict then concerns r alone.
func (w *Worker) sendAlone(ctx context.Context, r *record.Record) {
	if !w.settle(ctx, r, r.Seq) {
		if w.recovering.Load() && !r.Track.Stopped() && !w.aborted.Load() {
			w.requeue(r, nil) // records before it are being sent again: it follows them
			return
		}
		w.drop(r)
		return
	}
	l := w.laneFor(ctx, r, soloLane)
	if l == nil {
		w.drop(r)
		return
	}
	track, seq := r.Track, r.Seq // r may be recycled once settled
	if !w.hand(ctx, l, r) || !w.flush(ctx) {
		return
	}
	for spins := 0; !track.Settled(seq+1) && !track.Stopped() && ctx.Err() == nil && !w.recovering.Load(); spins++ {
		pause(spins)
	}
}

// settle waits until every record before seq in r's partition is settled; false when the
// partition stopped or ctx ended first.
func (w *Worker) settle(ctx context.Context, r *record.Record, seq uint64) bool {
	for spins := 0; !r.Track.Settled(seq); spins++ {
		if r.Track.Stopped() || ctx.Err() != nil || w.aborted.Load() || w.recovering.Load() {
			return false
		}
		pause(spins)
	}
	return true
}

// laneFor returns the lane for r, retrying while a producer cannot be opened (the target is
// unreachable); nil when r's partition stopped, the worker was aborted or ctx ended first. The
// source's delivery deadline bounds the wait: it fails the partition, which stops the mirror.
func (w *Worker) laneFor(ctx context.Context, r *record.Record, limit int) *lane {
	for attempt := 0; ; attempt++ {
		l, err := w.lane(limit)
		if err == nil {
			return l
		}
		if attempt == 0 || attempt%30 == 0 {
			w.cfg.Log.Warn("cannot open a producer on the target; retrying", zap.String("topic", r.Msg.Topic), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(produce.RetryPause(100*time.Millisecond, attempt)):
		}
		if r.Track.Stopped() || w.aborted.Load() {
			return nil
		}
	}
}

// lane returns the producer for batches bounded by the target topic limit (or the one for
// records sent alone), opening it on first use.
func (w *Worker) lane(limit int) (*lane, error) {
	key := limit
	if limit != soloLane {
		if limit <= 0 {
			limit = kafkaDefaultMaxMessageBytes // the target did not say: Kafka's default
		}
		key = batchBound(limit, w.cfg.Compressed)
	}
	w.mu.Lock()
	l, ok := w.lanes[key]
	w.mu.Unlock()
	if ok {
		return l, nil
	}
	if w.aborted.Load() {
		return nil, errors.New("worker aborted")
	}
	bound := key
	if key == soloLane {
		bound = soloBound
	}
	// Opened without the lock: connecting can take a minute while the target is away, and
	// Abort, Prepare and the error path take the lock. Only the send loop opens lanes.
	l = &lane{solo: key == soloLane}
	p, err := w.cfg.NewProducer(bound, func(msgs []*sarama.ProducerMessage, err error) { w.outcome(l, msgs, err) })
	if err != nil {
		return nil, fmt.Errorf("open a producer for batches of up to %d bytes: %w", bound, err)
	}
	l.p = p
	w.mu.Lock()
	w.lanes[key] = l
	w.mu.Unlock()
	if w.aborted.Load() || w.recovering.Load() {
		p.Abort() // aborted, or a recovery began, while it was opening
	}
	return l, nil
}

// outcome is told the fate of a batch of l's records, in the order its producer settled them (a
// partition's in its order), on the producer's delivery goroutine.
func (w *Worker) outcome(l *lane, msgs []*sarama.ProducerMessage, err error) {
	if err != nil {
		for _, m := range msgs {
			w.givenBack(l, m, err)
		}
		return
	}
	now := time.Now()
	for _, m := range msgs {
		w.acked(m, now)
	}
}

// acked reports m acknowledged by the target at now.
func (w *Worker) acked(m *sarama.ProducerMessage, now time.Time) {
	r := record.Of(m)
	if r == nil {
		return
	}
	w.resending.acked.Store(true)
	if r.Copies != nil {
		r.Copies.Copied(r.Offset, m.Offset) // before the ack: the map never lags what is committed
	}
	r.Track.Ack(r.Seq)
	w.cfg.Observer.Acked(w.cfg.ID, r, now)
	w.cfg.Records.Put(r)
}

// givenBack acts on m, which l's producer gave back with err.
func (w *Worker) givenBack(l *lane, m *sarama.ProducerMessage, err error) {
	r := record.Of(m)
	if r == nil {
		return
	}
	switch {
	case w.aborted.Load():
		// The worker was aborted: every record still in a producer comes back here. Its
		// partition stops unacknowledged at it, to be read again; the reason was logged once
		// where the abort started.
		r.Track.Fail(r.Seq, fmt.Errorf("not acknowledged before the producers were aborted: %w", err))
		w.cfg.Observer.Failed(w.cfg.ID, r, err)
	case l.solo && refusedByTarget(err):
		w.refused(context.Background(), r, refusal(r, err))
	case refusedByTarget(err):
		w.fail(r, fmt.Errorf("the target refused a batch of records that passed kmirror's checks "+
			"(its topic configuration may have changed since kmirror read it; a restart reads it again): %w", err))
	default:
		// The producer gave the record back for the state of the cluster (no broker
		// reachable, a closed connection, retries used up, or behind a refused record of its
		// partition, not written): send it again, in order, on fresh producers. The source's
		// delivery deadline bounds how long that goes on.
		w.requeue(r, err)
	}
}

// refusedByTarget reports whether err is the target refusing records for what they are, rather
// than for the state of the cluster.
func refusedByTarget(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		errors.Is(err, sarama.ErrInvalidTimestamp) || errors.Is(err, sarama.ErrInvalidRecord)
}

// drop lets go of a record that will not be sent because its partition stopped or the worker
// was aborted: it stays unacknowledged, so it is read again by whoever owns the partition next.
func (w *Worker) drop(r *record.Record) {
	if r.Span != nil {
		r.Span.End()
	}
	w.cfg.Records.Put(r)
}

// fail stops r's partition at r and the mirror with it. The first failure of a worker is logged
// here; the mirror logs the error it stops with.
func (w *Worker) fail(r *record.Record, err error) {
	werr := fmt.Errorf("produce %s/%d offset %d to target topic %q: %w",
		r.Track.Topic(), r.Track.Partition(), r.Offset, r.Msg.Topic, err)
	r.Track.Fail(r.Seq, werr)
	w.cfg.Observer.Failed(w.cfg.ID, r, werr)
	if _, seen := w.logged.LoadOrStore(failKey{r.Track.Topic(), r.Track.Partition()}, true); !seen {
		w.cfg.Log.Error("record could not be mirrored; its partition stops here and the mirror stops",
			zap.String("topic", r.Track.Topic()), zap.Int32("partition", r.Track.Partition()),
			zap.Int64("offset", r.Offset), zap.Error(err))
	}
	w.cfg.Fatal(werr)
}

type failKey struct {
	topic     string
	partition int32
}

// pause spins briefly, then yields, then sleeps up to a millisecond: a worker waits only while
// a record travels alone.
func pause(spins int) {
	switch {
	case spins < 16:
		time.Sleep(0)
	default:
		time.Sleep(min(time.Duration(spins-15)*50*time.Microsecond, time.Millisecond))
	}
}
