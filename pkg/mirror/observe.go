package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
	"github.com/kmirror/kmirror/pkg/worker"
)

// observe makes the data path (workers, source handler) and the topic sync report to metrics,
// and sampled records to tracing, with the status board told what /status reports.
func (m *Mirror) observe(metrics *telemetry.Metrics, tracing *telemetry.Tracing) error {
	o := newObserver(metrics, tracing, len(m.inboxes))
	o.board = m.board
	if m.cfg.Heartbeats.Enabled {
		o.heartbeatTopic = m.cfg.HeartbeatTopic()
	}
	if err := o.workerGauges(m); err != nil {
		return fmt.Errorf("register worker metrics: %w", err)
	}
	m.workerObserver, m.sourceObserver = o, o
	m.topicEvents = topics.Events{
		Discovered:      func(n int) { metrics.TopicsDiscovered.Add(float64(n)) },
		TopicCreated:    metrics.TargetTopicsCreated.Inc,
		PartitionsAdded: func(n int) { metrics.TargetPartitionsAdded.Add(float64(n)) },
		ConfigsAltered:  func(n int) { metrics.TargetConfigsAltered.Add(float64(n)) },
		ACLsCreated:     func(n int) { metrics.TargetACLsCreated.Add(float64(n)) },
		CycleSkipped:    metrics.CycleTopicsSkipped.Inc,
	}
	fullFetch, incrementalFetch := metrics.FetchRequests.WithLabelValues("new"), metrics.FetchRequests.WithLabelValues("incremental")
	m.fetchEvents = fetch.Events{
		Answered: func(full bool, named, forgotten int) {
			if full {
				fullFetch.Inc()
			} else {
				incrementalFetch.Inc()
			}
			metrics.FetchPartitionsNamed.Add(float64(named))
			metrics.FetchPartitionsForgotten.Add(float64(forgotten))
		},
		Refused:    metrics.FetchErrors.WithLabelValues("refused").Inc,
		Unanswered: metrics.FetchErrors.WithLabelValues("unanswered").Inc,
		Held:       func(bytes int64) { metrics.FetchHeld.Set(float64(bytes)) },
	}
	return nil
}

// observer turns the data path's events into metrics and, for sampled records, into the spans of
// each stage: consume (fetched → in the inbox), queue (in the inbox → sent), produce (sent →
// acknowledged by the target).
type observer struct {
	metrics  *telemetry.Metrics
	tracing  *telemetry.Tracing
	inFlight []atomic.Int64
	// assigned counts the source partitions owned (kmirror_assigned_partitions), for the memory
	// bound.
	assigned atomic.Int64
	// heartbeatTopic is the flow's heartbeat topic on the source ("" without heartbeats).
	heartbeatTopic string
	// board, when set, is told what /status reports.
	board *status.Board
}

func newObserver(m *telemetry.Metrics, t *telemetry.Tracing, workers int) *observer {
	return &observer{metrics: m, tracing: t, inFlight: make([]atomic.Int64, workers)}
}

func (o *observer) Sent(w int, _ *record.Record) { o.inFlight[w].Add(1) }

func (o *observer) Acked(w int, r *record.Record, at time.Time) {
	o.inFlight[w].Add(-1)
	tm := o.metrics.Topic(r.Track.Topic())
	tm.Records.Inc()
	tm.Bytes.Add(float64(r.Size))
	if !r.Msg.Timestamp.IsZero() {
		o.metrics.ReplicationLatency.Observe(at.Sub(r.Msg.Timestamp).Seconds())
	}
	o.heartbeatAcked(r, at)
	if r.Span != nil {
		o.endSpans(r, at, nil)
	}
}

func (o *observer) Skipped(w int, r *record.Record, err error) {
	if r.Handed {
		o.inFlight[w].Add(-1)
	}
	if errors.Is(err, worker.ErrFromTarget) {
		// Not a refusal: the record came from the target, and not copying it is the point.
		o.metrics.Topic(r.Track.Topic()).FromTarget.Inc()
		if r.Span != nil {
			r.Span.SetAttributes(attribute.Bool("kmirror.from_target", true))
			o.endSpans(r, time.Now(), nil)
		}
		return
	}
	o.metrics.Topic(r.Track.Topic()).Skipped.Inc()
	o.metrics.ProduceError(telemetry.ErrorRefused).Inc()
	if r.Span != nil {
		o.endSpans(r, time.Now(), err)
	}
}

