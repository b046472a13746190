package source

import (
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

// claim is one claimed partition: the fetch.Sink its batches arrive at. It has no goroutine of
// its own (a process may claim tens of thousands of partitions): Deliver, on the fetch loop,
// registers a fetched batch's records with the partition's tracker at once and pushes them into
// the worker's inbox as one ring item, without waiting. When the tracker's window
// (consumer.partition_in_flight) or the inbox has no room, the claim keeps what it could not
// hand on, answers full (the fetcher stops fetching the partition), and its worker's pusher
// (pusher.go) hands the rest on when room frees, then calls Fetcher.Ready.
//
// Order: everything a claim hands on goes through step, under mu, oldest first (held, then
// rest), so the partition's records are registered and pushed in offset order whichever
// goroutine pushes. Bound: besides what is in flight, a claim keeps at most what the fetcher
// delivered before it saw full (one fetch response, or two when a fetch was under way).
type claim struct {
	h      *Handler
	tp     topicPartition
	st     *claimState
	accept *topics.Topic // what the target topic accepts, as read when the claim started
	inbox  *ring.Queue[*record.Batch]
	pusher *pusher
	copies record.Copies
	worker int // the worker whose inbox it feeds: its group in the fetcher (Group)
	// copiesDone is called once the claim has drained (Config.Copies).
	copiesDone func()

	mu      sync.Mutex
	rest    []*fetch.Batch // delivered, not yet registered, oldest first
	next    int            // rest[0].Records[next:] are not registered yet
	held    *record.Batch  // registered, not yet in the inbox
	heldSeq uint64         // held's first sequence number
	onRing  bool           // step stopped at a full inbox (rather than a full window)
	full    bool           // answered full, not Ready since
	waiting bool           // in the pusher's list
	stopped bool
}

// log is the handler's logger with the claim's topic and partition. It is built when a line is
// logged, not kept: a zap logger With fields holds an encoder buffer (1 KiB), 10 MiB over
// 10,000 partitions, for lines a claim writes only when something goes wrong.
func (c *claim) log() *zap.Logger {
	return c.h.cfg.Log.With(zap.String("topic", c.tp.topic), zap.Int32("partition", c.tp.partition))
}

// Deliver implements fetch.Sink: it hands b on at once when there is room, and otherwise keeps it
// for the pusher and answers full.
func (c *claim) Deliver(b *fetch.Batch) bool {
	c.st.highWatermark.Store(b.HighWatermark)
	c.h.wake(c.st) // after the store: see watch.go
	if len(b.Records) == 0 {
		return false // control records or aborted ones only: nothing to mirror (quiet.go)
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return false
	}
	c.rest = append(c.rest, b)
	// While other claims of the worker wait for its inbox, this one queues behind them: taking
	// the room they wait for would starve them.
	done := !c.pusher.ringFull.Load() && c.step()
	ready := false
	if done {
		ready, c.full = c.full, false
	} else {
		c.full = true
		if !c.waiting {
			c.waiting = true
			c.pusher.add(c)
		}
	}
	c.mu.Unlock()
	if ready {
		c.h.cfg.Fetcher.Ready(c.tp.topic, c.tp.partition) // an earlier full raced with this delivery
	}
	return !done
}

// Group implements fetch.Grouped: the claims of one worker share consumer.max_held_bytes's
// share of it, so a worker whose inbox stays full holds up the fetching of its own partitions
// only.
func (c *claim) Group() int { return c.worker }

// Stopped implements fetch.Sink: an offset out of range is decided again (restart); any other
// refusal stops the mirror, since the partition could not be mirrored any further.
func (c *claim) Stopped(err error) {
	c.h.cfg.Observer.GroupError(err)
	if oor := (*fetch.OutOfRangeError)(nil); errors.As(err, &oor) {
		c.log().Warn("fetch offset out of range; draining the partition and deciding again where it resumes",
			zap.Int64("offset", oor.Offset), zap.Int64("log_start", oor.LogStart), zap.Int64("log_end", oor.LogEnd))
		go c.h.restart([]*claim{c}, "offset out of range")
		return
	}
	c.h.cfg.Fatal(fmt.Errorf("fetch %s/%d: %w", c.tp.topic, c.tp.partition, err))
}

// step hands on what the claim keeps, oldest first, until all is in the inbox (true) or the
// inbox or the tracker's window is full (false; onRing says which). c.mu is held.
func (c *claim) step() bool {
	track := c.st.track
	for {
		if c.held != nil {
			if !c.inbox.TryPushN(c.held, c.held.Size, len(c.held.Records)) {
				c.onRing = true
				return false
			}
			c.held = nil
		}
		if len(c.rest) == 0 {
			return true
		}
		b := c.rest[0]
		left := len(b.Records) - c.next
		n := min(left, track.Room())
		if n == 0 {
			track.WantRoom() // then look again: an ack in between either shows here or calls onRoom
			if n = min(left, track.Room()); n == 0 {
				c.onRing = false
				return false
			}
		}
		if !c.take(b, c.next, n) {
			c.onRing = false
			return false
		}
		if c.next += n; c.next == len(b.Records) {
			c.rest[0] = nil
			c.rest, c.next = c.rest[1:], 0
		}
	}
}

// take registers b.Records[from:from+n] with the tracker and makes them the held batch; false
// when the window had no room for them after all.
func (c *claim) take(b *fetch.Batch, from, n int) bool {
	h, st, track := c.h, c.st, c.st.track
	recs := b.Records[from : from+n]
	seq, err := track.RegisterBatch(n, func(i int) int64 { return recs[i].Offset })
	if err != nil {
		return false // step saw the room; only a registration outside mu could take it
	}
	tracing := h.cfg.Tracing != nil && h.cfg.Tracing.Enabled
	hwm := max(b.HighWatermark, st.highWatermark.Load())
	out := &record.Batch{Records: make([]*record.Record, n)}
	for i := range recs {
		fr := &recs[i]
		m := sarama.ConsumerMessage{
			Topic: b.Topic, Partition: b.Partition, Offset: fr.Offset, Timestamp: fr.Timestamp,
			Key: fr.Key, Value: fr.Value, Headers: fr.Headers,
		}
		r := h.cfg.Records.From(&m, c.accept.Target, track, c.accept.MaxMessageBytes)
		r.Accept, r.Copies = c.accept, c.copies
		r.Behind = behind(fr.Offset, hwm)
		if h.cfg.Provenance != nil {
			h.cfg.Provenance.Apply(r, &m)
		}
		if tracing {
			h.startSpan(r, &m)
		}
		r.Seq = seq + uint64(i)
		track.Stamp(r.Seq, fr.Timestamp)
		if r.Span != nil {
			r.Enqueued = time.Now()
		}
		out.Records[i] = r
		out.Size += r.Size
	}
	st.fetched.Add(int64(n))
	st.fetchedBytes.Add(out.Size)
	c.held, c.heldSeq = out, seq
	return true
}

// stop hands nothing on any more: the held batch is taken back from the tracker (it is the most
// recent registration) and what was not registered is dropped; the partition's next owner
// fetches them again. Call it once the fetcher no longer delivers to the claim.
func (c *claim) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.held != nil {
		c.st.track.UnregisterBatch(c.heldSeq, len(c.held.Records))
		for _, r := range c.held.Records {
			c.h.release(r)
		}
		c.held = nil
	}
	c.rest, c.next = nil, 0
}
