package telemetry

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestMetrics(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// touchAll gives every kmirror metric at least one series, so lints and scrapes see them all.
func touchAll(t testing.TB, m *Metrics) {
	t.Helper()
	tm := m.Topic("orders")
	tm.Records.Add(3)
	tm.Bytes.Add(300)
	tm.Skipped.Inc()
	tm.FromTarget.Inc()
	m.ReplicationLatency.Observe(0.012)
	m.SetBacklog("orders", 0, 42, 4200, 3.5, false)
	m.ProduceError(ErrorRefused).Inc()
	m.Rebalances.Inc()
	m.AssignedPartitions.Set(1)
	m.CommitLatency.Observe(0.003)
	m.CommitErrors.Inc()
	m.ConsumerErrors.Inc()
	m.TopicsDiscovered.Inc()
	m.CycleTopicsSkipped.Inc()
	m.TargetTopicsCreated.Inc()
	m.TargetPartitionsAdded.Add(2)
	m.FetchPartitionsNamed.Add(3)
	m.FetchPartitionsForgotten.Inc()
	m.Ready.Set(1)
	if err := m.RegisterWorkerGauges(2,
		func(w int) float64 { return float64(10 + w) },
		func(w int) float64 { return float64(1000 + w) },
		func(w int) float64 { return float64(5 + w) }); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsPassTheLinter(t *testing.T) {
	m, reg := newTestMetrics(t)
	touchAll(t, m)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	// Each collector on its own too, as CollectAndLint sees it.
	for _, c := range []prometheus.Collector{m.ReplicationLatency, m.Unmirrored, m.UnmirroredBytes, m.RPO, m.Stalled, m.ProduceErrors, m.CommitLatency, m.recordsMirrored, m.bytesMirrored} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}

func TestEveryDocumentedMetricIsExported(t *testing.T) {
	m, reg := newTestMetrics(t)
	touchAll(t, m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"kmirror_records_mirrored_total", "kmirror_bytes_mirrored_total", "kmirror_records_skipped_total",
		"kmirror_replication_latency_seconds", "kmirror_unmirrored_records", "kmirror_unmirrored_bytes",
		"kmirror_rpo_seconds", "kmirror_partition_stalled", "kmirror_ring_records",
		"kmirror_ring_bytes", "kmirror_producer_in_flight_records", "kmirror_produce_errors_total",
		"kmirror_rebalances_total", "kmirror_assigned_partitions", "kmirror_commit_latency_seconds",
		"kmirror_commit_errors_total", "kmirror_consumer_errors_total", "kmirror_topics_discovered_total",
		"kmirror_target_topics_created_total", "kmirror_target_partitions_added_total",
		"kmirror_heartbeat_latency_seconds", "kmirror_heartbeat_last_timestamp_seconds",
		"kmirror_heartbeats_emitted_total", "kmirror_heartbeat_errors_total",
		"kmirror_records_from_target_skipped_total", "kmirror_cycle_topics_skipped_total",
		"kmirror_fetch_requests_total", "kmirror_fetch_partitions_named_total",
		"kmirror_fetch_partitions_forgotten_total", "kmirror_fetch_errors_total",
		"kmirror_build_info", "kmirror_ready", "go_goroutines", "process_cpu_seconds_total",
	} {
		if !got[name] {
			t.Errorf("%s is not exported", name)
		}
	}
}

func TestTopicCountersAreCachedAndLabelledByTopic(t *testing.T) {
	m, _ := newTestMetrics(t)
	a := m.Topic("orders")
	if m.Topic("orders") != a {
		t.Fatal("Topic returned new children for a topic it has seen")
	}
	a.Records.Add(2)
	a.Bytes.Add(64)
	m.Topic("payments").Records.Inc()
	want := `
# HELP kmirror_records_mirrored_total Records acknowledged by the target, by source topic.
# TYPE kmirror_records_mirrored_total counter
kmirror_records_mirrored_total{topic="orders"} 2
kmirror_records_mirrored_total{topic="payments"} 1
# HELP kmirror_bytes_mirrored_total Key and value bytes of the records acknowledged by the target, by source topic.
# TYPE kmirror_bytes_mirrored_total counter
kmirror_bytes_mirrored_total{topic="orders"} 64
kmirror_bytes_mirrored_total{topic="payments"} 0
`
	if err := testutil.CollectAndCompare(m.recordsMirrored, strings.NewReader(want), "kmirror_records_mirrored_total"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(m.bytesMirrored, strings.NewReader(want), "kmirror_bytes_mirrored_total"); err != nil {
		t.Fatal(err)
	}
}

func TestTopicIsSafeForConcurrentFirstUse(t *testing.T) {
	m, _ := newTestMetrics(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				m.Topic(fmt.Sprintf("t%d", (g+i)%16)).Records.Inc()
			}
		}()
	}
	wg.Wait()
	if n := testutil.CollectAndCount(m.recordsMirrored); n != 16 {
		t.Fatalf("%d topic series, want 16", n)
	}
	var total float64
	for i := range 16 {
		total += testutil.ToFloat64(m.Topic(fmt.Sprintf("t%d", i)).Records)
	}
	if total != 8*200 {
		t.Fatalf("counted %v records, want %d: an increment went to a child that was replaced", total, 8*200)
	}
}

func TestProduceErrorKindsAreExportedBeforeTheFirstError(t *testing.T) {
	m, _ := newTestMetrics(t)
	m.ProduceError(ErrorRefused).Inc()
	want := `
# HELP kmirror_produce_errors_total Produce errors reported by the target, by kind (refused, fatal).
# TYPE kmirror_produce_errors_total counter
kmirror_produce_errors_total{kind="fatal"} 0
kmirror_produce_errors_total{kind="refused"} 1
`
	if err := testutil.CollectAndCompare(m.ProduceErrors, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	m.ProduceError(ErrorKind(200)).Inc() // out of range counts as fatal
	if got := testutil.ToFloat64(m.ProduceErrors.WithLabelValues("fatal")); got != 1 {
		t.Fatalf("fatal = %v after an out-of-range kind, want 1", got)
	}
	// The vector and the curried children are the same series.
	m.ProduceErrors.WithLabelValues("refused").Inc()
	if got := testutil.ToFloat64(m.ProduceError(ErrorRefused)); got != 2 {
		t.Fatalf("refused = %v, want 2", got)
	}
}

func TestBacklogSeriesAreRemovedWhenThePartitionIsRevoked(t *testing.T) {
	m, _ := newTestMetrics(t)
	m.SetBacklog("orders", 3, 10, 1000, 2, false)
	m.SetBacklog("orders", 3, 7, 700, 90, true)
	m.SetBacklog("orders", 4, 1, 100, 0.5, false)
	if got, _ := m.Unmirrored.Value("orders", 3); got != 7 {
		t.Fatalf("unmirrored = %v, want the last value set, 7", got)
	}
	rpo, _ := m.RPO.Value("orders", 3)
	st, _ := m.Stalled.Value("orders", 3)
	if rpo != 90 || st != 1 {
		t.Fatalf("rpo %v stalled %v, want 90 and 1", rpo, st)
	}
	m.ForgetPartition("orders", 3)
	for _, v := range []*PartitionGauge{m.Unmirrored, m.UnmirroredBytes, m.RPO, m.Stalled} {
		if n := testutil.CollectAndCount(v); n != 1 {
			t.Fatalf("%d series after revoking orders/3, want 1 (orders/4): a stale stall would keep alerting", n)
		}
		if _, ok := v.Value("orders", 3); ok {
			t.Fatal("orders/3 still has a value after it was revoked")
		}
	}
	m.SetBacklog("orders", 3, 5, 500, 1, false) // owned again after a later rebalance
	if got, _ := m.Unmirrored.Value("orders", 3); got != 5 {
		t.Fatalf("unmirrored after re-assignment = %v, want 5", got)
	}
}

// TestBacklogSeriesAreScrapedWithTheirValues reads the per-partition gauges as a scrape does.
func TestBacklogSeriesAreScrapedWithTheirValues(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.SetBacklog("orders", 12, 7, 700, 90, true)
	m.SetBacklog("payments", 0, 0, 0, 0, false)
	want := `
# HELP kmirror_partition_stalled 1 while a partition has records to mirror and none was acknowledged for telemetry.stall_after.
# TYPE kmirror_partition_stalled gauge
kmirror_partition_stalled{partition="0",topic="payments"} 0
kmirror_partition_stalled{partition="12",topic="orders"} 1
# HELP kmirror_rpo_seconds Age of the oldest record not yet mirrored (0 when caught up), per source partition: what losing the source now would cost.
# TYPE kmirror_rpo_seconds gauge
kmirror_rpo_seconds{partition="0",topic="payments"} 0
kmirror_rpo_seconds{partition="12",topic="orders"} 90
# HELP kmirror_unmirrored_bytes Bytes not yet mirrored, estimated from the partition's average record size, per source partition.
# TYPE kmirror_unmirrored_bytes gauge
kmirror_unmirrored_bytes{partition="0",topic="payments"} 0
kmirror_unmirrored_bytes{partition="12",topic="orders"} 700
# HELP kmirror_unmirrored_records Records between the mirrored position and the source's log end, per source partition this process owns.
# TYPE kmirror_unmirrored_records gauge
kmirror_unmirrored_records{partition="0",topic="payments"} 0
kmirror_unmirrored_records{partition="12",topic="orders"} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kmirror_partition_stalled", "kmirror_rpo_seconds",
		"kmirror_unmirrored_bytes", "kmirror_unmirrored_records"); err != nil {
		t.Fatal(err)
	}
}

// TestBacklogOfManyPartitionsHoldsLittleMemory: at 10,000 partitions the four gauges per
// partition, kept as prometheus gauges, held about 2 KiB per partition (20-25 MiB in the
// 10,000-partition benchmark's heap profile). The table holds one small entry.
func TestBacklogOfManyPartitionsHoldsLittleMemory(t *testing.T) {
	m, _ := newTestMetrics(t)
	const parts = 10000
	topics := make([]string, parts/10)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic-%04d", i)
	}
	before := liveHeap()
	for i := range parts {
		m.SetBacklog(topics[i/10], int32(i%10), 5, 500, 1, false)
	}
	per := (liveHeap() - before) / parts
	runtime.KeepAlive(m)
	if per > 300 {
		t.Fatalf("%d bytes held per partition's backlog, want at most 300", per)
	}
	t.Logf("%d bytes per partition", per)
}

// liveHeap is the heap in use by live objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func TestWorkerGaugesAreReadAtScrapeTime(t *testing.T) {
	m, reg := newTestMetrics(t)
	occupancy := []float64{0, 0, 0}
	if err := m.RegisterWorkerGauges(3, func(w int) float64 { return occupancy[w] }, nil, nil); err != nil {
		t.Fatal(err)
	}
	occupancy[2] = 17
	want := `
# HELP kmirror_ring_records Records waiting in a worker's inbox.
# TYPE kmirror_ring_records gauge
kmirror_ring_records{worker="0"} 0
kmirror_ring_records{worker="1"} 0
kmirror_ring_records{worker="2"} 17
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kmirror_ring_records"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "kmirror_ring_bytes"); n != 0 {
		t.Fatal("a nil function must leave its metric out")
	}
	if err := m.RegisterWorkerGauges(3, func(int) float64 { return 0 }, nil, nil); err == nil {
		t.Fatal("registering the worker gauges twice must fail")
	}
}

func TestNewMetricsRefusesARegistryThatHasThem(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("a second NewMetrics on the same registry must fail, not panic or double-count")
	}
	if _, err := NewMetrics(nil); err == nil {
		t.Fatal("NewMetrics(nil) must fail")
	}
}

