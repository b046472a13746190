package source

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/offsets"
)

// listEvery is how often the watcher lists the claimed partitions' log end offsets on the source.
const listEvery = 5 * time.Second

// Backlog is what a partition has not yet mirrored: the records between the mirrored position and
// the source's log end (transaction markers and aborted records included), their bytes
// (estimated from the partition's average record size), and the age of the oldest of them.
type Backlog struct {
	Records, Bytes int64
	// Age is how old the oldest record not yet mirrored is: from its timestamp once it is in
	// flight, else the time since the partition was last caught up (a bound from above).
	Age time.Duration
	// Stalled is set when there is a backlog and nothing was acknowledged for StallAfter.
	Stalled bool
}

// watch runs once a second while a session lasts. For every watched partition it keeps
//   - the delivery deadline: records in flight with no acknowledgement for DeliveryTimeout fail
//     the partition, which stops the mirror (sarama retries a record as long as its retry count
//     lasts, and a frozen broker holds one attempt for a whole read timeout: this deadline holds
//     whatever the producer does);
//   - the backlog, against the log end listed on the source every listEvery (a fetch answers
//     nothing past an open transaction, so the fetch's own high watermark can lag far behind);
//   - the stall: a backlog with no acknowledged progress for StallAfter is logged once and makes
//     the mirror not ready, naming the partitions, until progress resumes.
//
// Both clocks run from the last acknowledged progress or from the last time the partition had
// nothing to mirror and nothing in flight, whichever is later: a partition that was idle for an
// hour and just fetched its next record has been waiting for a second, not for an hour.
//
// A round visits the watched partitions only, not every claim: at 10,000 idle partitions a
// visit of each, every second, was most of an idle mirror's CPU. A partition leaves the watched
// set when a round finds it idle: nothing to mirror, nothing in flight, its position marked for
// the commit (the committer visits the same set). What it reports then cannot change until its
// log end or high watermark moves (a record is registered only after the batch that carries it
// was delivered, with its high watermark). Whoever moves them wakes the partition after the
// store (wake); the round lets it go only after clearing inWatch and then finding both as
// they were (unwatch). Sequentially consistent atomics order the two: either the round sees
// the new value and keeps the partition, or the waker sees inWatch cleared and wakes it.
func (h *Handler) watch(ctx context.Context, now time.Time) {
	if now.Sub(h.listed) >= listEvery {
		h.listed = now
		h.listLogEnds(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.takeWoken()
	h.lastRound = now
	var stalled []string
	for tp, st := range h.watched {
		end := st.end()
		committed, inFlight := st.track.Committed(), st.track.InFlight()
		b := h.backlog(st, end, committed, inFlight, now)
		if committed != st.progress || st.since.IsZero() || (b.Records == 0 && inFlight == 0) {
			st.progress, st.since = committed, now
		}
		switch {
		case b.Records > 0 && now.Sub(st.since) >= h.cfg.StallAfter && h.cfg.StallAfter > 0:
			b.Stalled = true
			if st.stalledSince.IsZero() {
				st.stalledSince = now
				h.cfg.Log.Warn("partition stalled: records wait to be mirrored and none was acknowledged by the target",
					zap.String("topic", tp.topic), zap.Int32("partition", tp.partition), zap.Int64("offset", committed),
					zap.Int64("unmirrored_records", b.Records), zap.Int("in_flight", inFlight),
					zap.Duration("for", now.Sub(st.since).Round(time.Second)), zap.Duration("stall_after", h.cfg.StallAfter))
			}
			stalled = append(stalled, fmt.Sprintf("%s/%d (since %s)", tp.topic, tp.partition, now.Sub(st.since).Round(time.Second)))
		case !st.stalledSince.IsZero():
			h.cfg.Log.Info("partition moving again", zap.String("topic", tp.topic), zap.Int32("partition", tp.partition),
				zap.Duration("stalled_for", now.Sub(st.stalledSince).Round(time.Second)))
			st.stalledSince = time.Time{}
		}
		// An unchanged backlog is not reported again: at idle that is every partition, and
		// thousands of them would each set four gauges a second for nothing.
		if !st.reported || b != st.lastBacklog {
			h.cfg.Observer.Backlog(tp.topic, tp.partition, b)
			st.reported, st.lastBacklog = true, b
		}
		h.expire(tp, st, committed, inFlight, now)
		if b.Records == 0 && inFlight == 0 && committed <= st.marked {
			h.unwatch(st, end)
		}
	}
	slices.Sort(stalled)
	h.stalled.Store(&stalled)
}

// newClaimState returns the state of a claim of tp that starts at start, before its first fetch.
func newClaimState(tp topicPartition, track *offsets.Partition, start int64) *claimState {
	st := &claimState{tp: tp, track: track, start: start, marked: start, caughtUp: time.Now()}
	st.hwm = st.highWatermark.Load
	st.highWatermark.Store(-1)
	st.logEnd.Store(-1)
	st.quietFrom.Store(-1)
	st.behindAt = -1
	return st
}

// end is what the partition's backlog runs to: its log end as last listed, or the high
// watermark of its last fetch when that is further.
func (st *claimState) end() int64 { return max(st.logEnd.Load(), st.hwm()) }

// add makes st a claim of the handler, watched from its first round. h.mu is held.
func (h *Handler) add(st *claimState) {
	h.parts[st.tp] = st
	st.inWatch.Store(true)
	h.watched[st.tp] = st
	h.listing = claimedList{}
}

// wake puts st back in the watched set at the next round (or commit), unless it is there. Call
// it after storing what moved (see watch).
func (h *Handler) wake(st *claimState) {
	if st.inWatch.Load() || st.inWatch.Swap(true) {
		return
	}
	h.wakeMu.Lock()
	h.woken = append(h.woken, st)
	h.wakeMu.Unlock()
}

// takeWoken moves the woken claims into the watched set. A woken claim was idle at the last
// round: its clocks run from then, as they would had it been visited all along. h.mu is held.
func (h *Handler) takeWoken() {
	h.wakeMu.Lock()
	woken := h.woken
	h.woken = nil
	h.wakeMu.Unlock()
	for _, st := range woken {
		if h.parts[st.tp] != st {
			continue // forgotten meanwhile
		}
		if _, ok := h.watched[st.tp]; !ok && !h.lastRound.IsZero() {
			st.since, st.caughtUp = h.lastRound, h.lastRound
		}
		h.watched[st.tp] = st
	}
}

// unwatch lets an idle claim leave the watched set, unless its log end, high watermark or
// records in flight changed since the round looked (end): see watch. h.mu is held.
func (h *Handler) unwatch(st *claimState, end int64) {
	st.inWatch.Store(false)
	if st.end() != end || st.track.InFlight() != 0 {
		st.inWatch.Store(true)
		return
	}
	delete(h.watched, st.tp)
}

// backlog computes a partition's backlog from its mirrored position and the log end.
func (h *Handler) backlog(st *claimState, end, committed int64, inFlight int, now time.Time) Backlog {
	if committed < 0 || end < 0 {
		return Backlog{}
	}
	from := committed
	if inFlight == 0 && st.quietFrom.Load() == committed {
		from = max(committed, st.quiet.Load()) // only markers or aborted records before it (quiet.go)
	}
	var b Backlog
	b.Records = max(end-from, 0)
	if b.Records == 0 {
		st.caughtUp = now
		return b
	}
	if n := st.fetched.Load(); n > 0 {
		b.Bytes = b.Records * (st.fetchedBytes.Load() / n)
	}
	b.Age = now.Sub(st.caughtUp)
	if inFlight > 0 {
		if ts, ok := st.track.OldestTimestamp(); ok {
			b.Age = now.Sub(ts)
		}
	}
	b.Age = max(b.Age, 0)
	return b
}

// expire fails the partition when its records in flight have seen no acknowledgement for
// DeliveryTimeout.
func (h *Handler) expire(tp topicPartition, st *claimState, committed int64, inFlight int, now time.Time) {
	if h.cfg.DeliveryTimeout <= 0 || inFlight == 0 || now.Sub(st.since) < h.cfg.DeliveryTimeout || st.track.Stopped() {
		return
	}
	err := fmt.Errorf("no record of %s/%d acknowledged by the target for %s (producer.delivery_timeout) with %d in flight "+
		"from offset %d: the target is unreachable, frozen or refusing writes (see the errors before this one)",
		tp.topic, tp.partition, now.Sub(st.since).Round(time.Second), inFlight, committed)
	if f := st.track.Expire(err); f != nil {
		h.cfg.Fatal(fmt.Errorf("%s/%d stopped at offset %d: %w", tp.topic, tp.partition, f.Offset, f.Err))
	}
}

// listLogEnds lists the claimed partitions' log end offsets on the source, and wakes each whose
// log end moved. A failure leaves the last known values (and the fetches' high watermarks) in
// place.
func (h *Handler) listLogEnds(ctx context.Context) {
	if h.cfg.Source == nil || ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	if h.listing.states == nil {
		h.listing = listClaims(h.parts)
	}
	l := h.listing
	h.mu.Unlock()
	if len(l.claims) == 0 {
		return
	}
	ends, err := h.ends(l.claims)
	if err != nil {
		h.cfg.Log.Debug("list source log end offsets", zap.Error(err))
		return
	}
	for tp, end := range ends {
		if st, ok := l.states[tp]; ok && st.logEnd.Swap(end) != end {
			h.wake(st)
		}
	}
	watched := make(map[TopicPartition]*claimState)
	for tp, st := range l.states {
		if st.inWatch.Load() { // an unwatched partition has nothing left to mirror
			watched[tp] = st
		}
	}
	h.probeQuiet(ctx, watched)
}

// ends lists the end offsets of claims on the source.
func (h *Handler) ends(claims map[string][]int32) (map[TopicPartition]int64, error) {
	if le, ok := h.cfg.Source.(LogEnds); ok {
		return le.Ends(claims)
	}
	bounds, err := h.cfg.Source.Bounds(claims)
	if err != nil {
		return nil, err
	}
	out := make(map[TopicPartition]int64, len(bounds))
	for tp, b := range bounds {
		out[tp] = b.End
	}
	return out, nil
}

// claimedList is the claimed partitions as Cluster.Bounds takes them, with their states.
type claimedList struct {
	claims map[string][]int32
	states map[TopicPartition]*claimState
}

func listClaims(parts map[topicPartition]*claimState) claimedList {
	l := claimedList{claims: make(map[string][]int32), states: make(map[TopicPartition]*claimState, len(parts))}
	for tp, st := range parts {
		l.claims[tp.topic] = append(l.claims[tp.topic], tp.partition)
		l.states[TopicPartition{tp.topic, tp.partition}] = st
	}
	return l
}

// StalledErr returns the readiness verdict on stalled partitions, naming them with since when:
// nil when none is.
func (h *Handler) StalledErr() error {
	if p := h.stalled.Load(); p != nil && len(*p) > 0 {
		return fmt.Errorf("stalled partitions (records wait, none acknowledged by the target): %s", strings.Join(*p, ", "))
	}
	return nil
}
