// Package worker owns a partition worker: it takes records from its inbox in order, produces
// them to the target with its own idempotent producer, and reports every record's fate to the
// record's partition tracker.
//
// It must never report a record as acknowledged before the target has acknowledged it (or, under
// the skip policy, before it has been counted and logged as skipped), and never drop one silently.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// Observer is told of every record's fate. Implementations must be cheap and must not block:
// they run on the worker's hot path.
type Observer interface {
	// Sent is called when a record is handed to the producer.
	Sent(worker int, r *record.Record)
	// Acked is called when the target acknowledged a record.
	Acked(worker int, r *record.Record, at time.Time)
	// Skipped is called when a record was skipped under the oversize skip policy.
	Skipped(worker int, r *record.Record, err error)
	// Failed is called when a record could not be produced and its partition stops.
	Failed(worker int, r *record.Record, err error)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) Sent(int, *record.Record)             {}
func (NopObserver) Acked(int, *record.Record, time.Time) {}
func (NopObserver) Skipped(int, *record.Record, error)   {}
func (NopObserver) Failed(int, *record.Record, error)    {}

// ErrOversize marks a record larger than its target topic accepts.
var ErrOversize = errors.New("record larger than the target accepts")

// Config configures a Worker.
type Config struct {
	// ID is the worker's index in the ring.
	ID int
	// Inbox is the queue the worker drains.
	Inbox *ring.Queue[*record.Record]
	// Records takes back each record whose fate is final (acknowledged or skipped) once the
	// tracker and the observer have been told; nil leaves them to the garbage collector. A
	// failed record is never put back: its partition stops and the error may still refer to it.
	Records *record.Pool
	// Producer writes to the target; the worker owns it and closes it when it stops.
	Producer sarama.AsyncProducer
	// OversizePolicy is config.OversizeFail or config.OversizeSkip.
	OversizePolicy string
	// Fatal is called (from the worker's goroutines) when a record fails for good; the mirror
	// then stops.
	Fatal    func(error)
	Observer Observer
	Log      *zap.Logger
}

// Worker moves records from its inbox to the target.
type Worker struct {
	cfg Config
}

// New returns a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if cfg.Inbox == nil || cfg.Producer == nil {
		return nil, errors.New("worker: an inbox and a producer are required")
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Fatal == nil {
		cfg.Fatal = func(error) {}
	}
	cfg.Log = cfg.Log.With(zap.Int("worker", cfg.ID))
	return &Worker{cfg: cfg}, nil
}

// Run sends records until ctx ends, then closes the producer and waits for the outcome of every
// record it sent, so that when Run returns every record taken from the inbox has been reported
// to its tracker. Callers end ctx only once the inbox has been drained by the source.
func (w *Worker) Run(ctx context.Context) error {
	p := w.cfg.Producer
	var acks sync.WaitGroup
	acks.Add(2)
	go func() { defer acks.Done(); w.successes(p.Successes()) }()
	go func() { defer acks.Done(); w.errors(p.Errors()) }()

	err := w.send(ctx, p.Input())
	p.AsyncClose() // flushes what is buffered; Successes and Errors close when it is done
	acks.Wait()
	if left := w.cfg.Inbox.Len(); left > 0 {
		w.cfg.Log.Warn("worker stopped with records still in its inbox; they were not committed and will be read again",
			zap.Int("records", left))
	}
	return err
}

func (w *Worker) send(ctx context.Context, input chan<- *sarama.ProducerMessage) error {
	for {
		r, err := w.cfg.Inbox.Pop(ctx)
		if err != nil {
			return nil // ctx ended: the orderly way to stop
		}
		if r.Limit > 0 && r.Size > int64(r.Limit) {
			w.oversize(r, fmt.Errorf("%w: %d bytes, target topic %q max.message.bytes is %d",
				ErrOversize, r.Size, r.Msg.Topic, r.Limit))
			continue
		}
		r.Handed = true
		if r.Span != nil {
			r.Sent = time.Now()
		}
		w.cfg.Observer.Sent(w.cfg.ID, r)
		select {
		case input <- &r.Msg:
		case <-ctx.Done():
			// The record was taken but never sent: it stays unacknowledged, so its partition
			// is not committed past it and it will be read again.
			return nil
		}
	}
}

func (w *Worker) successes(ch <-chan *sarama.ProducerMessage) {
	for m := range ch {
		r := record.Of(m)
		if r == nil {
			continue
		}
		now := time.Now()
		r.Track.Ack(r.Seq)
		w.cfg.Observer.Acked(w.cfg.ID, r, now)
		w.cfg.Records.Put(r)
	}
}

func (w *Worker) errors(ch <-chan *sarama.ProducerError) {
	for pe := range ch {
		r := record.Of(pe.Msg)
		if r == nil {
			continue
		}
		if errors.Is(pe.Err, sarama.ErrMessageSizeTooLarge) || errors.Is(pe.Err, sarama.ErrInvalidMessageSize) {
			w.oversize(r, fmt.Errorf("%w: %d bytes, refused by the target: %w", ErrOversize, r.Size, pe.Err))
			continue
		}
		w.fail(r, pe.Err)
	}
}

// oversize applies the oversize policy to r.
func (w *Worker) oversize(r *record.Record, err error) {
	fields := []zap.Field{
		zap.String("topic", r.Track.Topic()), zap.Int32("partition", r.Track.Partition()),
		zap.Int64("offset", r.Offset), zap.Int64("size", r.Size), zap.Int("limit", r.Limit), zap.Error(err),
	}
	if w.cfg.OversizePolicy == config.OversizeSkip {
		w.cfg.Log.Warn("skipped a record larger than the target accepts (producer.oversize_policy: skip)", fields...)
		w.cfg.Observer.Skipped(w.cfg.ID, r, err)
		r.Track.Ack(r.Seq)
		w.cfg.Records.Put(r)
		return
	}
	w.cfg.Log.Error("record larger than the target accepts; the partition stops here "+
		"(raise the target topic's max.message.bytes, or set producer.oversize_policy: skip)", fields...)
	w.fail(r, err)
}

func (w *Worker) fail(r *record.Record, err error) {
	werr := fmt.Errorf("produce %s/%d offset %d to target topic %q: %w",
		r.Track.Topic(), r.Track.Partition(), r.Offset, r.Msg.Topic, err)
	r.Track.Fail(r.Seq, werr)
	w.cfg.Observer.Failed(w.cfg.ID, r, werr)
	if !errors.Is(err, ErrOversize) {
		w.cfg.Log.Error("record could not be produced after all retries; the partition stops here",
			zap.String("topic", r.Track.Topic()), zap.Int32("partition", r.Track.Partition()),
			zap.Int64("offset", r.Offset), zap.Error(err))
	}
	w.cfg.Fatal(werr)
}
