package produce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Done is told the fate of every produced message, in the order the pipeline settled them
// (which keeps each partition's order). On success, err is nil and each message's Offset is its
// target offset (-1 when an old broker answered DUPLICATE_SEQUENCE_NUMBER without one). It runs
// on the pipeline's delivery goroutine and may block: the pipeline then holds its outcomes.
type Done func(msgs []*sarama.ProducerMessage, err error)

// Pipeline is one idempotent producer on the target: one producer id, a sink (up to MaxInFlight
// requests) per broker that leads one of its partitions, and a queue of batches per partition.
type Pipeline struct {
	cfg     Config
	client  sarama.Client
	done    Done
	version int16

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the control loop, the delivery loop and the sinks

	mu         sync.Mutex
	room       *sync.Cond // signalled when buffered shrinks or the pipeline aborts
	parts      map[topicPartition]*partition
	sinks      map[int32]*sink
	pid        int64
	epoch      int16
	bumpWanted bool // a partition's first batch met a sequence error: bump once nothing is in flight
	inflight   int  // requests in flight, all sinks
	buffered   int  // bytes of records held
	aborted    bool
	closing    bool
	stats      Stats
	settled    []settledBatch // outcomes waiting for the delivery loop
	wakeCtl    chan struct{}
	wakeOut    chan struct{}
	outDone    chan struct{} // closed when the delivery loop returned (after Close drained)
	txn        *txnState     // nil unless transactional (txn.go)
}

// Stats counts what the pipeline went through (for tests and metrics).
type Stats struct {
	PeakInFlight int // most requests in flight at once to one broker
	Resends      int // rounds in which a partition sent its queue again
	OutOfOrder   int // OUT_OF_ORDER_SEQUENCE_NUMBER answers (behind a failed batch, or not)
	EpochBumps   int // producer ids taken after the first
}

// Stats returns what the pipeline went through so far.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

type topicPartition struct {
	topic string
	id    int32
}

type settledBatch struct {
	msgs []*sarama.ProducerMessage
	base int64
	err  error
}

// partition is one target partition's queue of batches (package doc, claims 1 to 7).
type partition struct {
	topicPartition
	batches  []*batch // unsettled, in production order
	sent     int      // batches[:sent] were handed to a request this round
	inflight int      // requests in flight carrying one of its batches
	sink     *sink    // nil until its leader is known, and while it is looked up again
	pid      int64    // the producer id and epoch its sequences run under
	epoch    int16
	seq      int32 // the next batch's first sequence
	rewind   bool  // resend from batches[0] once nothing is in flight
	refresh  bool  // find the leader again once nothing is in flight
	alone    bool  // retrying: one request at a time until one is acknowledged
	tries    int
	retryAt  time.Time
	lastErr  error
}

// batch is records of one partition sent together.
type batch struct {
	msgs    []*sarama.ProducerMessage
	recs    []sarama.Record
	rb      sarama.RecordBatch
	bytes   int // sarama's upper bound of the encoded size
	created time.Time
	closed  bool // takes no more records
	seqSet  bool // rb carries its producer id, epoch and sequence
}

// recordOverhead is sarama's upper bound of a record's size beyond its key and value, and
// batchOverhead a record batch's header: the same bound sarama's producer keeps batches to.
const (
	recordOverhead = 5*binary.MaxVarintLen32 + binary.MaxVarintLen64 + 1
	batchOverhead  = 61
	headerOverhead = 2 * binary.MaxVarintLen32
)

// New connects to the target and takes a producer id.
func New(cfg Config, done Done) (*Pipeline, error) { return newPipeline(cfg, done, nil) }

// newPipeline is New, transactional when txn is not nil (txn.go).
func newPipeline(cfg Config, done Done, txn *txnState) (*Pipeline, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Addrs, cfg.Net)
	if err != nil {
		return nil, fmt.Errorf("connect the produce pipeline to %v: %w", cfg.Addrs, err)
	}
	p := &Pipeline{
		cfg: cfg, client: client, done: done, version: requestVersion(cfg.Net.Version),
		parts: make(map[topicPartition]*partition), sinks: make(map[int32]*sink),
		pid: -1, epoch: -1, txn: txn,
		wakeCtl: make(chan struct{}, 1), wakeOut: make(chan struct{}, 1), outDone: make(chan struct{}),
	}
	p.room = sync.NewCond(&p.mu)
	if err := p.initProducerID(); err != nil {
		_ = client.Close()
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.control() }()
	go func() { defer p.wg.Done(); p.deliver() }()
	return p, nil
}

