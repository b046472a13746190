package fetch

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// loop fetches, from one broker, the partitions routed to it: one request in flight at a time,
// on a connection of its own.
type loop struct {
	f     *Fetcher
	id    int32
	wake  chan struct{}                 // capacity 1: something changed, build a request again
	parts map[TopicPartition]*partState // guarded by f.mu
	sess  session                       // owned by the loop's goroutine
	// failing is set from a failed or refused fetch to the next good answer: the first failure
	// is logged as a warning, the retries (every Backoff while metadata still names a dead
	// broker) are not.
	failing bool
	// behind are the partitions of the request being answered that held records past their
	// position and may still raise their limit (raiseWithheld); owned by the loop's goroutine.
	behind []*partState
	// conn is the loop's own connection, owned by its goroutine. sarama's Broker holds its lock
	// for a whole request and answer, so a fetch the broker holds for MaxWait on a shared
	// connection would hold every other request to that broker as long.
	conn *sarama.Broker
	// grewAt is when a request last added partitions to the session (or left some for a later
	// step): a request waits at most as long as the session has gone without growing
	// (session.go); owned by the loop's goroutine.
	grewAt time.Time
}

func (l *loop) wakeUp() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *loop) run() {
	defer l.closeConn()
	l.sess.sent = make(map[TopicPartition]sentPart)
	sessions := l.f.version >= 7
	canForget := sessions && setForgotten(&sarama.FetchRequest{Version: l.f.version}, nil)
	for l.f.ctx.Err() == nil {
		req, want, p, wait := l.build(sessions, canForget)
		if req == nil {
			l.idle(wait)
			continue
		}
		resp, err := l.fetch(req)
		if l.f.ctx.Err() != nil {
			return
		}
		if err != nil {
			l.f.stats.brokerErrors.Add(1)
			if ev := l.f.cfg.Events.Unanswered; ev != nil {
				ev()
			}
			l.failed(err)
			continue
		}
		if resp.ErrorCode != 0 {
			l.f.stats.sessionErrors.Add(1)
			if ev := l.f.cfg.Events.Refused; ev != nil {
				ev()
			}
			l.sessionError(sarama.KError(resp.ErrorCode))
			continue
		}
		l.f.stats.fetches.Add(1)
		if p.full {
			l.f.stats.fullFetches.Add(1)
		}
		l.f.stats.named.Add(int64(len(p.named)))
		l.f.stats.forgotten.Add(int64(len(p.forgotten)))
		if ev := l.f.cfg.Events.Answered; ev != nil {
			ev(p.full, len(p.named), len(p.forgotten))
		}
		if l.failing {
			l.failing = false
			l.f.log.Info("fetch: broker answers again", zap.Int32("broker", l.id))
		}
		l.sess.answered(p, want, resp.SessionID, sessions)
		for topic, blocks := range resp.Blocks {
			for part, block := range blocks {
				tp := TopicPartition{topic, part}
				if w, ok := want[tp]; ok {
					l.answer(tp, block, w)
				}
			}
		}
		l.unanswered(want, resp)
	}
}

// unanswered raises the limit of each partition of the request the answer left out while it
// holds records past its position (raiseWithheld). It looks only at the partitions build found
// behind with a limit that may still rise (l.behind), not at every partition of the request:
// at 10,000 partitions that was 0.6 ms per answer, idle ones included.
func (l *loop) unanswered(want map[TopicPartition]sentPart, resp *sarama.FetchResponse) {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range l.behind {
		if resp.GetBlock(p.tp.Topic, p.tp.Partition) != nil {
			continue // answered: deliver judged it
		}
		if l.parts[p.tp] == p && p.loop == l && !p.paused {
			raiseWithheld(p, want[p.tp].offset, f.cfg.KeepMaxBytes)
		}
	}
}

