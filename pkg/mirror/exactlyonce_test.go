package mirror

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

// withExactlyOnce turns cfg to exactly-once delivery with small slots and transactions.
func withExactlyOnce(t *testing.T, cfg *config.Config) *config.Config {
	t.Helper()
	cfg.Delivery.Mode = config.ExactlyOnce
	cfg.Delivery.Slots = 4
	cfg.Delivery.Transaction.MaxRecords = 500
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestExactlyOnceResumesFromThePositionsOnTheTarget: with exactly-once delivery the source
// positions travel in the transactions to the positions group on the target, and a member
// resumes from there, not from the source group: a restart after the source group's offsets
// were moved back to the start writes nothing twice.
func TestExactlyOnceResumesFromThePositionsOnTheTarget(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 6, nil)
	produce(t, p.europe, numbered("orders", 6, 0, 3000)...)
	cfg := withExactlyOnce(t, p.config("orders"))

	positions := func() int64 {
		var n int64
		for _, o := range committed(t, p.us, "kmirror-europe-positions", "orders") {
			n += o
		}
		return n
	}
	first := start(t, cfg)
	waitFor(t, "positions on the target reach 3000", 30*time.Second, func() bool { return positions() == 3000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
		t.Fatalf("after the first run: %s", rep)
	}

	// The source group's offsets back to the start: an at-least-once mirror would copy all
	// 3000 records again.
	adm := admin(t, p.europe)
	rewind := kadm.Offsets{}
	for part := range int32(6) {
		rewind.Add(kadm.Offset{Topic: "orders", Partition: part, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(context.Background(), "kmirror", rewind); err != nil {
		t.Fatal(err)
	}

	produce(t, p.europe, numbered("orders", 6, 3000, 2000)...)
	second := start(t, cfg)
	waitFor(t, "positions on the target reach 5000", 30*time.Second, func() bool { return positions() == 5000 })
	time.Sleep(500 * time.Millisecond) // give a wrong re-read time to show up as duplicates
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"orders": "orders"})
	if !rep.Exact() {
		t.Fatalf("after a restart with the source group rewound: %s", rep)
	}
}

// positionsSum adds up the source positions stored on the target for topic.
func positionsSum(t *testing.T, p *pair, topic string) int64 {
	var n int64
	for _, o := range committed(t, p.us, "kmirror-europe-positions", topic) {
		n += o
	}
	return n
}

// TestExactlyOnceMembersSplittingAndLeavingWriteNothingTwice: two members share the slots while
// records arrive; one stops; the survivor takes its slots over (fencing it) and resumes from the
// positions on the target: every record once, in order.
func TestExactlyOnceMembersSplittingAndLeavingWriteNothingTwice(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "events", 8, nil)
	cfg := withExactlyOnce(t, p.config("events"))
	a := start(t, cfg)
	b := start(t, cfg)
	produce(t, p.europe, numbered("events", 8, 0, 4000)...)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return positionsSum(t, p, "events") >= 4000 })

	produceDone := make(chan struct{})
	go func() {
		defer close(produceDone)
		for i := range 10 {
			produce(t, p.europe, numbered("events", 8, 4000+i*400, 400)...)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(150 * time.Millisecond)
	if err := a.stop(t); err != nil {
		t.Fatalf("stopping one member: %v", err)
	}
	<-produceDone
	waitFor(t, "the survivor to mirror everything", 60*time.Second, func() bool { return positionsSum(t, p, "events") == 8000 })
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	if rep := compare(t, p, map[string]string{"events": "events"}); !rep.Exact() {
		t.Fatalf("exactly-once with a member leaving: %s", rep)
	}
}

// TestExactlyOnceTransactionsAreTracedAndCounted: every committed transaction gets a
// kmirror.commit span naming its transactional id and record count, and the transaction
// metrics add up to the records mirrored.
func TestExactlyOnceTransactionsAreTracedAndCounted(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 4, nil)
	produce(t, p.europe, numbered("orders", 4, 0, 2000)...)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	metrics, err := telemetry.NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(withExactlyOnce(t, p.config("orders")), Options{Log: zaptest.NewLogger(t), Metrics: metrics, Tracing: telemetry.TracingWith(tp)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, "positions reach 2000", 30*time.Second, func() bool { return positionsSum(t, p, "orders") == 2000 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var spans, inSpans int
	for _, s := range recorder.Ended() {
		if s.Name() != "kmirror.commit" {
			continue
		}
		attrs := map[string]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value
		}
		id, ok := attrs["kmirror.transactional_id"]
		if !ok {
			continue // a commit of the source group's offsets (the lagging hint)
		}
		if !strings.HasPrefix(id.AsString(), "kmirror-") {
			t.Errorf("transactional id %q, want kmirror-<slot>", id.AsString())
		}
		spans++
		inSpans += int(attrs["kmirror.records"].AsInt64())
	}
	committedTxns := testutil.ToFloat64(metrics.Transactions.WithLabelValues("committed"))
	records := testutil.ToFloat64(metrics.TransactionRecords)
	if spans == 0 || inSpans != 2000 || records != 2000 || int(committedTxns) != spans {
		t.Fatalf("%d transaction spans holding %d records; metrics: %v transactions committed, %v records; want one span per "+
			"committed transaction and 2000 records in each count", spans, inSpans, committedTxns, records)
	}
	if n := testutil.CollectAndCount(metrics.TransactionCommitLatency); n != 1 {
		t.Fatalf("commit latency histogram: %d series", n)
	}
}
