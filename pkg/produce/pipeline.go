package produce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
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
	enc     *encoder // encodes uncompressed batches' records into the batches' buffers (records.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the control loop, the delivery loop and the sinks

	mu         sync.Mutex
	room       *sync.Cond // signalled when buffered shrinks or the pipeline aborts
	parts      map[topicPartition]*partition
	busy       map[*partition]struct{} // the partitions holding a batch: all the control loop looks at
	sinks      map[int32]*sink
	pid        int64
	epoch      int16
	bumpWanted bool // a partition's first batch met a sequence error: bump once nothing is in flight
	inflight   int  // requests in flight, all sinks
	buffered   int  // bytes of records held
	aborted    bool
	closing    bool
	// pressed counts the records waiting for room (waitRoom): while one waits, no batch
	// lingers, as in Kafka's producer, whose batches are sent at once while its buffer is
	// exhausted. Else a record could wait a whole linger (producer.linger, or its distant_linger)
	// for batches that hold the room and wait for more records.
	pressed int
	stats   Stats
	settled []settledBatch // outcomes waiting for the delivery loop
	shelf   shelf          // acknowledged batches' records slices, for new batches (spares.go)
	wakeCtl chan struct{}
	wakeOut chan struct{}
	outDone chan struct{} // closed when the delivery loop returned (after Close drained)
	txn     *txnState     // nil unless transactional (txn.go)
}

// Stats counts what the pipeline went through (for tests and metrics).
type Stats struct {
	PeakInFlight int // most requests in flight at once to one broker
	Resends      int // rounds in which a partition sent its queue again
	OutOfOrder   int // OUT_OF_ORDER_SEQUENCE_NUMBER answers (behind a failed batch, or not)
	EpochBumps   int // producer ids taken after the first
	Visits       int // partitions looked at by the control loop and the sinks (the cost of idle ones)
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
	alone    bool  // new, renumbered or retrying: one request at a time until one is acknowledged
	tries    int
	retryAt  time.Time
	lastErr  error
	// recent is about the most records its recent batches held: the larger of the last one's
	// and three quarters of the one before's recent (spares.go).
	recent int
}

// batch is records of one partition sent together.
type batch struct {
	msgs    []*sarama.ProducerMessage
	recs    []sarama.Record
	ptrs    []*sarama.Record       // rb.Records: pointers into recs
	hdrs    []*sarama.RecordHeader // the records' header pointers, one backing array (grown by append)
	rb      sarama.RecordBatch
	bytes   int // sarama's upper bound of the encoded size: what the memory bound counts
	wire    int // the exact encoded size before compression: what fills the batch (Config.BatchBytes, MaxBatchBytes)
	created time.Time
	closed  bool   // takes no more records
	seqSet  bool   // rb carries its producer id, epoch and sequence
	enc     []byte // rb's records, encoded by the pipeline (records.go); set by the sink
}

// recordOverhead is sarama's upper bound of a record's size beyond its key and value, and
// batchOverhead a record batch's header: the same bound sarama's producer keeps batches to.
const (
	recordOverhead = 5*binary.MaxVarintLen32 + binary.MaxVarintLen64 + 1
	batchOverhead  = 61
	headerOverhead = 2 * binary.MaxVarintLen32
)

