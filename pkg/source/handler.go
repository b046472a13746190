// Package source owns the consumer-group side of kmirror: it turns each claimed source
// partition's fetched batches into batches of records pushed, in order, into the inbox of the
// partition's worker (on the fetch loop, without a goroutine per partition: claim.go,
// pusher.go), commits what the target has acknowledged, and drains a partition's in-flight
// records before giving it up.
//
// It must never commit an offset the target has not acknowledged; never return from a claim
// (letting another member take the partition) while a record of it may still reach the target:
// a revoked partition waits until its records are acknowledged or have failed, and one given up
// at the shutdown deadline is fenced (its records not yet sent never are) before the producers
// are aborted and the member leaves the group; and never start a claim past records it has not
// mirrored without saying so: a gap (records deleted before they were read) is logged, counted
// and, by default, stops the mirror (start.go).
//
// It also keeps the delivery deadline: a partition whose oldest record in flight has not been
// acknowledged for DeliveryTimeout fails, which stops the mirror, whatever the producer does.
package source

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
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
)

// Topics is what the handler needs to know of mirrored topics.
type Topics interface {
	// EnsurePartitions returns the topic, making sure its target has at least n partitions.
	EnsurePartitions(ctx context.Context, source string, n int32) (topics.Topic, error)
}

// Observer is told what the consumer side does. Implementations must not block.
type Observer interface {
	// Assigned and Revoked bracket the claim of one partition.
	Assigned(topic string, partition int32)
	Revoked(topic string, partition int32)
	// Backlog reports what a partition has not yet mirrored: at the watcher's first round of its
	// claim, then at each round (once a second) in which it changed.
	Backlog(topic string, partition int32, b Backlog)
	// Committed reports one commit of the session's offsets and how long it took.
	Committed(d time.Duration)
	// SessionStarted is called when a consumer-group session starts (after each rebalance).
	SessionStarted()
	// GroupError is called for an error the consumer group reported.
	GroupError(err error)
	// CommitFailed is called for each commit of source offsets that did not reach every partition.
	CommitFailed(err error)
	// SourceLost is called when n offsets of topic were deleted from the source before they were
	// mirrored.
	SourceLost(topic string, n int64)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) Assigned(string, int32)         {}
func (NopObserver) Revoked(string, int32)          {}
func (NopObserver) Backlog(string, int32, Backlog) {}
func (NopObserver) Committed(time.Duration)        {}
func (NopObserver) SessionStarted()                {}
func (NopObserver) GroupError(error)               {}
func (NopObserver) CommitFailed(error)             {}
func (NopObserver) SourceLost(string, int64)       {}