// build makes the next request, or returns nil (and how long until a partition waiting out a
// backoff may be fetched, 0 for none) when there is nothing to fetch.
func (l *loop) build(sessions, canForget bool) (req *sarama.FetchRequest, want map[TopicPartition]sentPart, p plan, wait time.Duration) {
	f := l.f
	now := time.Now()
	want = make(map[TopicPartition]sentPart, len(l.sess.sent))
	maxBytes := f.cfg.MaxBytes
	clear(l.behind)
	l.behind = l.behind[:0]
	f.mu.Lock()
	waited := false
	for tp, p := range l.parts {
		if p.replica == l.id && !now.Before(p.replicaTill) {
			p.replica = -1 // the preferred replica's time is up: ask the leader again
			f.unroute(p, false, 0)
			continue
		}
		if !p.fetchable(now) {
			if d := p.retryAt.Sub(now); d > 0 && (wait == 0 || d < wait) {
				wait = d
			}
			continue
		}
		if len(f.held) > 0 && f.holding(p.group) { // no lookup while nothing is held
			// Its group's sinks hold back Config.MaxHeldBytes: not fetched until a Ready or
			// Remove brings them under it (release wakes the loop).
			waited = true
			continue
		}
		want[tp] = sentPart{offset: p.offset, epoch: p.leaderEpoch, maxBytes: p.maxBytes}
		maxBytes = max(maxBytes, p.maxBytes)
		if p.end > p.offset && p.maxBytes < f.cfg.KeepMaxBytes {
			l.behind = append(l.behind, p)
		}
	}
	f.mu.Unlock()
	if waited {
		f.stats.heldWaits.Add(1)
	}
	if len(want) == 0 {
		// Nothing to fetch here now: the session (if any) still holds what it held; the next
		// request forgets what left it, or opens a new one.
		return nil, nil, plan{}, wait
	}
	p = l.sess.plan(want, sessions, canForget)
	if p.growing {
		l.grewAt = now
	}
	// More partitions may be on their way: wait no longer than the session has gone without
	// growing, so the waits lengthen back to MaxWait only while it stays as it is (session.go).
	maxWait := min(f.cfg.MaxWait, now.Sub(l.grewAt))
	req = &sarama.FetchRequest{
		Version:     f.version,
		MaxWaitTime: int32(maxWait / time.Millisecond),
		MinBytes:    f.cfg.MinBytes,
		MaxBytes:    maxBytes,
		RackID:      f.cfg.Rack,
	}
	if f.cfg.ReadCommitted {
		req.Isolation = sarama.ReadCommitted
	}
	if sessions {
		req.SessionID, req.SessionEpoch = l.sess.id, l.sess.epoch
	}
	for _, tp := range p.named {
		w := want[tp]
		req.AddBlock(tp.Topic, tp.Partition, w.offset, w.maxBytes, w.epoch)
	}
	if len(p.forgotten) > 0 {
		// plan forgets only when canForget, which the same check on the same version said.
		_ = setForgotten(req, p.forgotten)
	}
	return req, want, p, 0
}

// idle waits for a change (a partition added, resumed, ready) or the end of a backoff.
func (l *loop) idle(wait time.Duration) {
	var tc <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-l.f.ctx.Done():
	case <-l.wake:
	case <-tc:
	}
}

func (l *loop) fetch(req *sarama.FetchRequest) (*sarama.FetchResponse, error) {
	if l.conn == nil {
		b, err := l.f.cfg.Client.Broker(l.id)
		if err != nil {
			return nil, fmt.Errorf("find broker %d: %w", l.id, err)
		}
		conn := sarama.NewBroker(b.Addr())
		if err := conn.Open(l.f.cfg.Client.Config()); err != nil && !errors.Is(err, sarama.ErrAlreadyConnected) {
			return nil, fmt.Errorf("connect to broker %d (%s): %w", l.id, b.Addr(), err)
		}
		l.conn = conn
	}
	resp, err := l.conn.Fetch(req)
	if err != nil {
		return nil, fmt.Errorf("fetch from broker %d: %w", l.id, err)
	}
	return resp, nil
}

func (l *loop) closeConn() {
	if l.conn != nil {
		_ = l.conn.Close()
		l.conn = nil
	}
}

// failed handles a fetch that got no answer (connection refused or lost, timeout, undecodable
// response): the connection and session are dropped, and every partition goes back to the
// router, which refreshes metadata (the broker may be gone and its partitions led elsewhere).
// Their positions are untouched, so the new loop starts where this one stopped.
func (l *loop) failed(err error) {
	l.closeConn()
	l.sess.reset()
	f := l.f
	f.mu.Lock()
	n := len(l.parts)
	for _, p := range l.parts {
		p.replica = -1 // a preferred replica that fails is given up for the leader (KIP-392)
		f.unroute(p, true, p.backoff(f.cfg.Backoff))
	}
	f.mu.Unlock()
	log := f.log.Warn
	if l.failing {
		log = f.log.Debug
	}
	l.failing = true
	log("fetch: broker did not answer; its partitions look for their leader again",
		zap.Int32("broker", l.id), zap.Int("partitions", n), zap.Error(err))
}

