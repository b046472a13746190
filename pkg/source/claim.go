package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/topics"
)

// Fetcher is what the handler needs of pkg/fetch's Fetcher.
type Fetcher interface {
	Add(topic string, partition int32, offset int64, sink fetch.Sink) error
	Remove(topic string, partition int32) (offset int64, ok bool)
	Ready(topic string, partition int32)
}

// claim is one claimed partition: the fetch.Sink its batches arrive at, and the goroutine that
// feeds their records, in offset order, to the partition's tracker and worker inbox.
//
// The fetch loop must never block (it fetches the broker's other partitions too), while the
// tracker (consumer.partition_in_flight) and the inbox may make the feeder wait. So Deliver only
// queues the batch and answers full once a partition's queued records reach its in-flight bound;
// the feeder takes everything queued at once and calls Fetcher.Ready when it does, so that at
// most about twice the bound waits beside what is in flight.
type claim struct {
	h      *Handler
	tp     topicPartition
	st     *claimState
	accept *topics.Topic // what the target topic accepts, as read when the claim started
	inbox  *ring.Queue[*record.Record]
	copies record.Copies
	// copiesDone is called once the claim has drained (Config.Copies).
	copiesDone func()
	log        *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the feeder has returned

	mu      sync.Mutex
	queued  []*fetch.Batch
	records int  // records in queued
	full    bool // answered full, not Ready since
	wake    chan struct{}
	bound   int
}

// Deliver implements fetch.Sink: it queues the batch for the feeder.
func (c *claim) Deliver(b *fetch.Batch) bool {
	c.st.highWatermark.Store(b.HighWatermark)
	if len(b.Records) == 0 {
		return false // control records or aborted ones only: nothing to mirror (quiet.go)
	}
	c.mu.Lock()
	c.queued = append(c.queued, b)
	c.records += len(b.Records)
	full := c.records >= c.bound
	if full {
		c.full = true
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return full
}

// Stopped implements fetch.Sink: an offset out of range is decided again (restart); any other
// refusal stops the mirror, since the partition could not be mirrored any further.
func (c *claim) Stopped(err error) {
	c.h.cfg.Observer.GroupError(err)
	if oor := (*fetch.OutOfRangeError)(nil); errors.As(err, &oor) {
		c.log.Warn("fetch offset out of range; draining the partition and deciding again where it resumes",
			zap.Int64("offset", oor.Offset), zap.Int64("log_start", oor.LogStart), zap.Int64("log_end", oor.LogEnd))
		go c.h.restart([]*claim{c}, "offset out of range")
		return
	}
	c.h.cfg.Fatal(fmt.Errorf("fetch %s/%d: %w", c.tp.topic, c.tp.partition, err))
}

// feed hands the queued records on until the claim is stopped.
func (c *claim) feed() {
	defer close(c.done)
	tracing := c.h.cfg.Tracing != nil && c.h.cfg.Tracing.Enabled
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		batches := c.queued
		c.queued, c.records = nil, 0
		ready := c.full
		c.full = false
		c.mu.Unlock()
		if ready {
			c.h.cfg.Fetcher.Ready(c.tp.topic, c.tp.partition)
		}
		for _, b := range batches {
			if !c.push(b, tracing) {
				return
			}
		}
	}
}

// push hands one batch's records on; false when the claim was stopped meanwhile (the records
// not handed on are not registered: they will be fetched again by the partition's next owner).
func (c *claim) push(b *fetch.Batch, tracing bool) bool {
	h, st, track := c.h, c.st, c.st.track
	for i := range b.Records {
		fr := &b.Records[i]
		m := sarama.ConsumerMessage{
			Topic: b.Topic, Partition: b.Partition, Offset: fr.Offset, Timestamp: fr.Timestamp,
			Key: fr.Key, Value: fr.Value, Headers: fr.Headers,
		}
		r := h.cfg.Records.From(&m, c.accept.Target, track, c.accept.MaxMessageBytes)
		r.Accept, r.Copies = c.accept, c.copies
		r.Behind = behind(fr.Offset, max(b.HighWatermark, st.highWatermark.Load()))
		if h.cfg.Provenance != nil {
			h.cfg.Provenance.Apply(r, &m)
		}
		if tracing {
			h.startSpan(r, &m)
		}
		seq, err := track.RegisterWait(c.ctx, fr.Offset)
		if err != nil {
			h.release(r)
			return false
		}
		track.Stamp(seq, fr.Timestamp)
		st.fetched.Add(1)
		st.fetchedBytes.Add(r.Size)
		r.Seq = seq
		if r.Span != nil {
			r.Enqueued = time.Now()
		}
		if err := c.inbox.Push(c.ctx, r, r.Size); err != nil {
			track.Unregister(seq)
			h.release(r)
			return false
		}
	}
	return true
}
