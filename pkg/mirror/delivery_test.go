package mirror

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/telemetry"
)

// freezeProduce makes the target take produce requests and never answer them, as a frozen
// broker does, until the returned function (or the test's cleanup) lets them through.
func freezeProduce(t *testing.T, p *pair) (unfreeze func()) {
	release := make(chan struct{})
	var once sync.Once
	unfreeze = func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze)
	fake := p.us.Fake()
	fake.KeepControl()
	fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		fake.SleepControl(func() { <-release })
		return nil, nil, false
	})
	return unfreeze
}

// TestHungTargetFailsThePartitionAfterTheDeliveryTimeout freezes the target's produce handling
// (requests are taken and never answered) and expects the mirror to give up after
// producer.delivery_timeout, naming the partition and the first offset not on the target,
// without committing anything it did not see acknowledged, and to stop within a bounded time.
func TestHungTargetFailsThePartitionAfterTheDeliveryTimeout(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	produce(t, p.europe, numbered("orders", 1, 0, 50)...)

	unfreeze := freezeProduce(t, p)

	cfg := p.config("orders")
	cfg.Producer.DeliveryTimeout = 3 * time.Second
	cfg.Target.ReadTimeout = time.Minute // sarama alone would wait this long for one attempt
	m := start(t, cfg)
	began := time.Now()
	var runErr error
	select {
	case runErr = <-m.done:
		m.done = nil
	case <-time.After(45 * time.Second):
		t.Fatal("the mirror kept waiting on a hung target past producer.delivery_timeout")
	}
	took := time.Since(began)
	unfreeze()
	if runErr == nil || !strings.Contains(runErr.Error(), "orders/0") || !strings.Contains(runErr.Error(), "producer.delivery_timeout") {
		t.Fatalf("Run = %v, want an error naming orders/0 and producer.delivery_timeout", runErr)
	}
	if took > 30*time.Second {
		t.Fatalf("stopping took %s with delivery_timeout 3s", took)
	}
	if got := committed(t, p.europe, "kmirror", "orders")[0]; got > 0 {
		t.Fatalf("committed %d although the target acknowledged nothing", got)
	}
}

// TestStopWithAHungTargetIsBoundedAndHonest stops the mirror while the target takes produce
// requests and never answers them: the whole stop (drain, final commit, producers, leaving the
// group, admin clients) must end within shutdown.timeout plus a little, report that it was not
// clean, and commit nothing the target did not acknowledge.
func TestStopWithAHungTargetIsBoundedAndHonest(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	produce(t, p.europe, numbered("orders", 2, 0, 40)...)

	freezeProduce(t, p)

	cfg := p.config("orders")
	cfg.Shutdown.Timeout = 3 * time.Second
	cfg.Target.ReadTimeout = time.Minute
	m := start(t, cfg)
	waitFor(t, "the mirror in its group session", 30*time.Second, func() bool { return m.m.Ready() == nil })
	time.Sleep(time.Second) // let the producers send into the hung target
	began := time.Now()
	err := m.stop(t)
	took := time.Since(began)
	if took > cfg.Shutdown.Timeout+2*time.Second {
		t.Fatalf("stop took %s with shutdown.timeout %s", took, cfg.Shutdown.Timeout)
	}
	if err == nil || !strings.Contains(err.Error(), "not clean") {
		t.Fatalf("Run = %v after a stop that could not drain, want it to say the stop was not clean", err)
	}
	for part, off := range committed(t, p.europe, "kmirror", "orders") {
		if off > 0 {
			t.Fatalf("partition %d committed %d although the target acknowledged nothing", part, off)
		}
	}
}

// TestHungTargetIsReportedStalledWithItsBacklogAndAge: the target takes produce requests and
// never answers. Within telemetry.stall_after the partition is reported stalled (metric, and
// /readyz naming it), while the backlog and the age of the oldest unmirrored record keep being
// reported — not only when records complete. When the target answers again, the stall clears.
func TestHungTargetIsReportedStalledWithItsBacklogAndAge(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	produce(t, p.europe, numbered("orders", 1, 0, 50)...)

	unfreeze := freezeProduce(t, p)

	cfg := p.config("orders")
	cfg.Telemetry.StallAfter = 2 * time.Second
	cfg.Target.ReadTimeout = time.Minute
	reg := prometheus.NewRegistry()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Options{Log: zaptest.NewLogger(t), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, "the partition reported stalled on /readyz", 30*time.Second, func() bool {
		err := m.Ready()
		return err != nil && strings.Contains(err.Error(), "stalled") && strings.Contains(err.Error(), "orders/0")
	})
	gauge := func(g *telemetry.PartitionGauge) float64 { v, _ := g.Value("orders", 0); return v }
	if s, n := gauge(metrics.Stalled), gauge(metrics.Unmirrored); s != 1 || n != 50 {
		t.Fatalf("stalled %v unmirrored %v, want 1 and the 50 records waiting", s, n)
	}
	first := gauge(metrics.RPO)
	time.Sleep(2 * time.Second)
	if later := gauge(metrics.RPO); first <= 0 || later < first+1 {
		t.Fatalf("rpo %v then %v: the age of the oldest unmirrored record must grow while nothing completes", first, later)
	}

	unfreeze()
	waitFor(t, "the stall to clear once the target answers", 30*time.Second, func() bool {
		return m.Ready() == nil && gauge(metrics.Stalled) == 0 && gauge(metrics.Unmirrored) == 0
	})
}

// TestNoMatchingTopicIsSaidOnReadyz: a topics.include that matches nothing is not "joining or
// rebalancing": /readyz says that no source topic matches, and which patterns.
func TestNoMatchingTopicIsSaidOnReadyz(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	m := start(t, p.config("payments\\..*"))
	waitFor(t, "readiness to name the patterns", 30*time.Second, func() bool {
		err := m.m.Ready()
		return err != nil && strings.Contains(err.Error(), "no source topic matches") && strings.Contains(err.Error(), `payments\\..*`)
	})
}

// TestTransactionMarkerAtTheLogEndIsNotABacklog: a transactional topic at rest ends with a commit
// marker that no reader of committed records is given, so the mirrored position stays one below
// the log end. That is nothing to mirror: no backlog, no RPO, not stalled, ready.
func TestTransactionMarkerAtTheLogEndIsNotABacklog(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "payments", 1, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.europe.Addrs()...), kgo.TransactionalID("payments-writer"),
		kgo.DefaultProduceTopic("payments"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i, commit := range []bool{true, false, true} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 10 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i, "-", j))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := p.config("payments")
	cfg.Telemetry.StallAfter = 2 * time.Second
	reg := prometheus.NewRegistry()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Options{Log: zaptest.NewLogger(t), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the committed records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "payments") == 20 })
	gauge := func(g *telemetry.PartitionGauge) float64 { v, _ := g.Value("payments", 0); return v }
	waitFor(t, "no backlog once the marker is known to be all that is left", 30*time.Second, func() bool {
		return gauge(metrics.Unmirrored) == 0 && gauge(metrics.RPO) == 0
	})
	time.Sleep(4 * time.Second) // past stall_after
	if err := m.Ready(); err != nil || gauge(metrics.Stalled) != 0 || gauge(metrics.Unmirrored) != 0 {
		t.Fatalf("a topic at rest after a transaction: ready %v, stalled %v, unmirrored %v", err, gauge(metrics.Stalled), gauge(metrics.Unmirrored))
	}
}
