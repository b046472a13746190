package telemetry

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kmirror/kmirror/pkg/version"
)

// Metrics are kmirror's own Prometheus metrics, registered on the Registerer given to NewMetrics.
//
// The data path never looks a label up per record: per-topic counters come from Topic, which
// keeps the curried children in a copy-on-write map (a lock-free read, no allocation once the
// topic has been seen); error counters come from ProduceError, an array index; the
// per-partition backlog is a table entry SetBacklog updates and a scrape reads (backlog.go); and
// the per-worker gauges are read from the data path's own counters at scrape time
// (RegisterWorkerGauges), so they cost the data path nothing.
// Every method is safe for concurrent use.
type Metrics struct {
	// ReplicationLatency (kmirror_replication_latency_seconds) is the time from a record's source
	// timestamp to the target's acknowledgement of its copy. Buckets run from 1 ms to an hour, so
	// a catch-up after downtime still reads in minutes; a record older than an hour lands in +Inf
	// (look at kmirror_rpo_seconds then).
	ReplicationLatency prometheus.Histogram
	// Unmirrored (kmirror_unmirrored_records{topic,partition}) is, per owned source partition,
	// the records between the mirrored position and the source's log end (listed on the source:
	// records behind an open transaction count). With UnmirroredBytes, RPO and Stalled it says
	// how much would be lost if the source site were lost now. SetBacklog sets all four and
	// ForgetPartition removes them; they are exported for tests and reads (backlog.go).
	Unmirrored *PartitionGauge
	// UnmirroredBytes (kmirror_unmirrored_bytes{topic,partition}) estimates their bytes from the
	// partition's average record size.
	UnmirroredBytes *PartitionGauge
	// RPO (kmirror_rpo_seconds{topic,partition}) is the age of the oldest record not yet
	// mirrored: what a site loss would cost, in time. 0 when caught up.
	RPO *PartitionGauge
	// Stalled (kmirror_partition_stalled{topic,partition}) is 1 while a partition has records to
	// mirror and none was acknowledged for telemetry.stall_after.
	Stalled *PartitionGauge
	// ProduceErrors (kmirror_produce_errors_total{kind}) counts records the target did not take,
	// by ErrorKind. Prefer ProduceError(kind), which is curried; the vector is exported for
	// tests and reads.
	ProduceErrors *prometheus.CounterVec
	// Rebalances (kmirror_rebalances_total) counts consumer-group sessions started on the source;
	// each follows a rebalance.
	Rebalances prometheus.Counter
	// AssignedPartitions (kmirror_assigned_partitions) is the number of source partitions this
	// process owns in the current session.
	AssignedPartitions prometheus.Gauge
	// CommitLatency (kmirror_commit_latency_seconds) is how long one commit of source offsets
	// took, successful or not.
	CommitLatency prometheus.Histogram
	// CommitErrors (kmirror_commit_errors_total) counts commits of source offsets that failed.
	CommitErrors prometheus.Counter
	// TransactionCommitLatency (kmirror_transaction_commit_seconds) is how long committing one
	// transaction took (exactly-once delivery): flushing its records, the offset commit, EndTxn.
	TransactionCommitLatency prometheus.Histogram
	// Transactions (kmirror_transactions_total{result}) counts transactions committed and aborted.
	Transactions *prometheus.CounterVec
	// TransactionRecords (kmirror_transaction_records_total) counts records in committed
	// transactions.
	TransactionRecords prometheus.Counter
	// PositionsRecovered (kmirror_positions_recovered_total{from}) counts partitions claimed
	// under exactly-once without a position in the positions group on the target, by where
	// their position came from: legacy_positions_group, source_group, or none (they started at
	// consumer.initial_offset).
	PositionsRecovered *prometheus.CounterVec
	// ConsumerErrors (kmirror_consumer_errors_total) counts errors the source consumer group
	// reported on its error channel.
	ConsumerErrors prometheus.Counter
	// SourceRecordsLost (kmirror_source_records_lost_total{topic}) counts source offsets deleted
	// (retention, DeleteRecords) before kmirror read them: records that were never mirrored.
	// Offsets, strictly: a transaction marker or a compacted-away record in the gap counts too.
	// Prefer Topic(topic).Lost, which is exported at 0 from the topic's first use; the vector
	// is exported for tests and reads.
	SourceRecordsLost *prometheus.CounterVec
	// TopicsDiscovered (kmirror_topics_discovered_total) counts source topics that matched the
	// include/exclude rules and started to be mirrored.
	TopicsDiscovered prometheus.Counter
	// CycleTopicsSkipped (kmirror_cycle_topics_skipped_total) counts source topics left out,
	// under the prefix policy, because their name shows they came from the target (or from the
	// source itself): each once per process, when first seen.
	CycleTopicsSkipped prometheus.Counter
	// FetchRequests (kmirror_fetch_requests_total{session}) counts the fetches the source
	// answered: session "new" opened a fetch session with a full fetch (at the start, after an
	// error), "incremental" named only what changed (KIP-227). FetchPartitionsNamed and
	// FetchPartitionsForgotten (kmirror_fetch_partitions_named_total,
	// kmirror_fetch_partitions_forgotten_total) count the partitions those fetches named and
	// dropped from their sessions; FetchErrors (kmirror_fetch_errors_total{kind}) the fetches
	// the source "refused" whole or left "unanswered".
	FetchRequests            *prometheus.CounterVec
	FetchPartitionsNamed     prometheus.Counter
	FetchPartitionsForgotten prometheus.Counter
	FetchErrors              *prometheus.CounterVec
	// FetchHeld (kmirror_fetch_held_bytes) is what the partitions whose worker's inbox was full
	// keep of what they fetched: fetching waits while it is at consumer.max_held_bytes.
	FetchHeld prometheus.Gauge
	// TargetTopicsCreated (kmirror_target_topics_created_total) counts topics kmirror created on
	// the target.
	TargetTopicsCreated prometheus.Counter
	// TargetPartitionsAdded (kmirror_target_partitions_added_total) counts partitions kmirror
	// added to target topics to follow the source.
	TargetPartitionsAdded prometheus.Counter
	// TargetConfigsAltered (kmirror_target_configs_altered_total) counts configs set on existing
	// target topics to follow the source (topics.sync_existing_configs).
	TargetConfigsAltered prometheus.Counter
	// TargetACLsCreated (kmirror_target_acls_created_total) counts ACLs created on target topics
	// from the source's (topics.sync_acls).
	TargetACLsCreated prometheus.Counter
	// OffsetMapChunks (kmirror_offset_map_chunks_written_total) counts chunks of the offset map
	// written to its topic on the target (a growing chunk is rewritten: each write counts).
	OffsetMapChunks prometheus.Counter
	// OffsetMapWriteErrors (kmirror_offset_map_write_errors_total) counts writes of the offset
	// map that failed (they are retried; translations lag meanwhile).
	OffsetMapWriteErrors prometheus.Counter
	// GroupsSynced (kmirror_groups_synced_total) counts commits of translated offsets to a
	// consumer group on the target.
	GroupsSynced prometheus.Counter
	// GroupSyncCommittedByOthers (kmirror_group_sync_committed_by_others_total) counts target
	// groups the group offset sync found committed by another client (a reader that commits
	// without joining the group) and left alone: once per group each time it is found so.
	GroupSyncCommittedByOthers prometheus.Counter
	// GroupSyncLast (kmirror_group_sync_last_timestamp_seconds) is when the last round of group
	// offset sync ended.
	GroupSyncLast prometheus.Gauge
	// GroupSyncUntranslatable (kmirror_group_sync_untranslatable_partitions) is, in the last
	// round, the partitions of synced groups whose position could not be translated exactly (not
	// yet mirrored, or unknown to the map).
	GroupSyncUntranslatable prometheus.Gauge
	// HeartbeatLatency (kmirror_heartbeat_latency_seconds) is, for the last heartbeat of the flow
	// acknowledged on the target by this process, the time from its emit time on the source to
	// that acknowledgement. Only the process that owns the heartbeat topic's partition sets it.
	// A gauge of the last one: one arrives per heartbeats.interval, and the distribution of all
	// records is kmirror_replication_latency_seconds.
	HeartbeatLatency prometheus.Gauge
	// HeartbeatLast (kmirror_heartbeat_last_timestamp_seconds) is the emit time of that
	// heartbeat (Unix time): time() minus it is how long ago the flow last proved itself alive.
	HeartbeatLast prometheus.Gauge
	// HeartbeatsEmitted (kmirror_heartbeats_emitted_total) counts heartbeats written to the
	// source by this process.
	HeartbeatsEmitted prometheus.Counter
	// HeartbeatErrors (kmirror_heartbeat_errors_total) counts heartbeats that could not be
	// written (topic not created, write refused or unanswered).
	HeartbeatErrors prometheus.Counter
	// Ready (kmirror_ready) is 1 while the process would answer /readyz with 200 (connected to
	// both clusters, inside a consumer-group session, no fatal error), else 0. Liveness needs no
	// gauge of its own: Prometheus' `up` and kmirror_build_info say the process is there.
	Ready prometheus.Gauge

	recordsMirrored *prometheus.CounterVec
	bytesMirrored   *prometheus.CounterVec
	recordsSkipped  *prometheus.CounterVec
	fromTarget      *prometheus.CounterVec
	produceErrors   [numErrorKinds]prometheus.Counter

	reg prometheus.Registerer

	// topics is copied on write (under topicsMu) and read without a lock: the set of topics is
	// small and changes rarely, while it is read once per acknowledged record.
	topics   atomic.Pointer[map[string]*TopicMetrics]
	topicsMu sync.Mutex

	backlog *backlogTable

	workersRegistered atomic.Bool
}