// fullBatch is the size of an encoding buffer for a full batch: one closes once it reaches
// BatchBytes, with the record that reached it (at most MaxBatchBytes).
func fullBatch(cfg Config) int {
	return min(cfg.BatchBytes+cfg.BatchBytes/16, cfg.MaxBatchBytes)
}

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
		parts: make(map[topicPartition]*partition), busy: make(map[*partition]struct{}), sinks: make(map[int32]*sink),
		pid: -1, epoch: -1, txn: txn, enc: newEncoder(cfg.Codec, cfg.MaxBufferedBytes/2, fullBatch(cfg)),
		shelf:   shelf{maxBytes: cfg.MaxBufferedBytes / 4},
		wakeCtl: make(chan struct{}, 1), wakeOut: make(chan struct{}, 1), outDone: make(chan struct{}),
	}
	p.room = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if err := p.initProducerID(); err != nil {
		p.cancel()
		_ = client.Close()
		return nil, err
	}
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
// target supports it. While the target cannot answer (no broker reachable, its coordinator
// loading, ...) it asks again after growing pauses (cenkalti/backoff), a bounded number of
// times: the caller decides what then (New fails and the worker opens the pipeline again later;
// the control loop tries the bump again). An answer no retry changes (not authorized, an
// unsupported version) is given up on at once.
func (p *Pipeline) initProducerID() error {
	if p.txn != nil {
		return p.initTxnProducerID()
	}
	req, _ := p.initProducerIDRequest(nil, 0)
	wait := backoff.NewExponentialBackOff()
	wait.InitialInterval = max(p.cfg.RetryBackoff, 20*time.Millisecond)
	wait.MaxInterval = time.Second
	var errs []error
	res, err := backoff.Retry(p.ctx, func() (*sarama.InitProducerIDResponse, error) {
		b := p.client.LeastLoadedBroker()
		if b == nil {
			err := p.client.RefreshMetadata()
			if err == nil {
				err = errors.New("no target broker reachable")
			}
			errs = append(errs, err)
			return nil, err
		}
		res, err := b.InitProducerID(req)
		if err == nil && !errors.Is(res.Err, sarama.ErrNoError) {
			err = res.Err
		}
		if err == nil {
			return res, nil
		}
		errs = append(errs, err)
		var ke sarama.KError
		if !errors.As(err, &ke) {
			_ = b.Close() // a broken connection: dial again
			return nil, err
		}
		switch ke {
		case sarama.ErrClusterAuthorizationFailed, sarama.ErrTransactionalIDAuthorizationFailed,
			sarama.ErrUnsupportedVersion, sarama.ErrUnsupportedForMessageFormat, sarama.ErrInvalidRequest:
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}, backoff.WithBackOff(wait), backoff.WithMaxTries(initProducerIDTries))
	if err != nil {
		return fmt.Errorf("take an idempotent producer id on the target (%d attempts): %w", len(errs), errors.Join(errs...))
	}
	p.mu.Lock()
	if p.pid >= 0 {
		p.stats.EpochBumps++
	}
	p.pid, p.epoch = res.ProducerID, res.ProducerEpoch
	p.mu.Unlock()
	return nil
}

// initProducerIDTries bounds the attempts of one initProducerID: with pauses growing from the
// retry backoff to a second, about five seconds of a target that does not answer.
const initProducerIDTries = 8

// Produce queues m for its partition (m.Topic, m.Partition). It blocks while the pipeline holds
// Config.MaxBufferedBytes; after Abort or Close, m is settled at once with the error.
func (p *Pipeline) Produce(m *sarama.ProducerMessage) {
	p.ProduceBatch(context.Background(), []*sarama.ProducerMessage{m})
}

// ProduceBatch queues msgs, records of one partition in the order they are to be written, in
// one call: the batch-level entry of a caller that holds several records of a partition. Each
// record waits while the pipeline holds Config.MaxBufferedBytes (the bound is kept per record,
// so a long msgs never holds more than it). A record refused before it is sent (too large for a
// batch, a key or value that cannot be encoded, not of msgs[0]'s partition) is settled with
// that error naming it, and every record after it in msgs with ErrNotWritten: nothing of a
// partition is queued behind a record that failed. After Abort or Close, the records are
// settled at once with ErrAborted. It returns how many of msgs it took (queued or settled):
// all, unless ctx ended while it waited for room; the rest are the caller's, untouched.
func (p *Pipeline) ProduceBatch(ctx context.Context, msgs []*sarama.ProducerMessage) int {
	if len(msgs) == 0 {
		return 0
	}
	tp := topicPartition{msgs[0].Topic, msgs[0].Partition}
	p.mu.Lock()
	defer p.mu.Unlock()
	part := p.parts[tp]
	if part == nil {
		// Its first batch goes alone (claim 2).
		part = &partition{topicPartition: tp, pid: p.pid, epoch: p.epoch, alone: true}
		p.parts[tp] = part
	}
	for i, m := range msgs {
		key, val, size, ts, err := encodeRecord(m, tp)
		if err == nil && p.buffered > 0 && p.buffered+size > p.cfg.MaxBufferedBytes && !p.aborted {
			if !p.waitRoom(ctx, size) {
				return i
			}
		}
		if err == nil && size > p.cfg.MaxBatchBytes-batchOverhead {
			// As sarama's producer: a record that cannot fit a batch by itself is refused here.
			err = sarama.ErrMessageSizeTooLarge
		}
		if p.aborted {
			err = ErrAborted
		}
		if err != nil {
			p.settle(settledBatch{msgs: []*sarama.ProducerMessage{m}, err: err})
			if rest := msgs[i+1:]; len(rest) > 0 {
				if !errors.Is(err, ErrAborted) {
					err = fmt.Errorf("%w: an earlier record of %s/%d was refused: %v", ErrNotWritten, tp.topic, tp.id, err)
				}
				p.settle(settledBatch{msgs: append([]*sarama.ProducerMessage(nil), rest...), err: err})
			}
			return len(msgs)
		}
		p.queue(part, m, key, val, size, ts, len(msgs)-i)
	}
	return len(msgs)
}

// waitRoom waits until size more bytes fit Config.MaxBufferedBytes (or the pipeline holds
// nothing, or it aborted), and no batch lingers meanwhile (pressed); false when ctx ended first;
// p.mu held.
func (p *Pipeline) waitRoom(ctx context.Context, size int) bool {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.room.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.pressed++
	defer func() { p.pressed-- }()
	for _, s := range p.sinks {
		s.poke() // send what lingers
	}
	for p.buffered > 0 && p.buffered+size > p.cfg.MaxBufferedBytes && !p.aborted {
		if ctx.Err() != nil {
			return false
		}
		p.room.Wait()
	}
	return true
}

// encodeRecord returns m's key and value, its size as sarama bounds it and its timestamp (now
// when it has none, in milliseconds as the batch carries it).
func encodeRecord(m *sarama.ProducerMessage, tp topicPartition) (key, val []byte, size int, ts time.Time, err error) {
	if m.Topic != tp.topic || m.Partition != tp.id {
		return nil, nil, 0, ts, fmt.Errorf("a record for %s/%d in a batch of %s/%d", m.Topic, m.Partition, tp.topic, tp.id)
	}
	if m.Key != nil {
		key, err = m.Key.Encode()
	}
	if m.Value != nil && err == nil {
		val, err = m.Value.Encode()
	}
	if err != nil {
		return nil, nil, 0, ts, fmt.Errorf("encode record for %s/%d: %w", m.Topic, m.Partition, err)
	}
	size = recordOverhead + len(key) + len(val)
	for i := range m.Headers {
		size += len(m.Headers[i].Key) + len(m.Headers[i].Value) + headerOverhead
	}
	ts = m.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return key, val, size, ts.Truncate(time.Millisecond), nil
}

// queue appends one record to part's open batch, opening one when there is none or it is full,
// and wakes whoever sends it; coming is how many records of the caller's run, this one
// included, are still to be queued. p.mu held.
func (p *Pipeline) queue(part *partition, m *sarama.ProducerMessage, key, val []byte, size int, ts time.Time, coming int) {
	hdrs := headersLen(m.Headers)
	var b *batch
	wire := 0 // the record's exact size in b (its timestamp and offset deltas are b's)
	if n := len(part.batches); n > 0 && !part.batches[n-1].closed {
		b = part.batches[n-1]
		wire = recordWire(key, val, len(m.Headers), hdrs, ts.Sub(b.rb.FirstTimestamp), int64(len(b.recs)))
		if b.wire+wire > p.cfg.MaxBatchBytes {
			b.closed = true
			b = nil
		}
	}
	wake := false
	if b == nil {
		// Room for the rest of the caller's run, up to as many records of this one's size as
		// the batch takes: appending the run then never copies the batch's records, and a
		// batch opened for a few records does not hold room for hundreds (at 10,000 partitions
		// of one record each, room for a whole batch each was 260 MiB of 410 in use). Records
		// of later calls (lingering) grow it by append, unless it took the slice an
		// acknowledged batch left, as large as its partition's recent batches (spares.go).
		n := min(coming, p.cfg.BatchRecords, p.cfg.BatchBytes/size+1, 4096)
		if b = p.shelf.take(n, max(2*max(n, part.recent), minRecords)); b == nil {
			b = &batch{recs: make([]sarama.Record, 0, n)}
		}
		b.created, b.bytes, b.wire = time.Now(), batchOverhead, batchOverhead
		b.msgs = make([]*sarama.ProducerMessage, 0, cap(b.recs))
		wire = recordWire(key, val, len(m.Headers), hdrs, 0, 0)
		b.rb = sarama.RecordBatch{Version: 2, Codec: p.cfg.Codec, FirstTimestamp: ts, MaxTimestamp: ts,
			IsTransactional: p.txn != nil}
		if len(part.batches) == 0 {
			p.busied(part)
		}
		part.batches = append(part.batches, b)
		wake = true // the sink arms its linger timer
	}
	rec := sarama.Record{Key: key, Value: val, TimestampDelta: ts.Sub(b.rb.FirstTimestamp), OffsetDelta: int64(len(b.recs))}
	if len(m.Headers) > 0 {
		// The batch's records share one slice of header pointers (sarama wants pointers), not
		// one allocation per record.
		from := len(b.hdrs)
		for i := range m.Headers {
			b.hdrs = append(b.hdrs, &m.Headers[i])
		}
		rec.Headers = b.hdrs[from:len(b.hdrs):len(b.hdrs)]
	}
	if ts.After(b.rb.MaxTimestamp) {
		b.rb.MaxTimestamp = ts
	}
	b.recs = append(b.recs, rec)
	b.msgs = append(b.msgs, m)
	b.bytes += size
	b.wire += wire
	p.buffered += size
	if b.wire >= p.cfg.BatchBytes || len(b.recs) >= p.cfg.BatchRecords || p.cfg.Linger <= 0 {
		b.closed = true
		wake = true
	}
	if wake {
		// Under p.mu (poke never blocks): a caller about to wait for room must not hold back
		// the poke that sends what would make room.
		if part.sink != nil {
			part.sink.poke()
		} else {
			poke(p.wakeCtl)
		}
	}
}

// busied notes that part, which held no batch, is getting one: the control loop and its sink
// look at it from now on (they look at no partition that holds nothing); p.mu held.
func (p *Pipeline) busied(part *partition) {
	p.busy[part] = struct{}{}
	if part.sink != nil {
		part.sink.parts[part] = struct{}{}
	}
	poke(p.wakeCtl) // it may have no leader yet; its delivery timeout runs
}

// drained notes that part may hold no batch any more: nothing looks at it until it gets one
// (busied); p.mu held.
func (p *Pipeline) drained(part *partition) {
	if len(part.batches) > 0 {
		return
	}
	delete(p.busy, part)
	if part.sink != nil {
		delete(part.sink.parts, part)
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
	busy := make([]*partition, 0, len(p.busy))
	for part := range p.busy {
		busy = append(busy, part)
	}
	for _, part := range busy {
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
	p.drained(part)
	p.buffered -= b.bytes - batchOverhead
	p.room.Broadcast()
	p.settle(settledBatch{msgs: b.msgs, base: base})
	p.enc.release(b)
	p.shelf.keep(b)
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
	p.drained(part)
	p.room.Broadcast()
}

// deliver hands settled outcomes to Done, in order, until the pipeline is closed and empty.
func (p *Pipeline) deliver() {
	defer close(p.outDone)
	for {
		p.mu.Lock()
		out := p.settled
		p.settled = nil
		empty := len(out) == 0 && p.closing && len(p.busy) == 0
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

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// control finds partitions' leaders, bumps the epoch when asked, and fails queues past the
// delivery timeout. It looks only at the partitions that hold a batch, and ticks only while
// there are some (or an epoch bump waits): idle partitions, however many, cost it nothing.
func (p *Pipeline) control() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	active := false
	for {
		var ticks <-chan time.Time
		if active {
			ticks = tick.C
		}
		select {
		case <-p.ctx.Done():
			return
		case <-ticks:
		case <-p.wakeCtl:
		}
		p.mu.Lock()
		now := time.Now()
		var lost []*partition
		var expired []*partition
		topics := map[string]bool{}
		for part := range p.busy {
			p.stats.Visits++
			if part.inflight > 0 {
				continue
			}
			if now.Sub(part.batches[0].created) > p.cfg.DeliveryTimeout {
				expired = append(expired, part) // failed after the loop: failQueue changes p.busy
				continue
			}
			if part.sink == nil && !now.Before(part.retryAt) {
				lost = append(lost, part)
				if part.refresh {
					topics[part.topic] = true
				}
			}
		}
		for _, part := range expired {
			err := ErrDeliveryTimeout
			if part.lastErr != nil {
				err = fmt.Errorf("%w: %w", ErrDeliveryTimeout, part.lastErr)
			}
			p.failQueue(part, 0, err)
		}
		bump := p.bumpWanted && p.inflight == 0 && !p.aborted
		active = len(p.busy) > 0 || p.bumpWanted
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
		part.sink = s
		if len(part.batches) > 0 {
			s.parts[part] = struct{}{}
		}
		part.refresh = false
		p.mu.Unlock()
		s.poke()
	}
}
