package telemetry

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The per-partition backlog gauges (kmirror_unmirrored_records, kmirror_unmirrored_bytes,
// kmirror_rpo_seconds, kmirror_partition_stalled) are read from a table at scrape time rather
// than kept as four prometheus gauges per partition. With 10,000 partitions the gauges, their
// label pairs and their vectors' maps held 20-25 MiB for as long as the partitions were owned
// (a fifth of kmirror's live heap at that scale, and three times that resident with
// runtime.gc_percent 200); the table holds one small entry per partition, and a scrape makes
// its series and lets them go.

// backlogTable holds the last backlog set for each partition this process owns.
type backlogTable struct {
	mu    sync.Mutex
	parts map[partitionKey]*backlog
}

// backlog is one partition's entry: its partition number as a label value, made once, and the
// values last set.
type backlog struct {
	label          string
	records, bytes float64
	age            float64
	stalled        float64
}

func newBacklogTable() *backlogTable {
	return &backlogTable{parts: make(map[partitionKey]*backlog)}
}

// set records a partition's backlog; it allocates only the first time it sees the partition.
func (t *backlogTable) set(topic string, partition int32, records, bytes int64, age float64, stalled bool) {
	key := partitionKey{topic, partition}
	t.mu.Lock()
	b, ok := t.parts[key]
	if !ok {
		b = &backlog{label: strconv.Itoa(int(partition))}
		t.parts[key] = b
	}
	b.records, b.bytes, b.age, b.stalled = float64(records), float64(bytes), age, 0
	if stalled {
		b.stalled = 1
	}
	t.mu.Unlock()
}

func (t *backlogTable) forget(topic string, partition int32) {
	t.mu.Lock()
	delete(t.parts, partitionKey{topic, partition})
	t.mu.Unlock()
}

// PartitionGauge is one of the per-partition backlog gauges, labelled topic and partition: one
// series per partition SetBacklog set and ForgetPartition has not removed, read at scrape time.
type PartitionGauge struct {
	desc  *prometheus.Desc
	table *backlogTable
	value func(*backlog) float64
}

func newPartitionGauge(t *backlogTable, name, help string, value func(*backlog) float64) *PartitionGauge {
	return &PartitionGauge{desc: prometheus.NewDesc(name, help, []string{"topic", "partition"}, nil), table: t, value: value}
}

// Value returns the gauge's value for topic/partition, and whether the series is exported.
func (g *PartitionGauge) Value(topic string, partition int32) (float64, bool) {
	g.table.mu.Lock()
	defer g.table.mu.Unlock()
	b, ok := g.table.parts[partitionKey{topic, partition}]
	if !ok {
		return 0, false
	}
	return g.value(b), true
}

// Describe implements prometheus.Collector.
func (g *PartitionGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector. It copies the values out under the table's lock and
// sends them after, so that a slow scrape does not hold up SetBacklog.
func (g *PartitionGauge) Collect(ch chan<- prometheus.Metric) {
	type series struct {
		topic, partition string
		v                float64
	}
	g.table.mu.Lock()
	out := make([]series, 0, len(g.table.parts))
	for k, b := range g.table.parts {
		out = append(out, series{k.topic, b.label, g.value(b)})
	}
	g.table.mu.Unlock()
	for _, s := range out {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, s.v, s.topic, s.partition)
	}
}
