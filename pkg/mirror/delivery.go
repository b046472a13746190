package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/slots"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
	"github.com/kmirror/kmirror/pkg/worker"
)

// exactlyOnce is the wiring of delivery.mode exactly_once: the slots' transactional producers,
// the client that reads the positions back, and the hooks the handler and the consumer group
// take. nil in at_least_once.
type exactlyOnce struct {
	slots    *delivery.Slots
	client   sarama.Client
	strategy *slots.Strategy
	metadata func(string) string // set once the handler exists
	// claims returns what the handler still claims (set once the handler exists).
	claims func() map[string][]int32
	// recover reads the source group's committed offsets (set once the source client exists).
	recover func(map[string][]int32) (map[source.TopicPartition]source.Committed, error)
	// stopKeep ends the goroutine that keeps the positions fresh; kept is closed once it has.
	stopKeep context.CancelFunc
	kept     chan struct{}
}

// openExactlyOnce opens what exactly-once delivery needs on the target; nil in at_least_once.
func (m *Mirror) openExactlyOnce(ctx context.Context, prod config.Producer) (*exactlyOnce, error) {
	d := m.cfg.Delivery
	if d.Mode != config.ExactlyOnce {
		return nil, nil
	}
	strategy, err := slots.NewStrategy(slots.Config{Slots: d.Slots})
	if err != nil {
		return nil, fmt.Errorf("delivery.slots: %w", err)
	}
	cfg := m.target.Config("positions")
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("positions", cfg)
	}
	client, err := m.target.OpenClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("exactly-once: connect to target %s: %w", m.target.Alias(), err)
	}
	eo := &exactlyOnce{client: client, strategy: strategy}
	eo.metadata = func(string) string { return "" }
	eo.recover = func(map[string][]int32) (map[source.TopicPartition]source.Committed, error) { return nil, nil }
	prefix := d.TransactionalPrefix(m.cfg.Consumer.GroupID, m.cfg.Source.Alias)
	// A slot's producer is kmirror's transactional produce pipeline. Its transaction timeout is
	// long enough for a commit that rides out a failing broker within the delivery timeout; a
	// member that dies leaves its transaction to the next holder of the id, whose InitProducerId
	// aborts it at once.
	open := worker.OpenTxn(m.target.Bootstrap(), prod, prod.DeliveryTimeout+30*time.Second, m.log,
		func(id string, bound int) *sarama.Config {
			name := fmt.Sprintf("txn-%s-%d", id, bound)
			c := m.target.Config(name)
			if m.opts.SaramaClients != nil {
				m.opts.SaramaClients(name, c)
			}
			return c
		})
	var tracer trace.Tracer
	if m.opts.Tracing.Enabled {
		tracer = m.opts.Tracing.Tracer
	}
	eo.slots, err = delivery.New(delivery.Config{
		Slots: d.Slots, Prefix: prefix, Group: d.Positions(m.cfg.Consumer.GroupID, m.cfg.Source.Alias), Open: open,
		Legacy: d.LegacyPositions(m.cfg.Consumer.GroupID),
		Recover: func(claims map[string][]int32) (map[source.TopicPartition]source.Committed, error) {
			return eo.recover(claims)
		},
		Recovered: func(from string, n int) {
			if m.opts.Metrics != nil {
				m.opts.Metrics.PositionsRecovered.WithLabelValues(from).Add(float64(n))
			}
		},
		Refresh: d.PositionsRefresh,
		Bound:   worker.BatchBound(m.cfg.Producer.MaxMessageBytes, m.cfg.Producer.Compression != "none"),
		Limits: delivery.Limits{
			Records: d.Transaction.MaxRecords, Bytes: d.Transaction.MaxBytes, Age: d.Transaction.MaxAge,
			Backlog: d.Transaction.BacklogMaxAge,
		},
		Target:   client,
		Metadata: func(topic string) string { return eo.metadata(topic) },
		Observer: transactionObserver{m.opts.Metrics},
		Tracer:   tracer,
		Log:      m.log,
	})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	keepCtx, stopKeep := context.WithCancel(ctx)
	eo.stopKeep, eo.kept = stopKeep, make(chan struct{})
	go func() { defer close(eo.kept); eo.slots.Keep(keepCtx) }()
	return eo, nil
}

// attach gives the hooks what exists only once the handler does: the metadata stored with a
// position, and the source group's committed offsets (where a position missing on the target
// is recovered from).
func (eo *exactlyOnce) attach(h *source.Handler, src source.ClientCluster, group string) {
	eo.metadata = h.Metadata
	eo.claims = h.Claims
	eo.recover = func(claims map[string][]int32) (map[source.TopicPartition]source.Committed, error) {
		return src.Committed(group, claims)
	}
}

// route sends every partition of a slot to one worker, so one goroutine writes the slot's
// transactions.
func (eo *exactlyOnce) route(workers int) func(string, int32) int {
	return func(topic string, partition int32) int { return eo.slots.Of(topic, partition) % workers }
}

// positionsHook is the handler's Positions hook: open (and fence) the slots of the added
// partitions, keeping those already open, then read where the added partitions resume; nil in
// at_least_once.
func (eo *exactlyOnce) positionsHook(name topics.Namer) func(context.Context, map[string][]int32) (map[source.TopicPartition]source.Committed, error) {
	if eo == nil {
		return nil
	}
	return func(ctx context.Context, claims map[string][]int32) (map[source.TopicPartition]source.Committed, error) {
		if err := eo.slots.Open(ctx, claims); err != nil {
			return nil, err
		}
		return eo.slots.Positions(ctx, claims, name)
	}
}

// releasedHook is the handler's Released hook: close the producers of the slots no claim is
// left in (they drained and committed); nil in at_least_once.
func (eo *exactlyOnce) releasedHook() func(map[string][]int32) {
	if eo == nil {
		return nil
	}
	return func(released map[string][]int32) { eo.slots.Release(released, eo.claims()) }
}

// close shuts the producers and the client down, once the workers have stopped.
func (eo *exactlyOnce) close() error {
	eo.stopKeep()
	<-eo.kept
	eo.slots.Close()
	return eo.client.Close()
}

// transactionObserver counts transactions in the metrics.
type transactionObserver struct{ m *telemetry.Metrics }

func (o transactionObserver) Committed(d time.Duration, records int) {
	if o.m == nil {
		return
	}
	o.m.TransactionCommitLatency.Observe(d.Seconds())
	o.m.Transactions.WithLabelValues("committed").Inc()
	o.m.TransactionRecords.Add(float64(records))
}

func (o transactionObserver) Aborted(error) {
	if o.m != nil {
		o.m.Transactions.WithLabelValues("aborted").Inc()
	}
}