// Config configures a Handler.
type Config struct {
	// Inboxes are the workers' inboxes; ring.Route picks one per partition.
	Inboxes []*ring.Queue[*record.Batch]
	// Records recycles the records the workers are done with; nil allocates each one.
	Records *record.Pool
	Topics  Topics
	// InFlight bounds each partition's fetched-but-unacknowledged records.
	InFlight int
	// CommitInterval is how often acknowledged offsets are committed.
	CommitInterval time.Duration
	// DrainTimeout bounds how long a partition waits for its in-flight records once the mirror
	// is stopping (shutdown.timeout).
	DrainTimeout time.Duration
	// RebalanceDrain bounds how long a revoked partition waits for its in-flight records in a
	// rebalance; it must exceed DeliveryTimeout, so that a drain ends with every record
	// acknowledged or failed.
	RebalanceDrain time.Duration
	// Stopping is closed when the mirror stops: drains then end within DrainTimeout.
	Stopping <-chan struct{}
	// DeliveryTimeout is how long a partition may go without an acknowledgement while records
	// are in flight before it fails (producer.delivery_timeout).
	DeliveryTimeout time.Duration
	// StallAfter is how long a partition with a backlog may go without an acknowledgement before
	// it is reported stalled (telemetry.stall_after); 0 never.
	StallAfter time.Duration
	// Prepare, when set, readies the worker at index worker for records of topic/partition (its
	// producers learn of a partition added since they started). It is called before the claim
	// pushes anything.
	Prepare func(ctx context.Context, worker int, topic string, partition int32) error
	// Copies, when set, returns what learns where each record of a claim of topic/partition
	// (whose ID is topicID, and which starts reading at start) was copied on the target, and a
	// function called once the claim has drained.
	Copies func(topic string, partition int32, topicID string, start int64, track *offsets.Partition) (record.Copies, func())
	// NewCommitter returns the member's committer (Start calls it once); metadata gives the
	// metadata string to commit with a topic's offsets (it carries the topic ID). Required.
	NewCommitter func(metadata func(topic string) string) offsets.Committer
	// Fetcher fetches the claimed partitions and hands their batches to the claims (pkg/fetch).
	// Required for Assigned.
	Fetcher Fetcher
	// AbortWrites, when set, is called at a stop when a partition was given up before all its
	// records were acknowledged, before Revoked returns (so before the member leaves the
	// group): it stops the workers, aborting what their producers still hold.
	AbortWrites func()
	// InGroup, when set, reports whether the member is in the group (readiness: Joined).
	InGroup func() bool
	// Route returns the index of the worker a partition's records go to; nil is ring.Route.
	Route func(topic string, partition int32) int
	// Positions, when set, returns where each added claim resumes instead of the group's
	// committed offsets on the source (exactly-once delivery: the positions the target holds).
	// It is called once per assignment, before any of its claims starts.
	Positions func(ctx context.Context, claims map[string][]int32) (map[TopicPartition]Committed, error)
	// Released, when set, is told the partitions a revocation has drained and committed
	// (exactly-once delivery closes their slots' producers).
	Released func(claims map[string][]int32)
	// Source reads committed offsets, log bounds and topic IDs from the source cluster, to decide
	// where each claim starts (start.go); nil starts every claim where sarama would (tests only).
	Source Cluster
	// Group is the consumer group's ID.
	Group string
	// InitialNewest starts a partition without a committed offset at its log end (else its start).
	InitialNewest bool
	// LossPolicy is consumer.source_loss_policy: "fail" stops the mirror when records were deleted
	// from the source before they were mirrored, "continue" resumes at the log start.
	LossPolicy string
	// Fatal stops the mirror with err: a partition cannot go on.
	Fatal    func(error)
	Observer Observer
	// Tracing, when enabled, gives sampled records a span that joins the trace their headers
	// carry, and traces every commit.
	Tracing *telemetry.Tracing
	// Provenance, when set (topics.provenance_header), stamps each copy with the cluster its
	// record was first written to and marks the records that came from the target, which the
	// workers do not copy (they still go through the tracker, so their offsets are committed).
	Provenance *record.Provenance
	Log        *zap.Logger
}

// Handler is a group.Handler that feeds the ring: the member's Assigned, Revoked and Lost start,
// drain and stop claims (member.go), each fed by the Fetcher (claim.go).
type Handler struct {
	cfg Config

	// assignMu serializes changes of the claimed set: the member's callbacks and a claim's
	// restart (after an out-of-range fetch or a re-created topic).
	assignMu sync.Mutex

	// commitMu serializes commits, from marking to the coordinator's answer. A commit that
	// finds nothing new to mark must not return while another that took the marks is still
	// waiting for its answer: Revoked's commit would then return before the revoked partitions'
	// drained positions are committed, the member would stop owning them, and the commit under
	// way, or its retry after a failure, would be refused (not owned) and the positions lost.
	commitMu sync.Mutex

	mu     sync.Mutex
	parts  map[topicPartition]*claimState
	claims map[topicPartition]*claim
	// watched is what the watcher and the committer visit each round: every claim but those
	// found idle (watch.go). Under mu; a claim woken since the last round waits in woken.
	watched map[topicPartition]*claimState
	wakeMu  sync.Mutex
	woken   []*claimState
	// lastRound is when the watcher last ran (under mu): a woken claim was idle until then.
	lastRound time.Time
	// listing is the claimed partitions as the watcher lists their log ends, made again after
	// parts changed (zero then). Under mu.
	listing claimedList

	stopCommit context.CancelFunc
	commitDone <-chan struct{}
	committer  offsets.Committer
	joined     bool
	assigning  atomic.Bool // an Assigned is starting claims
	givenUp    atomic.Int64
	stalled    atomic.Pointer[[]string]
	listed     time.Time   // when the watcher last listed the log ends (its goroutine only)
	unsent     bool        // marks not yet committed (a failed commit, starting positions)
	probing    atomic.Bool // a probe of quiet partitions is running (quiet.go)
	// topicIDs maps each claimed source topic to its ID as seen when its claims were decided;
	// read without h.mu, as the committer asks for it while h.mu is held.
	topicIDs atomic.Pointer[map[string]string]

	// pushers hand on, per worker, what claims could not hand on at once (pusher.go); started
	// with the first claim or by Start, stopped by Stop.
	pushMu      sync.Mutex
	pushers     []*pusher
	stopPushers context.CancelFunc
	pushWG      sync.WaitGroup
}