// TopicMetrics are the counters of one source topic, curried: incrementing them does no label
// lookup and allocates nothing.
type TopicMetrics struct {
	// Records (kmirror_records_mirrored_total{topic}) counts records acknowledged by the target.
	Records prometheus.Counter
	// Bytes (kmirror_bytes_mirrored_total{topic}) counts the key and value bytes of those records.
	Bytes prometheus.Counter
	// Skipped (kmirror_records_skipped_total{topic}) counts records the target refuses, skipped
	// or written to the dead-letter topic under producer.refused_policy.
	Skipped prometheus.Counter
	// FromTarget (kmirror_records_from_target_skipped_total{topic}) counts records not copied
	// because their provenance header names the target cluster (topics.provenance_header): they
	// came from there. Their offsets are committed as done.
	FromTarget prometheus.Counter
	// Lost (kmirror_source_records_lost_total{topic}) counts source offsets deleted before
	// kmirror read them.
	Lost prometheus.Counter
}

// ErrorKind classifies a produce error for kmirror_produce_errors_total.
type ErrorKind uint8

// The kinds of produce error. Each is exported from the start (at 0), so rate() and alerts see the
// series before the first error happens. Errors the producer retries by itself (a leader change,
// a timeout) are not kmirror's to count: sarama retries them inside, and its bridged metrics
// (kmirror_sarama_*) show them.
const (
	// ErrorRefused is a record the target topic refuses for what it is (larger than its
	// max.message.bytes, a timestamp out of bounds, no key in a compacted topic).
	ErrorRefused ErrorKind = iota
	// ErrorFatal is an error after which the record cannot be delivered (retries exhausted,
	// authorization, a closed producer); kmirror stops.
	ErrorFatal

	numErrorKinds
)

