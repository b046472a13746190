package telemetry

import (
	"runtime"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kmirror/kmirror/pkg/version"
)

// Metrics are kmirror's own Prometheus metrics. Build them with NewMetrics; the data path reaches
// per-topic children through Topic, which caches them, so no label lookup happens per record.
type Metrics struct {
	recordsMirrored *prometheus.CounterVec
	bytesMirrored   *prometheus.CounterVec
	recordsSkipped  *prometheus.CounterVec

	// ReplicationLatency is the time from a record's source timestamp to the target's
	// acknowledgement, in seconds.
	ReplicationLatency prometheus.Histogram
	// ConsumerLag is, per source partition, the high watermark minus the committed offset.
	ConsumerLag *prometheus.GaugeVec
	// ProduceErrors counts records that could not be produced, by kind (oversize, fatal).
	ProduceErrors *prometheus.CounterVec
	// Rebalances counts consumer-group sessions started (each follows a rebalance).
	Rebalances prometheus.Counter
	// AssignedPartitions is the number of source partitions this process owns.
	AssignedPartitions prometheus.Gauge
	// CommitLatency is how long one commit of source offsets took, in seconds.
	CommitLatency prometheus.Histogram
	// ConsumerErrors counts errors the source consumer group reported (failed commits among them).
	ConsumerErrors prometheus.Counter
	// TopicsDiscovered counts source topics that started to be mirrored.
	TopicsDiscovered prometheus.Counter
	// TargetTopicsCreated counts topics kmirror created on the target.
	TargetTopicsCreated prometheus.Counter
	// TargetPartitionsAdded counts partitions kmirror added to target topics.
	TargetPartitionsAdded prometheus.Counter
	// Ready is 1 while /readyz would answer 200.
	Ready prometheus.Gauge

	reg    prometheus.Registerer
	topics sync.Map // topic → *TopicMetrics
}

// TopicMetrics are the counters of one source topic.
type TopicMetrics struct {
	// Records and Bytes count records mirrored (acknowledged by the target) and their key +
	// value bytes.
	Records prometheus.Counter
	Bytes   prometheus.Counter
	// Skipped counts records skipped under the oversize skip policy.
	Skipped prometheus.Counter
}

// NewMetrics registers kmirror's metrics, the build info and the Go and process collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		recordsMirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_records_mirrored_total", Help: "Records acknowledged by the target, by source topic.",
		}, []string{"topic"}),
		bytesMirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_bytes_mirrored_total", Help: "Key and value bytes acknowledged by the target, by source topic.",
		}, []string{"topic"}),
		recordsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_records_skipped_total", Help: "Records larger than the target accepts, skipped under producer.oversize_policy=skip.",
		}, []string{"topic"}),
		ReplicationLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kmirror_replication_latency_seconds",
			Help:    "Time from a record's source timestamp to the target's acknowledgement.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 600, 20),
		}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kmirror_consumer_lag_records", Help: "Source high watermark minus committed offset, per owned partition.",
		}, []string{"topic", "partition"}),
		ProduceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_produce_errors_total", Help: "Records that could not be produced, by kind (oversize, fatal).",
		}, []string{"kind"}),
		Rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_rebalances_total", Help: "Consumer-group sessions started on the source (one per rebalance).",
		}),
		AssignedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_assigned_partitions", Help: "Source partitions this process currently owns.",
		}),
		CommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kmirror_commit_latency_seconds", Help: "Duration of one commit of source offsets.",
			Buckets: prometheus.ExponentialBucketsRange(0.0005, 10, 14),
		}),
		ConsumerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_consumer_errors_total", Help: "Errors reported by the source consumer group, failed commits among them.",
		}),
		TopicsDiscovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_topics_discovered_total", Help: "Source topics that started to be mirrored.",
		}),
		TargetTopicsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_topics_created_total", Help: "Topics created on the target.",
		}),
		TargetPartitionsAdded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_partitions_added_total", Help: "Partitions added to target topics to follow the source.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_ready", Help: "1 when connected to both clusters and in a consumer-group session, else 0.",
		}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmirror_build_info", Help: "Always 1; the labels say which build runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version.Version, runtime.Version()).Set(1)

	for _, c := range []prometheus.Collector{
		m.recordsMirrored, m.bytesMirrored, m.recordsSkipped, m.ReplicationLatency, m.ConsumerLag,
		m.ProduceErrors, m.Rebalances, m.AssignedPartitions, m.CommitLatency, m.ConsumerErrors,
		m.TopicsDiscovered, m.TargetTopicsCreated, m.TargetPartitionsAdded, m.Ready, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Topic returns the counters of a source topic, creating them on first use.
func (m *Metrics) Topic(topic string) *TopicMetrics {
	if t, ok := m.topics.Load(topic); ok {
		return t.(*TopicMetrics)
	}
	t := &TopicMetrics{
		Records: m.recordsMirrored.WithLabelValues(topic),
		Bytes:   m.bytesMirrored.WithLabelValues(topic),
		Skipped: m.recordsSkipped.WithLabelValues(topic),
	}
	actual, _ := m.topics.LoadOrStore(topic, t)
	return actual.(*TopicMetrics)
}

// SetLag sets a partition's consumer lag.
func (m *Metrics) SetLag(topic string, partition int32, lag int64) {
	m.ConsumerLag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(lag))
}

// ForgetPartition removes the series of a partition this process no longer owns.
func (m *Metrics) ForgetPartition(topic string, partition int32) {
	m.ConsumerLag.DeleteLabelValues(topic, strconv.Itoa(int(partition)))
}

// RegisterWorkerGauges exports, for each worker, its inbox occupancy and its in-flight records,
// read at scrape time from the given functions (so the data path pays nothing for them).
func (m *Metrics) RegisterWorkerGauges(workers int, records, bytes, inFlight func(worker int) float64) error {
	for _, g := range []struct {
		name, help string
		fn         func(int) float64
	}{
		{"kmirror_ring_records", "Records waiting in a worker's inbox.", records},
		{"kmirror_ring_bytes", "Bytes waiting in a worker's inbox.", bytes},
		{"kmirror_producer_in_flight_records", "Records handed to a worker's producer and not yet acknowledged.", inFlight},
	} {
		for w := 0; w < workers; w++ {
			fn := g.fn
			c := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: g.name, Help: g.help, ConstLabels: prometheus.Labels{"worker": strconv.Itoa(w)},
			}, func() float64 { return fn(w) })
			if err := m.reg.Register(c); err != nil {
				return err
			}
		}
	}
	return nil
}