type topicPartition struct {
	topic     string
	partition int32
}

type claimState struct {
	tp    topicPartition
	track *offsets.Partition
	// inWatch is set while the claim is in the handler's watched set or on its way there
	// (woken): see watch.go for why a claim that changes after the watcher let it go is seen.
	inWatch atomic.Bool
	start   int64
	marked  int64
	hwm     func() int64
	// highWatermark is the high watermark the last fetched batch carried (-1 before the first);
	// hwm reads it.
	highWatermark atomic.Int64
	// progress is the committed position last seen by the watcher; since is when it last moved,
	// or when the partition last had nothing to mirror and nothing in flight (watch.go).
	progress int64
	since    time.Time
	// logEnd is the partition's log end offset as last listed (read_uncommitted: records behind
	// an open transaction count), or -1.
	logEnd atomic.Int64
	// fetched counts the records and their bytes the claim handed on, for the average size.
	fetched, fetchedBytes atomic.Int64
	// caughtUp is when the watcher last saw nothing left to mirror (or the claim started).
	caughtUp time.Time
	// stalledSince is when the partition was found stalled (zero when it is not).
	stalledSince time.Time
	// lastBacklog is the backlog last reported to the Observer, once reported is set.
	lastBacklog Backlog
	reported    bool
	// quiet is the offset of the next record the source holds for a reader of committed records,
	// as probed when the mirrored position was quietFrom (-1: never probed): the offsets between
	// are transaction markers or aborted records, nothing to mirror (quiet.go).
	quiet, quietFrom atomic.Int64
	// behindAt is the mirrored position at which the last listing found the partition behind its
	// log end with nothing in flight, or -1 (quiet.go; the watcher's goroutine only).
	behindAt int64
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Inboxes) == 0 || cfg.Topics == nil {
		return nil, errors.New("source: inboxes and topics are required")
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
	if cfg.RebalanceDrain <= 0 {
		cfg.RebalanceDrain = cfg.DrainTimeout
	}
	if cfg.NewCommitter == nil {
		return nil, errors.New("source: a committer is required")
	}
	if cfg.Route == nil {
		n := len(cfg.Inboxes)
		cfg.Route = func(topic string, partition int32) int { return ring.Route(topic, partition, n) }
	}
	if cfg.Fatal == nil {
		cfg.Fatal = func(error) {}
	}
	return &Handler{cfg: cfg, parts: make(map[topicPartition]*claimState), claims: make(map[topicPartition]*claim),
		watched: make(map[topicPartition]*claimState)}, nil
}

// Owns reports whether this member holds a claim of topic/partition in the current session.
func (h *Handler) Owns(topic string, partition int32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.parts[topicPartition{topic, partition}]
	return ok
}

