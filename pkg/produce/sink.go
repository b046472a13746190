package produce

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// sink sends the batches of the partitions one broker leads, up to MaxInFlight requests at a
// time on the broker's one connection (sarama's Broker pipelines requests and reads their
// answers in order: claim 1 of the package doc).
type sink struct {
	p  *Pipeline
	id int32

	// Under p.mu:
	broker   *sarama.Broker
	parts    map[*partition]struct{} // the partitions it leads that hold a batch: all build looks at
	inflight int
	broken   bool // a request failed on the connection: close it once nothing is in flight

	wake chan struct{}
}

// maxRequestBytes stops adding batches to a request past this size (a request always carries
// at least one batch).
const maxRequestBytes = 8 << 20

// taken is a batch in a request, with the partition it belongs to.
type taken struct {
	part *partition
	b    *batch
}

func newSink(p *Pipeline, b *sarama.Broker) *sink {
	return &sink{p: p, id: b.ID(), broker: b, parts: make(map[*partition]struct{}), wake: make(chan struct{}, 1)}
}

func (s *sink) poke() { poke(s.wake) }

func (s *sink) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-s.p.ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
		for {
			req, took, broker, next := s.build(time.Now())
			if req == nil {
				if broker != nil { // broken, nothing in flight: reconnect through the leader lookup
					_ = broker.Close()
				}
				if next > 0 {
					timer.Reset(next)
				}
				break
			}
			for _, t := range took {
				s.p.enc.encode(t.b) // outside p.mu: t.b is closed, and in no other request
			}
			err := broker.AsyncProduce(req, func(res *sarama.ProduceResponse, err error) { s.answer(took, res, err) })
			if err != nil {
				s.answer(took, nil, err) // not written: sarama calls back only for a request it sent
			}
		}
	}
}

// build takes the next request: at most one batch of each ready partition, the one after those
// it already sent this round. It returns no request and, when the connection is broken and
// idle, the broker to close; next is when a lingering batch or a pause ends.
func (s *sink) build(now time.Time) (req *sarama.ProduceRequest, took []taken, broker *sarama.Broker, next time.Duration) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.broken {
		if s.inflight == 0 {
			s.broken = false
			return nil, nil, s.broker, 0
		}
		return nil, nil, nil, 0
	}
	if p.aborted || p.bumpWanted || s.inflight >= MaxInFlight {
		return nil, nil, nil, 0
	}
	soon := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	size := 0
	for part := range s.parts {
		p.stats.Visits++
		if part.sink != s || part.rewind || part.refresh || part.sent >= len(part.batches) ||
			part.inflight >= MaxInFlight || (part.alone && part.inflight > 0) || !p.inTxn(part) {
			continue
		}
		if now.Before(part.retryAt) {
			soon(part.retryAt.Sub(now))
			continue
		}
		if part.pid != p.pid || part.epoch != p.epoch {
			if part.inflight > 0 {
				continue
			}
			// A new epoch (claim 5): number the whole queue again from 0, in order, the first
			// batch alone (claim 2).
			part.pid, part.epoch, part.seq, part.sent, part.alone = p.pid, p.epoch, 0, 0, true
			for _, b := range part.batches {
				b.seqSet = false
			}
		}
		b := part.batches[part.sent]
		if !b.closed {
			if wait := p.cfg.Linger - now.Sub(b.created); wait > 0 && !p.closing && p.pressed == 0 {
				soon(wait)
				continue
			}
			b.closed = true
		}
		if size > 0 && size+b.bytes > maxRequestBytes {
			soon(time.Millisecond)
			continue
		}
		if !b.seqSet { // claim 2: sequences follow the queue
			b.rb.ProducerID, b.rb.ProducerEpoch, b.rb.FirstSequence = part.pid, part.epoch, part.seq
			b.rb.LastOffsetDelta = int32(len(b.recs) - 1)
			b.ptrs = b.ptrs[:0]
			for i := range b.recs {
				b.ptrs = append(b.ptrs, &b.recs[i])
			}
			b.rb.Records = b.ptrs
			part.seq += int32(len(b.recs))
			part.recent = max(len(b.recs), part.recent-part.recent/4)
			b.seqSet = true
		}
		if req == nil {
			req = &sarama.ProduceRequest{RequiredAcks: sarama.WaitForAll, Version: p.version,
				Timeout: int32(p.cfg.Net.Producer.Timeout / time.Millisecond)}
			if p.txn != nil { // the broker refuses transactional batches without their id
				req.TransactionalID = &p.txn.id
			}
		}
		req.AddBatch(part.topic, part.id, &b.rb)
		took = append(took, taken{part, b})
		part.sent++
		part.inflight++
		size += b.bytes
	}
	if req == nil {
		return nil, nil, nil, next
	}
	s.inflight++
	p.inflight++
	p.stats.PeakInFlight = max(p.stats.PeakInFlight, s.inflight)
	return req, took, s.broker, 0
}