var errorKindNames = [numErrorKinds]string{"refused", "fatal"}

// String returns the kind's label value.
func (k ErrorKind) String() string {
	if k >= numErrorKinds {
		return "ErrorKind(" + strconv.Itoa(int(k)) + ")"
	}
	return errorKindNames[k]
}

type partitionKey struct {
	topic     string
	partition int32
}

// Buckets of the two latency histograms, in seconds: roughly 1-2.5-5 per decade, so p50/p99 read
// well from 1 ms to a minute.
var (
	replicationLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
		120, 300, 600, 1800, 3600}
	commitLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// NewMetrics builds kmirror's metrics and registers them on reg, together with
// kmirror_build_info{version,goversion} and the Go runtime and process collectors. Registering
// twice on the same registry fails; build one Metrics per registry.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, fmt.Errorf("telemetry: NewMetrics needs a prometheus.Registerer")
	}
	m := &Metrics{
		reg:     reg,
		backlog: newBacklogTable(),
		recordsMirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_records_mirrored_total",
			Help: "Records acknowledged by the target, by source topic.",
		}, []string{"topic"}),
		bytesMirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_bytes_mirrored_total",
			Help: "Key and value bytes of the records acknowledged by the target, by source topic.",
		}, []string{"topic"}),
		recordsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_records_skipped_total",
			Help: "Records the target refuses, skipped or written to the dead-letter topic under producer.refused_policy, by source topic.",
		}, []string{"topic"}),
		fromTarget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_records_from_target_skipped_total",
			Help: "Records not copied because their provenance header names the target cluster (they came from there), by source topic.",
		}, []string{"topic"}),
		ReplicationLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kmirror_replication_latency_seconds",
			Help:    "Time from a record's source timestamp to the target's acknowledgement of its copy.",
			Buckets: replicationLatencyBuckets,
		}),
		ProduceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_produce_errors_total",
			Help: "Produce errors reported by the target, by kind (refused, fatal).",
		}, []string{"kind"}),
		Rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_rebalances_total",
			Help: "Consumer-group sessions started on the source (one per rebalance).",
		}),
		AssignedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_assigned_partitions",
			Help: "Source partitions this process owns in the current consumer-group session.",
		}),
		CommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kmirror_commit_latency_seconds",
			Help:    "Duration of one commit of source offsets, successful or not.",
			Buckets: commitLatencyBuckets,
		}),
		CommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_commit_errors_total",
			Help: "Commits of source offsets that failed.",
		}),
		TransactionCommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kmirror_transaction_commit_seconds",
			Help:    "Duration of committing one transaction on the target (exactly-once delivery): flush, offset commit, EndTxn.",
			Buckets: commitLatencyBuckets,
		}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_transactions_total",
			Help: "Transactions on the target (exactly-once delivery), by result: committed or aborted.",
		}, []string{"result"}),
		TransactionRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_transaction_records_total",
			Help: "Records written in committed transactions (exactly-once delivery).",
		}),
		PositionsRecovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_positions_recovered_total",
			Help: "Partitions claimed under exactly-once without a position in the positions group, by where the position came from: legacy_positions_group, source_group, none.",
		}, []string{"from"}),
		ConsumerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_consumer_errors_total",
			Help: "Errors reported by the source consumer group.",
		}),
		SourceRecordsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_source_records_lost_total",
			Help: "Source offsets deleted (retention, DeleteRecords) before kmirror read them, by source topic.",
		}, []string{"topic"}),
		TopicsDiscovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_topics_discovered_total",
			Help: "Source topics that matched the topic rules and started to be mirrored.",
		}),
		CycleTopicsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_cycle_topics_skipped_total",
			Help: "Source topics not mirrored because their name shows they came from the target (prefix policy cycle rule), each counted once.",
		}),
		FetchRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_fetch_requests_total",
			Help: "Fetches the source answered: session new (a full fetch opening a fetch session) or incremental (KIP-227).",
		}, []string{"session"}),
		FetchPartitionsNamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_fetch_partitions_named_total",
			Help: "Partitions named in the fetches the source answered (new to the session, or their position moved).",
		}),
		FetchPartitionsForgotten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_fetch_partitions_forgotten_total",
			Help: "Partitions dropped from a fetch session (paused by a full inbox, revoked, moved to another broker).",
		}),
		FetchHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_fetch_held_bytes",
			Help: "Bytes fetched by partitions whose worker's inbox was full, kept until it has room; fetching waits at consumer.max_held_bytes.",
		}),
		FetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmirror_fetch_errors_total",
			Help: "Fetches the source refused whole (kind refused: a lost session, ...) or did not answer (kind unanswered).",
		}, []string{"kind"}),
		TargetTopicsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_topics_created_total",
			Help: "Topics created on the target.",
		}),
		TargetPartitionsAdded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_partitions_added_total",
			Help: "Partitions added to target topics to follow the source.",
		}),
		TargetConfigsAltered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_configs_altered_total",
			Help: "Configs set on existing target topics to follow the source.",
		}),
		TargetACLsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_target_acls_created_total",
			Help: "ACLs created on target topics from the source's read ACLs.",
		}),
		OffsetMapChunks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_offset_map_chunks_written_total",
			Help: "Chunks of the offset map written to its topic on the target.",
		}),
		OffsetMapWriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_offset_map_write_errors_total",
			Help: "Writes of the offset map that failed (retried).",
		}),
		GroupsSynced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_groups_synced_total",
			Help: "Commits of translated offsets to consumer groups on the target.",
		}),
		GroupSyncCommittedByOthers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_group_sync_committed_by_others_total",
			Help: "Target consumer groups found committed by another client (no member joined) and left alone by the group offset sync.",
		}),
		GroupSyncLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_group_sync_last_timestamp_seconds",
			Help: "When the last round of consumer-group offset sync ended (Unix time).",
		}),
		GroupSyncUntranslatable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_group_sync_untranslatable_partitions",
			Help: "Partitions of synced groups whose position could not be translated exactly in the last round.",
		}),
		HeartbeatLatency: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_heartbeat_latency_seconds",
			Help: "Time from the last acknowledged heartbeat's emit time on the source to its acknowledgement on the target.",
		}),
		HeartbeatLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_heartbeat_last_timestamp_seconds",
			Help: "Emit time (Unix time) of the last heartbeat acknowledged on the target.",
		}),
		HeartbeatsEmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_heartbeats_emitted_total",
			Help: "Heartbeats written to the heartbeat topic on the source.",
		}),
		HeartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kmirror_heartbeat_errors_total",
			Help: "Heartbeats that could not be written to the source.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kmirror_ready",
			Help: "1 when connected to both clusters and inside a consumer-group session, else 0.",
		}),
	}
	for k := ErrorKind(0); k < numErrorKinds; k++ {
		m.produceErrors[k] = m.ProduceErrors.WithLabelValues(k.String())
	}
	empty := map[string]*TopicMetrics{}
	m.topics.Store(&empty)

	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmirror_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version.Version, runtime.Version()).Set(1)

	for _, g := range []struct {
		dst        **PartitionGauge
		name, help string
		value      func(*backlog) float64
	}{
		{&m.Unmirrored, "kmirror_unmirrored_records",
			"Records between the mirrored position and the source's log end, per source partition this process owns.",
			func(b *backlog) float64 { return b.records }},
		{&m.UnmirroredBytes, "kmirror_unmirrored_bytes",
			"Bytes not yet mirrored, estimated from the partition's average record size, per source partition.",
			func(b *backlog) float64 { return b.bytes }},
		{&m.RPO, "kmirror_rpo_seconds",
			"Age of the oldest record not yet mirrored (0 when caught up), per source partition: what losing the source now would cost.",
			func(b *backlog) float64 { return b.age }},
		{&m.Stalled, "kmirror_partition_stalled",
			"1 while a partition has records to mirror and none was acknowledged for telemetry.stall_after.",
			func(b *backlog) float64 { return b.stalled }},
	} {
		*g.dst = newPartitionGauge(m.backlog, g.name, g.help, g.value)
	}
	for _, s := range []string{"new", "incremental"} {
		m.FetchRequests.WithLabelValues(s) // exported at 0 from the start
	}
	for _, k := range []string{"refused", "unanswered"} {
		m.FetchErrors.WithLabelValues(k)
	}

	for _, c := range []prometheus.Collector{
		m.recordsMirrored, m.bytesMirrored, m.recordsSkipped, m.fromTarget, m.ReplicationLatency, m.Unmirrored, m.UnmirroredBytes, m.RPO, m.Stalled,
		m.ProduceErrors, m.Rebalances, m.AssignedPartitions, m.CommitLatency, m.CommitErrors,
		m.TransactionCommitLatency, m.Transactions, m.TransactionRecords, m.PositionsRecovered,
		m.ConsumerErrors, m.SourceRecordsLost, m.TopicsDiscovered, m.CycleTopicsSkipped, m.TargetTopicsCreated, m.TargetPartitionsAdded,
		m.FetchRequests, m.FetchPartitionsNamed, m.FetchPartitionsForgotten, m.FetchErrors, m.FetchHeld,
		m.TargetConfigsAltered, m.TargetACLsCreated,
		m.OffsetMapChunks, m.OffsetMapWriteErrors, m.GroupsSynced, m.GroupSyncCommittedByOthers, m.GroupSyncLast, m.GroupSyncUntranslatable,
		m.HeartbeatLatency, m.HeartbeatLast, m.HeartbeatsEmitted, m.HeartbeatErrors,
		m.Ready, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register metrics: %w", err)
		}
	}
	return m, nil
}