// TestAckedRecordMetricsDoNotAllocate is what the data path does per acknowledged record.
func TestAckedRecordMetricsDoNotAllocate(t *testing.T) {
	m, _ := newTestMetrics(t)
	topic := strings.Clone("orders")
	m.Topic(topic)
	m.SetBacklog(topic, 1, 0, 0, 0, false)
	allocs := testing.AllocsPerRun(1000, func() {
		tm := m.Topic(topic)
		tm.Records.Inc()
		tm.Bytes.Add(512)
		m.ReplicationLatency.Observe(0.004)
		m.ProduceError(ErrorRefused).Inc()
		m.SetBacklog(topic, 1, 3, 300, 0.5, false)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record, want 0", allocs)
	}
}

func BenchmarkAckedRecordMetrics(b *testing.B) {
	m, _ := newTestMetrics(b)
	topics := []string{"orders", "payments", "audit", "clicks"}
	for _, t := range topics {
		m.Topic(t)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tm := m.Topic(topics[i&3])
			tm.Records.Inc()
			tm.Bytes.Add(512)
			m.ReplicationLatency.Observe(0.004)
			i++
		}
	})
}

func TestMemoryBoundIsReadAtScrapeTime(t *testing.T) {
	m, reg := newTestMetrics(t)
	bound := float64(1 << 20)
	if err := m.RegisterMemoryBound(func() float64 { return bound }); err != nil {
		t.Fatal(err)
	}
	bound = 3 << 20
	want := `
# HELP kmirror_memory_bound_bytes Memory the configuration bounds kmirror to for the source partitions it owns: ring + fetch + in flight + a constant (docs/operations.md).
# TYPE kmirror_memory_bound_bytes gauge
kmirror_memory_bound_bytes 3.145728e+06
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kmirror_memory_bound_bytes"); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterMemoryBound(func() float64 { return 0 }); err == nil {
		t.Fatal("registering the memory bound twice must fail")
	}
}