// answer settles what a request's answer says of each batch it carried (claims 3 to 6).
func (s *sink) answer(took []taken, res *sarama.ProduceResponse, err error) {
	p := s.p
	p.mu.Lock()
	s.inflight--
	p.inflight--
	if err != nil {
		s.broken = true
	}
	now := time.Now()
	for _, t := range took {
		part := t.part
		part.inflight--
		s.judge(part, t.b, res, err)
		if part.inflight == 0 {
			s.settleRound(part, now)
		}
	}
	kick := p.bumpWanted || err != nil // read under p.mu: control writes it
	p.mu.Unlock()
	s.poke()
	if kick {
		poke(p.wakeCtl)
	}
}

// judge acts on the answer for b of part; p.mu held.
func (s *sink) judge(part *partition, b *batch, res *sarama.ProduceResponse, err error) {
	p := s.p
	if res != nil {
		if block := res.GetBlock(part.topic, part.id); block != nil && block.Err == sarama.ErrOutOfOrderSequenceNumber {
			p.stats.OutOfOrder++
		}
	}
	if len(part.batches) == 0 || part.batches[0] != b {
		// Claim 3: b was failed or aborted meanwhile, or a batch before it is unsettled (it
		// failed this round, so part rewinds): b is sent again after it.
		return
	}
	if err != nil {
		part.rewind, part.refresh = true, true
		part.lastErr = fmt.Errorf("produce to broker %d: %w", s.id, err)
		return
	}
	block := res.GetBlock(part.topic, part.id)
	if block == nil {
		part.rewind = true
		part.lastErr = fmt.Errorf("broker %d did not answer for %s/%d", s.id, part.topic, part.id)
		return
	}
	switch p.classify(block.Err) {
	case written:
		p.finish(part, block.Offset)
		part.alone, part.tries, part.lastErr = false, 0, nil
	case moved:
		part.rewind, part.refresh = true, true
		part.lastErr = fmt.Errorf("broker %d: %w", s.id, block.Err)
	case retry:
		part.rewind = true
		part.lastErr = fmt.Errorf("broker %d: %w", s.id, block.Err)
	case sequence:
		// Claim 5: b is the first unsettled batch, so nothing before it explains the error.
		part.rewind = true
		part.lastErr = fmt.Errorf("broker %d: %w", s.id, block.Err)
		if !p.bumpWanted {
			p.cfg.Log.Warn("the target lost the producer's sequence; bumping the epoch once nothing is in flight",
				zap.String("topic", part.topic), zap.Int32("partition", part.id),
				zap.Int64("producer_id", part.pid), zap.Int16("epoch", part.epoch), zap.Error(block.Err))
		}
		p.bumpWanted = true
	default:
		// Claim 6: the rest of the queue cannot be written after b; the next batch of the
		// partition starts again at b's sequence, once nothing of it is in flight.
		part.seq = b.rb.FirstSequence
		var kerr error = block.Err
		if block.ErrorMessage != nil && *block.ErrorMessage != "" {
			kerr = fmt.Errorf("%w (%s)", block.Err, *block.ErrorMessage)
		}
		p.failQueue(part, 0, kerr)
		part.rewind = true
	}
}

// settleRound runs once nothing of part is in flight: a rewinding partition starts its queue
// again after a pause, and one whose leader is in doubt leaves this sink to be looked up again
// (claim 4); p.mu held.
func (s *sink) settleRound(part *partition, now time.Time) {
	if !part.rewind {
		return
	}
	part.rewind = false
	part.sent = 0
	if part.refresh {
		// Looked up again before it sends anything more, even if its queue is empty now.
		delete(s.parts, part)
		part.sink = nil
	}
	if len(part.batches) == 0 {
		return // failed or aborted: nothing to resend
	}
	part.alone = true
	s.p.stats.Resends++
	part.retryAt = now.Add(RetryPause(s.p.cfg.RetryBackoff, part.tries))
	part.tries++
	// A leader move resends every partition it led once: not worth a line each. A partition
	// still resending after 20 rounds (tens of seconds) is.
	if part.tries%20 == 0 {
		s.p.cfg.Log.Warn("still resending a partition's unacknowledged batches in order",
			zap.String("topic", part.topic), zap.Int32("partition", part.id),
			zap.Int("batches", len(part.batches)), zap.Int("attempt", part.tries), zap.Error(part.lastErr))
	}
}
