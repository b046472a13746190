package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/topics"
)

// ErrRefused marks a record its target topic refuses (or would refuse) for what it is.
var ErrRefused = errors.New("the target refuses this record")

// Refusal is a record the target refuses, with a short reason for metrics and logs.
type Refusal struct {
	// Reason is one of a few fixed words: too_large, invalid_timestamp, invalid_record, or a
	// topics.Reason* word.
	Reason string
	Err    error
}

func (e *Refusal) Error() string { return e.Err.Error() }
func (e *Refusal) Unwrap() error { return e.Err }

// ReasonOf returns the reason of a refusal, or "other".
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return "other"
}

// check decides how r is sent: refusal is set when the target topic would refuse r (and says
// exactly why), alone when r may fit only in a batch of its own (it is larger than the
// producers' batch bound, yet compression or the exact framing may let the broker accept it).
func (w *Worker) check(r *record.Record) (alone bool, refusal error) {
	if r.Accept != nil {
		if err := r.Accept.Refusal(r.Key(), r.Msg.Timestamp, w.cfg.Clock.now()); err != nil {
			var re *topics.RefusedError
			reason := "invalid_record"
			if errors.As(err, &re) {
				reason = re.Reason
			}
			return false, &Refusal{Reason: reason, Err: fmt.Errorf("%w: %w", ErrRefused, err)}
		}
	}
	if r.Limit <= 0 || r.Msg.ByteSize(2) <= batchBound(r.Limit, w.cfg.Compressed) {
		return false, nil
	}
	if n := aloneBytes(&r.Msg); n > r.Limit && !w.cfg.Compressed {
		return false, &Refusal{Reason: "too_large", Err: fmt.Errorf("%w: it makes a batch of %d bytes by itself "+
			"and target topic %q has max.message.bytes %d: raise max.message.bytes of the target topic (and the brokers' "+
			"message.max.bytes if needed), or set producer.compression if the record compresses well", ErrRefused, n, r.Msg.Topic, r.Limit)}
	}
	return true, nil
}

// refusal wraps the broker's verdict on a record that was sent alone.
func refusal(r *record.Record, err error) error {
	reason := "invalid_record"
	switch {
	case errors.Is(err, sarama.ErrMessageSizeTooLarge), errors.Is(err, sarama.ErrMessageSetSizeTooLarge):
		reason = "too_large"
	case errors.Is(err, sarama.ErrInvalidTimestamp):
		reason = "invalid_timestamp"
	}
	return &Refusal{Reason: reason, Err: fmt.Errorf("%w: sent alone (%d bytes uncompressed), target topic %q refused it: %w",
		ErrRefused, r.Size, r.Msg.Topic, err)}
}

// refused applies the refused-record policy to r.
func (w *Worker) refused(ctx context.Context, r *record.Record, err error) {
	topic, part := r.Track.Topic(), r.Track.Partition()
	reason := ReasonOf(err)
	fields := []zap.Field{zap.String("topic", topic), zap.Int32("partition", part), zap.Int64("offset", r.Offset),
		zap.Int64("size", r.Size), zap.Int("limit", r.Limit), zap.String("reason", reason), zap.Error(err)}
	switch w.cfg.Policy {
	case config.RefusedSkip:
		w.noteSkip(r, err)
	case config.RefusedDeadLetter:
		if derr := w.cfg.DeadLetter.Write(ctx, r, err); derr != nil {
			w.fail(r, fmt.Errorf("%w; writing it to the dead-letter topic failed too: %w", err, derr))
			return
		}
		w.once(refusalKey{topic, reason}, "wrote a record the target refuses to the dead-letter topic "+
			"(producer.refused_policy: dead_letter); further ones of this topic for this reason are counted, not logged", fields)
	default:
		// The records before it in its partition are fine: let them land (or fail) first, so
		// that the target holds everything up to the refused record when the mirror stops.
		w.settle(ctx, r, r.Seq)
		w.fail(r, fmt.Errorf("%w (or set producer.refused_policy to skip or dead_letter to go on without it)", err))
		return
	}
	w.skipped(r, err)
}

// noteSkip logs, once per topic and reason, that a refused record is skipped
// (producer.refused_policy: skip).
func (w *Worker) noteSkip(r *record.Record, err error) {
	topic, reason := r.Track.Topic(), ReasonOf(err)
	w.once(refusalKey{topic, reason}, "skipped a record the target refuses (producer.refused_policy: skip); "+
		"further ones of this topic for this reason are counted in kmirror_records_skipped_total, not logged",
		[]zap.Field{zap.String("topic", topic), zap.Int32("partition", r.Track.Partition()), zap.Int64("offset", r.Offset),
			zap.Int64("size", r.Size), zap.Int("limit", r.Limit), zap.String("reason", reason), zap.Error(err)})
}

// skipped settles a record not copied (err says why): it is counted and acknowledged in its
// tracker, so that its partition's position moves past it (the records before it are still
// waited for).
func (w *Worker) skipped(r *record.Record, err error) {
	w.cfg.Observer.Skipped(w.cfg.ID, r, err)
	r.Track.Ack(r.Seq)
	w.cfg.Records.Put(r)
}

type refusalKey struct{ topic, reason string }

// once logs msg at warning level the first time key is seen.
func (w *Worker) once(key any, msg string, fields []zap.Field) {
	if _, seen := w.logged.LoadOrStore(key, true); !seen {
		w.cfg.Log.Warn(msg, fields...)
	}
}

// ErrFromTarget is the error Observer.Skipped is given for a record not copied because its
// provenance header names the target cluster (topics.provenance_header): it came from there.
var ErrFromTarget = errors.New("the record came from the target cluster (its " + config.OriginHeader +
	" header names it): not copied back")

type fromTargetKey struct{ topic string }

// fromTarget lets go of a record that came from the target: it is counted, the first one of
// each topic is logged, and it is settled (skipped). Under exactly-once it is held in the open
// transaction instead (Txn.Skip) and settled when that commits.
func (w *Worker) fromTarget(r *record.Record) {
	w.noteFromTarget(r)
	w.skipped(r, ErrFromTarget)
}

// noteFromTarget logs the first record of each topic that came from the target.
func (w *Worker) noteFromTarget(r *record.Record) {
	topic := r.Track.Topic()
	if _, seen := w.logged.LoadOrStore(fromTargetKey{topic}, true); !seen {
		w.cfg.Log.Info("not copying records that came from the target cluster (topics.provenance_header: their "+
			config.OriginHeader+" header names it); further ones of this topic are counted in "+
			"kmirror_records_from_target_skipped_total, not logged",
			zap.String("topic", topic), zap.Int32("partition", r.Track.Partition()), zap.Int64("offset", r.Offset))
	}
}