// Client is the sarama client under the pipeline (for metadata).
func (p *Pipeline) Client() sarama.Client { return p.client }

// initProducerIDRequest is an InitProducerId request at the version the target speaks, for the
// transactional id txnID (nil: idempotent only); with a producer id already held and a target of
// 2.5 or later it asks for that id's epoch to be bumped (KIP-360). had says whether an id was held.
func (p *Pipeline) initProducerIDRequest(txnID *string, timeout time.Duration) (req *sarama.InitProducerIDRequest, had bool) {
	req = &sarama.InitProducerIDRequest{TransactionalID: txnID, TransactionTimeout: timeout,
		ProducerID: -1, ProducerEpoch: -1}
	v := p.cfg.Net.Version
	switch {
	case v.IsAtLeast(sarama.V2_7_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_5_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 1
	}
	p.mu.Lock()
	had = p.pid >= 0
	if req.Version >= 3 && had {
		req.ProducerID, req.ProducerEpoch = p.pid, p.epoch
	}
	p.mu.Unlock()
	return req, had
}

// initProducerID takes a producer id, or bumps the epoch of the current one (KIP-360) where the
// target supports it.
func (p *Pipeline) initProducerID() error {
	if p.txn != nil {
		return p.initTxnProducerID()
	}
	req, _ := p.initProducerIDRequest(nil, 0)
	var errs []error
	for range 3 {
		b := p.client.LeastLoadedBroker()
		if b == nil {
			if err := p.client.RefreshMetadata(); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		res, err := b.InitProducerID(req)
		if err == nil && !errors.Is(res.Err, sarama.ErrNoError) {
			err = res.Err
		}
		if err != nil {
			errs = append(errs, err)
			_ = b.Close()
			continue
		}
		p.mu.Lock()
		if p.pid >= 0 {
			p.stats.EpochBumps++
		}
		p.pid, p.epoch = res.ProducerID, res.ProducerEpoch
		p.mu.Unlock()
		return nil
	}
	return fmt.Errorf("take an idempotent producer id on the target: %w", errors.Join(errs...))
}

// Produce queues m for its partition (m.Topic, m.Partition). It blocks while the pipeline holds
// Config.MaxBufferedBytes; after Abort or Close, m is settled at once with the error.
func (p *Pipeline) Produce(m *sarama.ProducerMessage) {
	var key, val []byte
	var err error
	if m.Key != nil {
		key, err = m.Key.Encode()
	}
	if m.Value != nil && err == nil {
		val, err = m.Value.Encode()
	}
	if err != nil {
		err = fmt.Errorf("encode record for %s/%d: %w", m.Topic, m.Partition, err)
	}
	size := recordOverhead + len(key) + len(val)
	for i := range m.Headers {
		size += len(m.Headers[i].Key) + len(m.Headers[i].Value) + headerOverhead
	}
	ts := m.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	ts = ts.Truncate(time.Millisecond)

	p.mu.Lock()
	for p.buffered > 0 && p.buffered+size > p.cfg.MaxBufferedBytes && !p.aborted {
		p.room.Wait()
	}
	if err == nil && size > p.cfg.MaxBatchBytes-batchOverhead {
		// As sarama's producer: a record that cannot fit a batch by itself is refused here.
		err = sarama.ErrMessageSizeTooLarge
	}
	switch {
	case err != nil:
		p.settle(settledBatch{msgs: []*sarama.ProducerMessage{m}, err: err})
		p.mu.Unlock()
		return
	case p.aborted:
		p.settle(settledBatch{msgs: []*sarama.ProducerMessage{m}, err: ErrAborted})
		p.mu.Unlock()
		return
	}
	tp := topicPartition{m.Topic, m.Partition}
	part := p.parts[tp]
	if part == nil {
		part = &partition{topicPartition: tp, pid: p.pid, epoch: p.epoch}
		p.parts[tp] = part
	}
	var b *batch
	if n := len(part.batches); n > 0 && !part.batches[n-1].closed {
		b = part.batches[n-1]
		if b.bytes+size > p.cfg.MaxBatchBytes {
			b.closed = true
			b = nil
		}
	}
	wake := false
	if b == nil {
		b = &batch{created: time.Now(), bytes: batchOverhead}
		b.rb = sarama.RecordBatch{Version: 2, Codec: p.cfg.Codec, FirstTimestamp: ts, MaxTimestamp: ts,
			IsTransactional: p.txn != nil}
		part.batches = append(part.batches, b)
		wake = true // the sink arms its linger timer
	}
	rec := sarama.Record{Key: key, Value: val, TimestampDelta: ts.Sub(b.rb.FirstTimestamp), OffsetDelta: int64(len(b.recs))}
	if len(m.Headers) > 0 {
		rec.Headers = make([]*sarama.RecordHeader, len(m.Headers))
		for i := range m.Headers {
			rec.Headers[i] = &m.Headers[i]
		}
	}
	if ts.After(b.rb.MaxTimestamp) {
		b.rb.MaxTimestamp = ts
	}
	b.recs = append(b.recs, rec)
	b.msgs = append(b.msgs, m)
	b.bytes += size
	p.buffered += size
	if b.bytes >= p.cfg.BatchBytes || len(b.recs) >= p.cfg.BatchRecords || p.cfg.Linger <= 0 {
		b.closed = true
		wake = true
	}
	s := part.sink
	p.mu.Unlock()
	if wake {
		if s != nil {
			s.poke()
		} else {
			poke(p.wakeCtl)
		}
	}
}

// Abort fails everything the pipeline holds (on Done, with ErrAborted) and closes its
// connections; nothing more is sent. It does not block.
func (p *Pipeline) Abort() {
	p.mu.Lock()
	if p.aborted {
		p.mu.Unlock()
		return
	}
	p.aborted = true
	for _, part := range p.parts {
		p.failQueue(part, 0, ErrAborted)
	}
	p.room.Broadcast()
	p.mu.Unlock()
	p.cancel()
	go func() { _ = p.client.Close() }()
}

// Close waits until every record produced has been settled and delivered (or, when aborted,
// failed), then stops the pipeline's goroutines and closes its client. Produce must not be
// called from Close on.
func (p *Pipeline) Close() {
	p.mu.Lock()
	p.closing = true
	sinks := make([]*sink, 0, len(p.sinks))
	for _, s := range p.sinks {
		sinks = append(sinks, s)
	}
	p.mu.Unlock()
	for _, s := range sinks {
		s.poke() // flush what lingers
	}
	poke(p.wakeCtl)
	poke(p.wakeOut)
	<-p.outDone
	p.Abort()
	p.wg.Wait()
	st := p.Stats()
	p.cfg.Log.Info("produce pipeline closed", zap.Int("peak_in_flight", st.PeakInFlight),
		zap.Int("resends", st.Resends), zap.Int("out_of_order", st.OutOfOrder), zap.Int("epoch_bumps", st.EpochBumps))
}

// settle queues an outcome for the delivery loop; p.mu held.
func (p *Pipeline) settle(s settledBatch) {
	p.settled = append(p.settled, s)
	poke(p.wakeOut)
}

// finish settles the first batch of part as written at base; p.mu held.
func (p *Pipeline) finish(part *partition, base int64) {
	b := part.batches[0]
	part.batches[0] = nil
	part.batches = part.batches[1:]
	part.sent--
	p.buffered -= b.bytes - batchOverhead
	p.room.Broadcast()
	p.settle(settledBatch{msgs: b.msgs, base: base})
}

// failQueue fails part's batches from index from on with err (a batch after the first with a
// note that it was not written because an earlier one failed); p.mu held. Batches in flight
// are dropped too: their answers find them gone (claim 6).
func (p *Pipeline) failQueue(part *partition, from int, err error) {
	for i, b := range part.batches[from:] {
		e := err
		if i > 0 && !errors.Is(err, ErrAborted) {
			// The cause is not wrapped: these records were not judged by the target, and a
			// caller that tells refused records apart (errors.Is) must not take them for it.
			e = fmt.Errorf("%w: an earlier batch of %s/%d failed: %v", ErrNotWritten, part.topic, part.id, err)
		}
		p.buffered -= b.bytes - batchOverhead
		p.settle(settledBatch{msgs: b.msgs, err: e})
	}
	if p.txn != nil && from < len(part.batches) {
		p.txnFailed(err) // the transaction can no longer commit (txn.go)
	}
	clear(part.batches[from:])
	part.batches = part.batches[:from]
	part.sent = min(part.sent, from)
	p.room.Broadcast()
}

// deliver hands settled outcomes to Done, in order, until the pipeline is closed and empty.
func (p *Pipeline) deliver() {
	defer close(p.outDone)
	for {
		p.mu.Lock()
		out := p.settled
		p.settled = nil
		empty := len(out) == 0 && p.closing && p.empty()
		p.mu.Unlock()
		if empty {
			return
		}
		for _, s := range out {
			for i, m := range s.msgs {
				m.Offset = -1
				if s.err == nil && s.base >= 0 {
					m.Offset = s.base + int64(i)
				}
			}
			p.done(s.msgs, s.err)
		}
		if len(out) == 0 {
			<-p.wakeOut
		}
	}
}

// empty reports whether no partition holds a batch; p.mu held.
func (p *Pipeline) empty() bool {
	for _, part := range p.parts {
		if len(part.batches) > 0 {
			return false
		}
	}
	return true
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// control finds partitions' leaders, bumps the epoch when asked, and fails queues past the
// delivery timeout.
func (p *Pipeline) control() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		case <-p.wakeCtl:
		}
		p.mu.Lock()
		now := time.Now()
		var lost []*partition
		topics := map[string]bool{}
		for _, part := range p.parts {
			if len(part.batches) == 0 || part.inflight > 0 {
				continue
			}
			if now.Sub(part.batches[0].created) > p.cfg.DeliveryTimeout {
				err := ErrDeliveryTimeout
				if part.lastErr != nil {
					err = fmt.Errorf("%w: %w", ErrDeliveryTimeout, part.lastErr)
				}
				p.failQueue(part, 0, err)
				continue
			}
			if part.sink == nil && !now.Before(part.retryAt) {
				lost = append(lost, part)
				if part.refresh {
					topics[part.topic] = true
				}
			}
		}
		bump := p.bumpWanted && p.inflight == 0 && !p.aborted
		p.mu.Unlock()
		if bump {
			if err := p.initProducerID(); err != nil {
				p.cfg.Log.Warn("cannot bump the idempotent producer's epoch; retrying", zap.Error(err))
			} else {
				p.mu.Lock()
				p.bumpWanted = false
				p.cfg.Log.Info("idempotent producer epoch bumped; sequences restart at 0",
					zap.Int64("producer_id", p.pid), zap.Int16("epoch", p.epoch))
				for _, s := range p.sinks {
					s.poke()
				}
				p.mu.Unlock()
			}
		}
		if len(lost) > 0 {
			p.findLeaders(lost, topics)
		}
	}
}