func (o *observer) Failed(w int, r *record.Record, err error) {
	if r.Handed {
		o.inFlight[w].Add(-1)
	}
	o.metrics.ProduceError(telemetry.ErrorFatal).Inc()
	if r.Span != nil {
		o.endSpans(r, time.Now(), err)
	}
}

// endSpans records the stages of a sampled record as children of its mirror span, with the
// times the data path noted, then ends the mirror span.
func (o *observer) endSpans(r *record.Record, at time.Time, err error) {
	ctx := trace.ContextWithSpan(context.Background(), r.Span)
	stage := func(name string, from, to time.Time, attrs ...attribute.KeyValue) {
		if from.IsZero() || to.IsZero() {
			return
		}
		_, s := o.tracing.Tracer.Start(ctx, name, trace.WithTimestamp(from), trace.WithAttributes(attrs...))
		s.End(trace.WithTimestamp(to))
	}
	stage("kmirror.consume", r.Fetched, r.Enqueued)
	stage("kmirror.queue", r.Enqueued, r.Sent)
	stage("kmirror.produce", r.Sent, at,
		attribute.String("messaging.destination.name", r.Msg.Topic),
		attribute.Int("messaging.kafka.destination.partition", int(r.Msg.Partition)),
		attribute.Int64("messaging.kafka.destination.offset", r.Msg.Offset))
	if err != nil {
		r.Span.RecordError(err)
	}
	r.Span.End(trace.WithTimestamp(at))
}

// Assigned also makes the topic's counters, so that each is exported at 0 before it first counts.
func (o *observer) Assigned(topic string, partition int32) {
	o.metrics.Topic(topic)
	o.metrics.AssignedPartitions.Inc()
	o.assigned.Add(1)
	if o.board != nil {
		o.board.Assigned(topic, partition)
	}
}

func (o *observer) Revoked(topic string, partition int32) {
	o.metrics.AssignedPartitions.Dec()
	o.assigned.Add(-1)
	o.metrics.ForgetPartition(topic, partition)
	if o.board != nil {
		o.board.Revoked(topic, partition)
	}
}

func (o *observer) Backlog(topic string, partition int32, b source.Backlog) {
	o.metrics.SetBacklog(topic, partition, b.Records, b.Bytes, b.Age.Seconds(), b.Stalled)
	if o.board != nil {
		o.board.Backlog(topic, partition, b.Records, b.Bytes, b.Age, b.Stalled)
	}
}

func (o *observer) Committed(d time.Duration) { o.metrics.CommitLatency.Observe(d.Seconds()) }

func (o *observer) SessionStarted() { o.metrics.Rebalances.Inc() }

func (o *observer) GroupError(err error) {
	o.metrics.ConsumerErrors.Inc()
	if o.board != nil {
		o.board.Error("source consumer group", err)
	}
}

func (o *observer) CommitFailed(err error) {
	o.metrics.CommitErrors.Inc()
	if o.board != nil {
		o.board.Error("commit of source offsets", err)
	}
}

func (o *observer) SourceLost(topic string, n int64) {
	o.metrics.Topic(topic).Lost.Add(float64(n))
}

func (o *observer) workerGauges(m *Mirror) error {
	if err := o.metrics.RegisterMemoryBound(func() float64 {
		return float64(m.cfg.MemoryBound(int(o.assigned.Load())).Total())
	}); err != nil {
		return err
	}
	return o.metrics.RegisterWorkerGauges(len(m.inboxes),
		func(w int) float64 { return float64(m.inboxes[w].Count()) }, // records, not batches
		func(w int) float64 { return float64(m.inboxes[w].Bytes()) },
		func(w int) float64 { return float64(o.inFlight[w].Load()) })
}