// sessionError handles an error for the whole request. FETCH_SESSION_ID_NOT_FOUND (the broker
// evicted or lost the session, e.g. after a restart) and INVALID_FETCH_SESSION_EPOCH (a request
// of the session was lost) are answered by a new session at once: the positions the loop holds
// are its own, so a full fetch from them loses and repeats nothing.
func (l *loop) sessionError(kerr sarama.KError) {
	l.sess.reset()
	if errors.Is(kerr, sarama.ErrFetchSessionIDNotFound) || errors.Is(kerr, sarama.ErrInvalidFetchSessionEpoch) {
		l.f.log.Debug("fetch: session lost; opening a new one", zap.Int32("broker", l.id), zap.Error(kerr))
		return
	}
	log := l.f.log.Warn
	if l.failing {
		log = l.f.log.Debug
	}
	l.failing = true
	log("fetch: broker refused the fetch; retrying with a new session", zap.Int32("broker", l.id), zap.Error(kerr))
	sleep(l.f.ctx, l.f.cfg.Backoff)
}

// answer handles one partition of a response; w is what the broker's session held for it.
func (l *loop) answer(tp TopicPartition, block *sarama.FetchResponseBlock, w sentPart) {
	f := l.f
	f.mu.Lock()
	p := l.parts[tp]
	f.mu.Unlock()
	if p == nil {
		return // moved, removed or stopped since the request was built
	}
	switch {
	case errors.Is(block.Err, sarama.ErrNoError):
		l.deliver(p, block, w)
	case errors.Is(block.Err, sarama.ErrOffsetOutOfRange):
		f.mu.Lock()
		onReplica := p.replica == l.id
		if onReplica {
			// A follower may not have the offset yet (or any more): KIP-392 says ask the leader,
			// whose answer is the one that counts.
			p.replica = -1
			f.unroute(p, false, 0)
		}
		f.mu.Unlock()
		if !onReplica {
			l.stop(p, w.offset, l.outOfRange(tp, w.offset, block))
		}
	case retriable(block.Err):
		f.mu.Lock()
		if p.loop == l {
			p.replica = -1
			f.unroute(p, true, p.backoff(f.cfg.Backoff))
		}
		f.mu.Unlock()
		// Debug: a leader move is routine, and with many partitions one election would
		// otherwise log a line per partition.
		f.log.Debug("fetch: partition moves (leader change or broker error)", zap.String("topic", tp.Topic),
			zap.Int32("partition", tp.Partition), zap.Int32("broker", l.id), zap.Error(block.Err))
	default:
		l.stop(p, w.offset, fmt.Errorf("fetch %s partition %d at offset %d from broker %d: %w",
			tp.Topic, tp.Partition, w.offset, l.id, block.Err))
	}
}

