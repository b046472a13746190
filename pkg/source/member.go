package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/group"
	"github.com/kmirror/kmirror/pkg/offsets"
)

// The handler is driven by the member's callbacks (pkg/group): Assigned starts claims, Revoked
// drains and commits them, Lost drops them. Partitions the member keeps across a rebalance are
// never touched: their claims go on feeding the workers while the group rebalances.

var _ group.Handler = (*Handler)(nil)

// Start begins the member's life: it takes the committer and starts the periodic commit and the
// watcher. Call it before the member runs, and Stop after it has returned.
func (h *Handler) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.committer = h.cfg.NewCommitter(h.metadata)
	h.unsent = false
	h.joined = true
	h.mu.Unlock()
	done := h.background(ctx)
	h.startPushers()
	h.mu.Lock()
	h.stopCommit, h.commitDone = cancel, done
	h.mu.Unlock()
}

// Stop ends what Start began, once the member has revoked everything, and commits one last time.
func (h *Handler) Stop() {
	h.mu.Lock()
	stop, done := h.stopCommit, h.commitDone
	h.joined = false
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	h.stopPushing()
	h.commitFinal()
}

// stopPushing stops the pushers and waits for them.
func (h *Handler) stopPushing() {
	h.pushMu.Lock()
	defer h.pushMu.Unlock()
	if h.pushers != nil {
		h.stopPushers()
		h.pushWG.Wait()
		h.pushers = nil
	}
}