// findLeaders gives each partition of lost the sink of its leader, refreshing the metadata of
// topics first.
func (p *Pipeline) findLeaders(lost []*partition, topics map[string]bool) {
	if len(topics) > 0 {
		names := make([]string, 0, len(topics))
		for t := range topics {
			names = append(names, t)
		}
		if err := p.client.RefreshMetadata(names...); err != nil {
			p.cfg.Log.Debug("refresh target metadata", zap.Strings("topics", names), zap.Error(err))
		}
	}
	for _, part := range lost {
		b, err := p.client.Leader(part.topic, part.id)
		p.mu.Lock()
		if p.aborted || part.inflight > 0 || part.sink != nil {
			p.mu.Unlock()
			continue
		}
		if err != nil {
			part.refresh = true
			part.lastErr = fmt.Errorf("find the leader of %s/%d: %w", part.topic, part.id, err)
			part.retryAt = time.Now().Add(RetryPause(p.cfg.RetryBackoff, part.tries))
			part.tries++
			p.mu.Unlock()
			continue
		}
		s := p.sinks[b.ID()]
		if s == nil {
			s = newSink(p, b)
			p.sinks[b.ID()] = s
			p.wg.Add(1)
			go func() { defer p.wg.Done(); s.run() }()
		}
		s.broker = b // the client may have replaced the broker's object
		s.parts[part] = struct{}{}
		part.sink = s
		part.refresh = false
		p.mu.Unlock()
		s.poke()
	}
}