// Claims returns the partitions this member holds in the current session, by topic.
func (h *Handler) Claims() map[string][]int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]int32)
	for tp := range h.parts {
		out[tp.topic] = append(out[tp.topic], tp.partition)
	}
	return out
}

// GivenUp counts the partitions given up (fenced) before all their records were acknowledged.
func (h *Handler) GivenUp() int { return int(h.givenUp.Load()) }

// Joined reports whether the handler is inside a group session (for readiness).
func (h *Handler) Joined() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.joined && !h.assigning.Load() && (h.cfg.InGroup == nil || h.cfg.InGroup())
}

// background runs the session's periodic commit and its watcher until ctx ends, each on a
// goroutine of its own: a commit waits for the target (the offset map is written before it) and
// for the source's coordinator, and the watcher's delivery deadlines, stall detection and
// backlog metrics must go on meanwhile; the watcher's listings of the source must not delay a
// commit either. The returned channel is closed once both have returned.
func (h *Handler) background(ctx context.Context) <-chan struct{} {
	var both sync.WaitGroup
	both.Add(2)
	go func() {
		defer both.Done()
		t := time.NewTicker(h.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.periodicCommit(ctx)
			}
		}
	}()
	go func() {
		defer both.Done()
		watch := time.NewTicker(time.Second)
		defer watch.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-watch.C:
				h.watch(ctx, now)
			}
		}
	}()
	done := make(chan struct{})
	go func() { both.Wait(); close(done) }()
	return done
}

// commitFinal is the session's last commit; a failure is an error, with the partitions whose
// acknowledged records will be mirrored again.
func (h *Handler) commitFinal() {
	if err := h.commit(context.Background()); err != nil {
		h.cfg.Log.Error("final commit of source offsets failed; records mirrored since the last commit will be mirrored again",
			append(commitFields(err), zap.Error(err))...)
	}
}

// commit marks every partition's acknowledged position and commits them. A failure is counted
// and returned; the failed partitions stay marked and are committed again next time. When it
// returns nil, every position acknowledged when it was called is committed (commitMu).
func (h *Handler) commit(ctx context.Context) error {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	c := h.committer
	dirty := h.unsent
	h.takeWoken()
	for tp, st := range h.watched { // a claim leaves watched only once its position is marked
		next := st.track.Committed()
		if next > st.marked && next >= 0 {
			c.Mark(tp.topic, tp.partition, next)
			st.marked = next
			dirty = true
		}
	}
	h.mu.Unlock()
	if !dirty || c == nil {
		return nil
	}
	start := time.Now()
	if tr := h.cfg.Tracing; tr != nil && tr.Enabled {
		var span trace.Span
		ctx, span = tr.Tracer.Start(ctx, "kmirror.commit", trace.WithTimestamp(start))
		defer span.End()
	}
	err := c.Commit(ctx)
	h.cfg.Observer.Committed(time.Since(start))
	h.mu.Lock()
	h.unsent = err != nil
	h.mu.Unlock()
	if err != nil {
		h.cfg.Observer.CommitFailed(err)
		return err
	}
	return nil
}

// periodicCommit is one tick of the periodic commit; a failure is a warning (the next tick
// commits again).
func (h *Handler) periodicCommit(ctx context.Context) {
	if err := h.commit(ctx); err != nil && ctx.Err() == nil {
		h.cfg.Log.Warn("commit source offsets failed; committing again at the next interval",
			append(commitFields(err), zap.Error(err))...)
	}
}

// commitFields names the partitions a commit failed for.
func commitFields(err error) []zap.Field {
	var ce *offsets.CommitError
	if !errors.As(err, &ce) {
		return nil
	}
	parts := make([]string, 0, len(ce.Partitions))
	for _, p := range ce.Partitions {
		parts = append(parts, fmt.Sprintf("%s/%d@%d", p.Topic, p.Partition, p.Offset))
	}
	return []zap.Field{zap.Strings("partitions", parts)}
}