// retriable errors mean that the partition is (or will be) fetched elsewhere or later: the
// leader moved, the broker's metadata or ours is behind, or the replica is not ready.
func retriable(err error) bool {
	for _, e := range []sarama.KError{
		sarama.ErrNotLeaderForPartition, sarama.ErrUnknownTopicOrPartition, sarama.ErrLeaderNotAvailable,
		sarama.ErrReplicaNotAvailable, sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch,
		sarama.ErrKafkaStorageError, sarama.ErrOffsetNotAvailable, sarama.ErrNotEnoughReplicas,
		sarama.ErrRequestTimedOut, sarama.ErrNetworkException, sarama.ErrBrokerNotAvailable,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// outOfRange builds the error for an out-of-range offset; a broker leaves the log's bounds at -1
// in an error answer, so they are asked for (the owner's policy needs them).
func (l *loop) outOfRange(tp TopicPartition, offset int64, block *sarama.FetchResponseBlock) *OutOfRangeError {
	e := &OutOfRangeError{Topic: tp.Topic, Partition: tp.Partition, Offset: offset,
		LogStart: block.LogStartOffset, LogEnd: block.HighWaterMarkOffset}
	c := l.f.cfg.Client
	if e.LogStart < 0 {
		if o, err := c.GetOffset(tp.Topic, tp.Partition, sarama.OffsetOldest); err == nil {
			e.LogStart = o
		} else {
			e.LogStart = -1
		}
	}
	if e.LogEnd < 0 {
		if o, err := c.GetOffset(tp.Topic, tp.Partition, sarama.OffsetNewest); err == nil {
			e.LogEnd = o
		} else {
			e.LogEnd = -1
		}
	}
	return e
}

// stop removes p (if it is still the partition fetched at offset) and tells its sink why.
func (l *loop) stop(p *partState, offset int64, err error) {
	f := l.f
	p.dmu.Lock()
	defer p.dmu.Unlock()
	f.mu.Lock()
	current := f.parts[p.tp] == p && p.loop == l && p.offset == offset
	if current {
		f.drop(p)
	}
	f.mu.Unlock()
	if !current {
		return
	}
	f.log.Error("fetch: partition stopped", zap.String("topic", p.tp.Topic), zap.Int32("partition", p.tp.Partition), zap.Error(err))
	p.sink.Stopped(err)
}

// keptLimit is a partition's limit once a batch arrived under limit: a limit raised for a large
// batch stays raised, up to keep, and is at least base.
//
// A broker returns a batch larger than a partition's limit only when that partition is the
// first with data in the response (KIP-74); any other gets nothing of it (raiseWithheld). A
// limit reset after each large batch arrived is therefore withheld again on every later one:
// with producers' 1 MiB batches and a 256 KiB limit, each response of a catch-up carried one
// partition's batch, about a thousand fetches per GB, and the source broker spent 2.4 to 3.6
// CPU-seconds per GB copied against 1.0 to 1.4 with the limit kept (0.7 to 1.3 for the bare
// franz-go mirror, whose limit is 1 MiB).
func keptLimit(limit, base, keep int32) int32 {
	return max(base, min(limit, keep))
}

// end is where a partition's fetchable records end by its answer: its last stable offset under
// read_committed, its high watermark otherwise.
func end(block *sarama.FetchResponseBlock, readCommitted bool) int64 {
	if readCommitted && block.LastStableOffset >= 0 {
		return block.LastStableOffset
	}
	return block.HighWaterMarkOffset
}

// raiseWithheld raises the limit of p, fetched at from, when the broker returned nothing of it
// though records are there (p.end past from, with the position unchanged): its next batch is
// larger than its limit and p was not the first partition with data in the response
// (keptLimit). An incremental fetch session (KIP-227) leaves such a partition out of the answer
// altogether when nothing else of it changed. The limit doubles up to what p may keep: a
// batch larger than that still arrives when p comes first in a response. f.mu held.
func raiseWithheld(p *partState, from int64, keep int32) {
	if p.offset == from && p.end > from {
		p.maxBytes = max(p.maxBytes, min(p.maxBytes*2, keep))
	}
}

// deliver hands the records of one answer to the partition's sink and moves its position.
//
// Why this cannot lose, repeat or reorder: under p.dmu (which Remove and Pause also take), the
// answer is used only if the partition is still this loop's, not paused or removed, and its
// position is still w.offset, the offset the broker fetched from. The position then moves to
// next only after Deliver returned, in the same critical section, so the next request (here or
// in the loop the partition moves to) starts exactly after the last record delivered. An answer
// that fails the check is dropped whole: nothing of it was delivered, and the position it would
// have moved is where the next fetch starts.
func (l *loop) deliver(p *partState, block *sarama.FetchResponseBlock, w sentPart) {
	f := l.f
	p.dmu.Lock()
	defer p.dmu.Unlock()
	f.mu.Lock()
	ok := f.parts[p.tp] == p && p.loop == l && !p.paused && p.offset == w.offset
	f.mu.Unlock()
	if !ok {
		return
	}
	b, next, partial := decode(block, w.offset, f.cfg.ReadCommitted)
	var full bool
	if next > w.offset {
		b.Topic, b.Partition, b.Next = p.tp.Topic, p.tp.Partition, next
		r0 := p.ready.Load()
		f.stats.batches.Add(1)
		f.stats.records.Add(int64(len(b.Records)))
		f.stats.bytes.Add(int64(b.Bytes))
		full = p.sink.Deliver(b)
		f.mu.Lock()
		p.offset = next
		p.end = end(block, f.cfg.ReadCommitted)
		p.failures = 0
		p.maxBytes = keptLimit(p.maxBytes, f.cfg.PartitionMaxBytes, f.cfg.KeepMaxBytes)
		if full {
			p.full, p.fullAt = true, r0
			// Held until the sink says Ready: unless it already has (Ready counts under f.mu,
			// so it either came before this check or will find the bytes counted).
			if p.ready.Load() == r0 {
				f.hold(p, int64(b.Bytes))
			}
		}
		f.mu.Unlock()
	} else if partial {
		// The next batch is larger than the partition's limit and nothing before it fitted:
		// raise the limit for this partition until it arrives (then keptLimit decides what
		// stays), so that a large record makes progress instead of being asked for forever.
		f.mu.Lock()
		p.maxBytes = int32(min(int64(p.maxBytes)*2, math.MaxInt32))
		f.mu.Unlock()
	} else {
		f.mu.Lock()
		p.end = end(block, f.cfg.ReadCommitted)
		raiseWithheld(p, w.offset, f.cfg.KeepMaxBytes)
		f.mu.Unlock()
	}
	if r := block.PreferredReadReplica; f.cfg.Rack != "" && r >= 0 && r != l.id {
		f.mu.Lock()
		if p.loop == l {
			p.replica, p.replicaTill = r, time.Now().Add(f.cfg.ReplicaTTL)
			f.unroute(p, false, 0)
		}
		f.mu.Unlock()
	}
}