// Assigned implements group.Handler: it makes sure the added partitions exist on the target,
// decides where each starts (start.go), and starts their claims. A decision that fails for a
// reason that may pass (the source unreachable, a topic re-created meanwhile) is tried again
// every second while the member runs; one that finds records lost under the fail policy has
// stopped the mirror.
func (h *Handler) Assigned(ctx context.Context, gen group.Generation, added group.Partitions) {
	h.assignMu.Lock()
	defer h.assignMu.Unlock()
	h.assigning.Store(true)
	defer h.assigning.Store(false)
	h.cfg.Log.Info("assigned source partitions", zap.String("member", gen.MemberID), zap.Int32("generation", gen.ID),
		zap.String("protocol", gen.Protocol), zap.Int("added", added.Len()))
	claims := map[string][]int32(added)
	for {
		starts, err := h.prepare(ctx, claims)
		if err == nil {
			h.startClaims(ctx, starts)
			return
		}
		if ctx.Err() != nil || h.cfg.Source == nil {
			return
		}
		if lerr := (*LossError)(nil); errors.As(err, &lerr) {
			return // Fatal was called
		}
		h.cfg.Log.Warn("cannot start the assigned partitions yet; trying again", zap.Error(err))
		h.cfg.Observer.GroupError(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Synced implements group.Syncer: one line and one SessionStarted per generation the member is in,
// whether or not its partitions changed.
func (h *Handler) Synced(_ context.Context, gen group.Generation, owned group.Partitions) {
	h.cfg.Observer.SessionStarted()
	h.cfg.Log.Info("joined the source consumer group", zap.String("member", gen.MemberID), zap.Int32("generation", gen.ID),
		zap.String("protocol", gen.Protocol), zap.Int("partitions", owned.Len()))
}

// prepare makes sure claims exist on the target and decides where each starts.
func (h *Handler) prepare(ctx context.Context, claims map[string][]int32) (map[TopicPartition]int64, error) {
	for topic, parts := range claims {
		highest := slices.Max(parts)
		if _, err := h.cfg.Topics.EnsurePartitions(ctx, topic, highest+1); err != nil {
			return nil, fmt.Errorf("prepare target for %s partition %d: %w", topic, highest, err)
		}
	}
	return h.position(ctx, claims)
}

// startClaims starts one claim per partition of starts, in topic and partition order.
func (h *Handler) startClaims(ctx context.Context, starts map[TopicPartition]int64) {
	tps := make([]TopicPartition, 0, len(starts))
	for tp := range starts {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	for _, tp := range tps {
		if err := h.startClaim(ctx, tp.Topic, tp.Partition, starts[tp]); err != nil {
			if ctx.Err() == nil {
				h.cfg.Fatal(err) // a partition that cannot be fetched would sit unmirrored
			}
			return
		}
	}
}

// startClaim starts one claim at offset start and has the fetcher fetch it.
func (h *Handler) startClaim(ctx context.Context, topic string, part int32, start int64) error {
	t, err := h.cfg.Topics.EnsurePartitions(ctx, topic, part+1)
	if err != nil {
		return fmt.Errorf("claim %s/%d: %w", topic, part, err)
	}
	worker := h.cfg.Route(topic, part)
	if h.cfg.Prepare != nil {
		if err := h.cfg.Prepare(ctx, worker, t.Target, part); err != nil {
			return fmt.Errorf("claim %s/%d: %w", topic, part, err)
		}
	}
	track := offsets.NewPartition(topic, part, start, h.cfg.InFlight)
	tp := topicPartition{topic, part}
	st := newClaimState(tp, track, start)
	p := h.startPushers()[worker]
	track.OnRoom(p.poke)
	c := &claim{
		h: h, tp: tp, st: st, accept: &t, inbox: h.cfg.Inboxes[worker], pusher: p, worker: worker,
	}
	h.cfg.Observer.Assigned(topic, part)
	if h.cfg.Copies != nil {
		c.copies, c.copiesDone = h.cfg.Copies(topic, part, h.topicID(topic), start, track)
	}
	h.mu.Lock()
	h.add(st)
	h.claims[tp] = c
	h.mu.Unlock()
	h.cfg.Log.Debug("claimed partition", zap.String("topic", topic), zap.Int32("partition", part),
		zap.Int64("initial_offset", start), zap.String("target_topic", t.Target))
	if err := h.cfg.Fetcher.Add(topic, part, start, c); err != nil {
		return fmt.Errorf("fetch %s/%d from offset %d: %w", topic, part, start, err)
	}
	return nil
}

// Revoked implements group.Handler: the revoked partitions stop being fetched, drain (drain),
// and are committed under the generation; the other claims go on.
func (h *Handler) Revoked(ctx context.Context, gen group.Generation, revoked group.Partitions) {
	h.assignMu.Lock()
	defer h.assignMu.Unlock()
	cs := h.claimsOf(revoked)
	h.stopFeeding(cs)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { h.drain(c.st.track, c.log()) })
	}
	wg.Wait()
	select {
	case <-h.cfg.Stopping:
		if h.GivenUp() > 0 && h.cfg.AbortWrites != nil {
			h.cfg.AbortWrites() // before the member leaves the group (see drain)
		}
	default:
	}
	h.finish(cs)
	if err := h.commit(context.WithoutCancel(ctx)); err != nil {
		h.cfg.Log.Error("commit of revoked partitions failed; records mirrored since the last commit will be mirrored again",
			append(commitFields(err), zap.Error(err))...)
	}
	h.forget(cs)
	h.cfg.Log.Info("revoked source partitions", zap.Int32("generation", gen.ID), zap.Int("partitions", len(cs)))
	if h.cfg.Released != nil {
		h.cfg.Released(map[string][]int32(revoked))
	}
}

// Lost implements group.Handler: the partitions belong to another member already; their claims
// stop at once, what waits in the inboxes is fenced, and nothing is committed for them.
func (h *Handler) Lost(_ context.Context, lost group.Partitions) {
	h.assignMu.Lock()
	defer h.assignMu.Unlock()
	cs := h.claimsOf(lost)
	h.stopFeeding(cs)
	for _, c := range cs {
		c.st.track.Fence()
	}
	h.forget(cs)
	h.finish(cs)
	h.cfg.Log.Warn("source partitions lost; their records not yet acknowledged are mirrored again by their new owner",
		zap.Int("partitions", len(cs)))
	if h.cfg.Released != nil {
		h.cfg.Released(map[string][]int32(lost))
	}
}

// restart drains claims, commits them, decides again where they start and starts them there:
// the fetcher found an offset out of range, or their topic was re-created. A claim revoked or
// lost meanwhile is left alone.
func (h *Handler) restart(cs []*claim, why string) {
	h.assignMu.Lock()
	defer h.assignMu.Unlock()
	h.mu.Lock()
	cs = slices.DeleteFunc(slices.Clone(cs), func(c *claim) bool { return h.claims[c.tp] != c })
	h.mu.Unlock()
	if len(cs) == 0 {
		return
	}
	h.stopFeeding(cs)
	claims := make(map[string][]int32)
	var wg sync.WaitGroup
	for _, c := range cs {
		claims[c.tp.topic] = append(claims[c.tp.topic], c.tp.partition)
		wg.Go(func() { h.drain(c.st.track, c.log()) })
	}
	wg.Wait()
	h.finish(cs)
	if err := h.commit(context.Background()); err != nil {
		h.cfg.Log.Warn("commit before deciding again where partitions resume failed", zap.Error(err))
	}
	h.forget(cs)
	ctx := context.Background()
	for {
		select {
		case <-h.cfg.Stopping:
			return
		default:
		}
		starts, err := h.prepare(ctx, claims)
		if err == nil {
			h.cfg.Log.Info("partitions resume", zap.String("why", why), zap.Any("partitions", claims))
			h.startClaims(ctx, starts)
			return
		}
		if lerr := (*LossError)(nil); errors.As(err, &lerr) {
			return // Fatal was called
		}
		h.cfg.Log.Warn("cannot decide where partitions resume yet; trying again", zap.Error(err))
		time.Sleep(time.Second)
	}
}

// RestartTopic restarts every claim of topic: it was deleted and created again.
func (h *Handler) RestartTopic(topic string) {
	h.mu.Lock()
	var cs []*claim
	for tp, c := range h.claims {
		if tp.topic == topic {
			cs = append(cs, c)
		}
	}
	h.mu.Unlock()
	if len(cs) > 0 {
		go h.restart(cs, "topic re-created")
	}
}

// claimsOf returns the claims of ps that exist.
func (h *Handler) claimsOf(ps group.Partitions) []*claim {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cs []*claim
	for topic, parts := range ps {
		for _, p := range parts {
			if c := h.claims[topicPartition{topic, p}]; c != nil {
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// stopFeeding stops fetching the claims and handing their records on: when it returns, no record
// of theirs is handed on any more.
func (h *Handler) stopFeeding(cs []*claim) {
	for _, c := range cs {
		h.cfg.Fetcher.Remove(c.tp.topic, c.tp.partition) // waits for a delivery under way
	}
	for _, c := range cs {
		c.stop()
	}
}

// startPushers starts the workers' pushers (pusher.go) unless they run, and returns them. They
// run until Stop.
func (h *Handler) startPushers() []*pusher {
	h.pushMu.Lock()
	defer h.pushMu.Unlock()
	if h.pushers != nil {
		return h.pushers
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := func(c *claim) { h.cfg.Fetcher.Ready(c.tp.topic, c.tp.partition) }
	for _, inbox := range h.cfg.Inboxes {
		p := newPusher(inbox, ready)
		h.pushers = append(h.pushers, p)
		h.pushWG.Go(func() { p.run(ctx) })
	}
	h.stopPushers = cancel
	return h.pushers
}

// finish tells the claims' observers they ended (after their drain: every acknowledgement has
// been recorded), all at once: each may wait for the target (the offset map's last write).
func (h *Handler) finish(cs []*claim) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if c.copiesDone != nil {
				c.copiesDone()
			}
			h.cfg.Observer.Revoked(c.tp.topic, c.tp.partition)
		})
	}
	wg.Wait()
}

// forget drops the claims from the handler's state (their positions are no longer committed).
func (h *Handler) forget(cs []*claim) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cs {
		if h.claims[c.tp] == c {
			delete(h.claims, c.tp)
			delete(h.parts, c.tp)
			delete(h.watched, c.tp)
			h.listing = claimedList{}
		}
	}
}