// drain waits until every record of the partition is acknowledged or the partition has failed.
// In a rebalance that takes at most DeliveryTimeout (the watchdog fails a partition that makes
// no progress), within RebalanceDrain; once the mirror is stopping, at most DrainTimeout from
// then. A partition given up with records unacknowledged is fenced, so that none still waiting
// in an inbox is sent; the mirror aborts the producers (records they hold are never sent) before
// it leaves the group, and a drain cut short outside a shutdown stops the mirror for that reason.
func (h *Handler) drain(track *offsets.Partition, log *zap.Logger) {
	dctx, cancel := context.WithTimeout(context.Background(), h.cfg.RebalanceDrain)
	defer cancel()
	stopping := false
	go func() {
		select {
		case <-h.cfg.Stopping:
		case <-dctx.Done():
			return
		}
		t := time.NewTimer(h.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-dctx.Done():
		}
	}()
	err := track.Drain(dctx)
	select {
	case <-h.cfg.Stopping:
		stopping = true
	default:
	}
	switch {
	case err == nil:
		log.Debug("partition drained", zap.Int64("committed", track.Committed()))
	case track.Failed() != nil:
		log.Warn("partition stopped at a record that failed; it and what follows will be mirrored again",
			zap.Int64("committed", track.Committed()), zap.Error(err))
	default:
		track.Fence()
		h.givenUp.Add(1)
		log.Warn("partition given up before all its records were acknowledged; they were not committed and will be mirrored again",
			zap.Int64("committed", track.Committed()), zap.Int("in_flight", track.InFlight()), zap.Error(err))
		if !stopping {
			h.cfg.Fatal(fmt.Errorf("%s/%d could not be drained within %s in a rebalance; stopping, so that none of its records "+
				"is written after another member took it over: %w", track.Topic(), track.Partition(), h.cfg.RebalanceDrain, err))
		}
	}
}

// release lets go of a record that was never handed on.
func (h *Handler) release(r *record.Record) {
	if r.Span != nil {
		r.Span.End()
	}
	h.cfg.Records.Put(r)
}

// startSpan opens the record's "kmirror.mirror" span, joining the trace carried by its headers
// when there is one. The copy keeps the source's headers byte for byte (order, duplicates, case)
// unless tracing.PropagateToTarget asks otherwise: then a sampled record that arrived with a
// traceparent leaves with kmirror's span context in its place, so a consumer on the target
// continues the same trace. Records without one are never given headers they did not have.
func (h *Handler) startSpan(r *record.Record, m *sarama.ConsumerMessage) {
	tr := h.cfg.Tracing
	ctx := context.Background()
	carried := telemetry.HasTraceparent(m.Headers)
	if carried {
		ctx = tr.Extract(ctx, m.Headers)
	}
	// The span starts bare, and only a span the sampler records (1% by default) pays for its
	// attributes and the clock: built up front for every record, they cost 8 allocations and a
	// quarter of the in-process throughput at 1% sampling (BenchmarkTracingOverhead).
	ctx, span := tr.Tracer.Start(ctx, "kmirror.mirror", trace.WithSpanKind(trace.SpanKindConsumer))
	if !span.IsRecording() {
		return
	}
	r.Fetched = time.Now()
	span.SetAttributes(
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.source.name", m.Topic),
		attribute.Int("messaging.kafka.source.partition", int(m.Partition)),
		attribute.Int64("messaging.kafka.message.offset", m.Offset),
		attribute.String("messaging.destination.name", r.Msg.Topic),
	)
	r.Span = span
	if carried && tr.PropagateToTarget {
		tr.Inject(ctx, &r.Msg.Headers)
	}
}

// behind reports whether a partition whose high watermark is hwm holds records after the one at
// offset. The offset just after it may be a transaction's marker (the high watermark counts it,
// a read_committed reader never sees it), so only a gap of two or more counts: the last record of
// every source transaction would otherwise look like a backlog, and exactly-once would keep its
// transaction open for delivery.transaction.backlog_max_age instead of max_age at every one.
func behind(offset, hwm int64) bool { return offset+2 < hwm }