// Topic returns the curried counters of a source topic, creating them the first time the topic is
// seen: every one is exported from then on, at 0 until it counts, so that increase() and the
// alerts built on it see the first record counted (a series born at N shows no increase). Call
// it when the topic is first assigned, before anything is counted. After that it takes no lock and allocates nothing; callers may also keep the result (per
// claim, per partition) and skip even the map lookup.
func (m *Metrics) Topic(topic string) *TopicMetrics {
	if t, ok := (*m.topics.Load())[topic]; ok {
		return t
	}
	m.topicsMu.Lock()
	defer m.topicsMu.Unlock()
	old := *m.topics.Load()
	if t, ok := old[topic]; ok {
		return t
	}
	t := &TopicMetrics{
		Records:    m.recordsMirrored.WithLabelValues(topic),
		Bytes:      m.bytesMirrored.WithLabelValues(topic),
		Skipped:    m.recordsSkipped.WithLabelValues(topic),
		FromTarget: m.fromTarget.WithLabelValues(topic),
		Lost:       m.SourceRecordsLost.WithLabelValues(topic),
	}
	next := make(map[string]*TopicMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[topic] = t
	m.topics.Store(&next)
	return t
}

// ProduceError returns the curried counter of kmirror_produce_errors_total for one kind. A kind
// out of range counts as ErrorFatal.
func (m *Metrics) ProduceError(kind ErrorKind) prometheus.Counter {
	if kind >= numErrorKinds {
		kind = ErrorFatal
	}
	return m.produceErrors[kind]
}

// SetBacklog sets a partition's backlog gauges: records and bytes not yet mirrored, the age of
// the oldest (seconds) and whether it is stalled. It allocates only the first time it sees a
// partition.
func (m *Metrics) SetBacklog(topic string, partition int32, records, bytes int64, age float64, stalled bool) {
	m.backlog.set(topic, partition, records, bytes, age, stalled)
}

// ForgetPartition removes the series of a partition this process no longer owns, so a revoked
// partition reports no stale backlog (or stall) from this instance. Call it after the last
// SetBacklog for that partition: a later SetBacklog exports the series again.
func (m *Metrics) ForgetPartition(topic string, partition int32) {
	m.backlog.forget(topic, partition)
}

// RegisterWorkerGauges exports, for each of the workers, its inbox occupancy
// (kmirror_ring_records{worker}, kmirror_ring_bytes{worker}) and the records handed to its
// producer and not yet acknowledged (kmirror_producer_in_flight_records{worker}). The values are
// read from the given functions at scrape time, so the data path keeps its own counters (an
// atomic it already has) and pays nothing for the metrics. A nil function leaves its metric out.
// It may be called once per Metrics.
func (m *Metrics) RegisterWorkerGauges(workers int, records, bytes, inFlight func(worker int) float64) error {
	if workers < 0 {
		return fmt.Errorf("telemetry: RegisterWorkerGauges: %d workers", workers)
	}
	if !m.workersRegistered.CompareAndSwap(false, true) {
		return fmt.Errorf("telemetry: worker gauges are already registered")
	}
	c := &workerCollector{labels: make([]string, workers)}
	for w := range c.labels {
		c.labels[w] = strconv.Itoa(w)
	}
	for _, g := range []struct {
		name, help string
		fn         func(int) float64
	}{
		{"kmirror_ring_records", "Records waiting in a worker's inbox.", records},
		{"kmirror_ring_bytes", "Bytes (key and value) waiting in a worker's inbox.", bytes},
		{"kmirror_producer_in_flight_records", "Records handed to a worker's producer and not yet acknowledged by the target.", inFlight},
	} {
		if g.fn != nil {
			c.gauges = append(c.gauges, workerGauge{prometheus.NewDesc(g.name, g.help, []string{"worker"}, nil), g.fn})
		}
	}
	if err := m.reg.Register(c); err != nil {
		m.workersRegistered.Store(false)
		return fmt.Errorf("telemetry: register worker gauges: %w", err)
	}
	return nil
}

type workerGauge struct {
	desc *prometheus.Desc
	fn   func(int) float64
}

// workerCollector reads the per-worker gauges at scrape time.
type workerCollector struct {
	labels []string // worker index as a label value, made once
	gauges []workerGauge
}

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range c.gauges {
		ch <- g.desc
	}
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.gauges {
		for w, label := range c.labels {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.fn(w), label)
		}
	}
}

// RegisterMemoryBound exports kmirror_memory_bound_bytes, the memory the configuration lets the
// process hold for the source partitions it owns (config.Memory: ring, fetch, in flight and a
// constant), read from bound at scrape time: the value to set GOMEMLIMIT (and, a little above
// it, the container's memory limit) from. It may be called once per Metrics.
func (m *Metrics) RegisterMemoryBound(bound func() float64) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kmirror_memory_bound_bytes",
		Help: "Memory the configuration bounds kmirror to for the source partitions it owns: ring + fetch + in flight + a constant (docs/operations.md).",
	}, bound)
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("telemetry: register kmirror_memory_bound_bytes: %w", err)
	}
	return nil
}
