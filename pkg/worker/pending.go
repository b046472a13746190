package worker

import (
	"context"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/record"
)

// maxPending bounds the records handed to a producer in one call. With the byte bound
// (the target topic's max.message.bytes) it keeps what the send loop holds between the inbox
// and the producer within what config.Memory counts for the records on their way in.
const maxPending = 256

// pending is the records the send loop took from the inbox for one lane and partition and has
// not handed over yet. It hands them over (flush) when the next record is of another lane or
// partition, when the bound is reached, before anything that may wait for earlier records to
// settle (a record sent alone, a refused record's policy, a record from the target), and
// whenever the inbox has nothing more ready: a record never waits in it for another.
type pending struct {
	lane  *lane
	msgs  []*sarama.ProducerMessage
	bytes int64
}

// pend adds r to what is pending for l, handing over first what is pending for another lane
// or partition, or what r would take past the bound; false when ctx ended first.
func (w *Worker) pend(ctx context.Context, l *lane, r *record.Record) bool {
	p := &w.pending
	if n := len(p.msgs); n > 0 {
		first := p.msgs[0]
		limit := int64(r.Limit)
		if limit <= 0 {
			limit = kafkaDefaultMaxMessageBytes
		}
		if p.lane != l || first.Topic != r.Msg.Topic || first.Partition != r.Msg.Partition ||
			n >= maxPending || p.bytes+r.Size > limit {
			if !w.flush(ctx) {
				return false
			}
		}
	}
	p.lane = l
	p.msgs = append(p.msgs, &r.Msg)
	p.bytes += r.Size
	return true
}

// flush hands what is pending to its lane's producer in one call; false when ctx ended before
// the producer took all of it (the rest is dropped: unacknowledged, it is read again).
func (w *Worker) flush(ctx context.Context) bool {
	p := &w.pending
	if len(p.msgs) == 0 {
		return true
	}
	if ctx.Err() != nil { // the worker stops: nothing more reaches a producer
		w.dropPending()
		return false
	}
	n := p.lane.p.ProduceBatch(ctx, p.msgs)
	all := n == len(p.msgs)
	for _, m := range p.msgs[n:] {
		w.drop(record.Of(m))
	}
	clear(p.msgs)
	p.msgs, p.bytes, p.lane = p.msgs[:0], 0, nil
	return all
}

// dropPending lets go of what is pending without handing it over (the worker stops: records
// not yet with a producer are read again by whoever owns their partitions next).
func (w *Worker) dropPending() {
	p := &w.pending
	for _, m := range p.msgs {
		w.drop(record.Of(m))
	}
	clear(p.msgs)
	p.msgs, p.bytes, p.lane = p.msgs[:0], 0, nil
}

// requeuePending puts what is pending on the list to resend (a recovery began before it was
// handed over: it follows what the aborted producers give back, in order).
func (w *Worker) requeuePending() {
	p := &w.pending
	for _, m := range p.msgs {
		w.requeue(record.Of(m), nil)
	}
	clear(p.msgs)
	p.msgs, p.bytes, p.lane = p.msgs[:0], 0, nil
}
