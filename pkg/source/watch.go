package source

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
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

// watch runs once a second while a session lasts. For every claimed partition it keeps
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
func (h *Handler) watch(ctx context.Context, now time.Time) {
	if now.Sub(h.listed) >= listEvery {
		h.listed = now
		h.listLogEnds(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var stalled []string
	for tp, st := range h.parts {
		committed, inFlight := st.track.Committed(), st.track.InFlight()
		b := h.backlog(st, committed, inFlight, now)
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
	}
	slices.Sort(stalled)
	h.stalled.Store(&stalled)
}

// backlog computes a partition's backlog from its mirrored position and the log end.
func (h *Handler) backlog(st *claimState, committed int64, inFlight int, now time.Time) Backlog {
	end := max(st.logEnd.Load(), st.hwm())
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

// listLogEnds lists the claimed partitions' log end offsets on the source. A failure leaves the
// last known values (and the fetches' high watermarks) in place.
func (h *Handler) listLogEnds(ctx context.Context) {
	if h.cfg.Source == nil || ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	claims := make(map[string][]int32)
	states := make(map[TopicPartition]*claimState, len(h.parts))
	for tp, st := range h.parts {
		claims[tp.topic] = append(claims[tp.topic], tp.partition)
		states[TopicPartition{tp.topic, tp.partition}] = st
	}
	h.mu.Unlock()
	if len(claims) == 0 {
		return
	}
	bounds, err := h.cfg.Source.Bounds(claims)
	if err != nil {
		h.cfg.Log.Debug("list source log end offsets", zap.Error(err))
		return
	}
	for tp, b := range bounds {
		if st, ok := states[tp]; ok {
			st.logEnd.Store(b.End)
		}
	}
	h.probeQuiet(ctx, states)
}

// StalledErr returns the readiness verdict on stalled partitions, naming them with since when:
// nil when none is.
func (h *Handler) StalledErr() error {
	if p := h.stalled.Load(); p != nil && len(*p) > 0 {
		return fmt.Errorf("stalled partitions (records wait, none acknowledged by the target): %s", strings.Join(*p, ", "))
	}
	return nil
}
