// Package config owns kmirror's configuration: the Config type, its defaults, loading from a
// YAML file, KMIRROR_* environment variables and flags (viper), and validation that names the
// offending key and what it expects.
//
// It must never hand out a Config that has not passed Validate.
package config

//go:generate go run ./gen

import (
	"time"
)

// Config is the whole of kmirror's configuration. Each field's doc comment is its reference
// text: docs/configuration.md and docs/kmirror.schema.json are generated from this type, its
// struct tags (mapstructure: the YAML key; kafka: the Kafka property a setting maps to; enum:
// the values validation accepts) and Default (go generate ./pkg/config).
type Config struct {
	// Source is the cluster records are read from.
	Source Cluster `mapstructure:"source"`
	// Target is the cluster records are written to.
	Target Cluster `mapstructure:"target"`
	// Topics says which topics are mirrored, and what they are called on the target.
	Topics Topics `mapstructure:"topics"`
	// Consumer configures the consumer group on the source.
	Consumer Consumer `mapstructure:"consumer"`
	// Ring configures the partition workers between the consumer and the producers.
	Ring Ring `mapstructure:"ring"`
	// Producer configures the idempotent producers that write to the target (acks=all; up to
	// five requests in flight per broker, retried in order, in at_least_once; one in
	// exactly_once).
	Producer Producer `mapstructure:"producer"`
	// Commit configures offset commits on the source (at-least-once).
	Commit Commit `mapstructure:"commit"`
	// Delivery chooses between at-least-once and exactly-once delivery.
	Delivery Delivery `mapstructure:"delivery"`
	// OffsetMap is the exact offset map: from every acknowledgement kmirror knows where each
	// source record was copied on the target. It keeps that as run-length chunks (a run of
	// copies contiguous on the target, with the source offsets that hold no record: transaction
	// markers, aborted and compacted records) in a compacted topic on the target, written by the
	// member that owns the partition. Group offset sync, `kmirror offsets translate` and
	// `kmirror failover` translate with it.
	OffsetMap OffsetMap `mapstructure:"offset_map"`
	// Groups configures consumer-group offset sync. Each sync_interval kmirror reads the
	// committed offsets of the matching source groups, translates each exactly with the offset
	// map, and commits them to the same group id on the target, for the partitions it owns: only
	// when the group has no members on the target (an active group is reported, never
	// overwritten) and only forwards (a target group ahead is left alone; `kmirror failover
	// --force` moves it back). A position not yet mirrored is not committed. Metrics:
	// kmirror_groups_synced_total, kmirror_group_sync_last_timestamp_seconds,
	// kmirror_group_sync_untranslatable_partitions.
	Groups Groups `mapstructure:"groups"`
	// Heartbeats configures the records that prove the flow alive. Every interval kmirror
	// writes a small record to its heartbeat topic on the source, "<topic>.<source.alias>" (created when missing: one partition, compacted), and
	// mirrors it like any other topic (whatever topics.include says), so the target always holds
	// a fresh record proving the flow alive, even while every business topic is idle. Key
	// "<source>-><target>", value JSON {"origin","target","emitted","emitted_ms"}. A heartbeat
	// topic that originated on the target is never mirrored (active-active flows do not loop).
	// Metrics: kmirror_heartbeat_latency_seconds, kmirror_heartbeat_last_timestamp_seconds,
	// kmirror_heartbeats_emitted_total, kmirror_heartbeat_errors_total. A heartbeat that cannot
	// be written is counted and logged; the mirror goes on.
	Heartbeats Heartbeats `mapstructure:"heartbeats"`
	// Shutdown configures the graceful stop (SIGTERM or SIGINT).
	Shutdown Shutdown `mapstructure:"shutdown"`
	// Log configures logging.
	Log Log `mapstructure:"log"`
	// Telemetry configures the HTTP endpoint (metrics, health, profiling) and tracing.
	Telemetry Telemetry `mapstructure:"telemetry"`
	// Runtime tunes the Go runtime of the kmirror process.
	Runtime Runtime `mapstructure:"runtime"`
}

// Cluster says how to reach one Kafka cluster.
type Cluster struct {
	// Alias is the cluster's short name, used in logs, metrics, the offset map, the provenance
	// header and the "prefix" replication policy. Letters, digits, '-' or '_'; source and target
	// need different aliases.
	Alias string `mapstructure:"alias"`
	// Bootstrap lists the brokers (host:port) to start from. Required.
	Bootstrap []string `mapstructure:"bootstrap" kafka:"bootstrap.servers"`
	// Version is the Kafka protocol version kmirror speaks (sarama Config.Version). 3.6.0 or
	// newer is recommended; 2.8.0 is the oldest accepted.
	Version string `mapstructure:"version"`
	// ClientID is sent to the brokers as client.id.
	ClientID string `mapstructure:"client_id" kafka:"client.id"`
	// DialTimeout bounds connecting to a broker.
	DialTimeout time.Duration `mapstructure:"dial_timeout" kafka:"socket.connection.setup.timeout.ms"`
	// ReadTimeout bounds reading one response from a broker.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds writing one request to a broker.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MetadataRefresh is how often cluster metadata (leaders, partitions) is refreshed in the
	// background.
	MetadataRefresh time.Duration `mapstructure:"metadata_refresh" kafka:"metadata.max.age.ms"`
	// TLS configures encryption to the cluster.
	TLS TLS `mapstructure:"tls"`
	// SASL configures authentication to the cluster.
	SASL SASL `mapstructure:"sasl"`
}

// TLS configures encryption (and optionally client authentication) to a cluster.
type TLS struct {
	// Enabled encrypts the connections to this cluster.
	Enabled bool `mapstructure:"enabled" kafka:"security.protocol"`
	// CAFile is a PEM bundle of the CAs trusted to sign the broker certificates; empty uses the
	// system pool.
	CAFile string `mapstructure:"ca_file" kafka:"ssl.truststore.location"`
	// CertFile is a PEM client certificate, for mutual TLS (with KeyFile: both or neither).
	CertFile string `mapstructure:"cert_file" kafka:"ssl.keystore.location"`
	// KeyFile is the PEM key of CertFile, for mutual TLS (both or neither).
	KeyFile string `mapstructure:"key_file" kafka:"ssl.keystore.location"`
	// ServerName is the name checked in the broker certificates, when it differs from the
	// bootstrap host.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify skips certificate verification. For tests only, never in production.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// SASL configures authentication to a cluster.
type SASL struct {
	// Mechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `mapstructure:"mechanism" kafka:"sasl.mechanism" enum:",PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"`
	// Username is the SASL user name; required with a mechanism.
	Username string `mapstructure:"username" kafka:"sasl.jaas.config"`
	// Password is the secret inline; prefer PasswordFile or the KMIRROR_<SOURCE|TARGET>_SASL_PASSWORD
	// environment variable.
	Password string `mapstructure:"password" kafka:"sasl.jaas.config"`
	// PasswordFile is a file holding the password (e.g. a mounted Kubernetes Secret).
	PasswordFile string `mapstructure:"password_file"`
}

// Topics selects what is mirrored and how target topics are named and created.
type Topics struct {
	// Include lists regular expressions (Go RE2 syntax, anchored: the whole name must match). A
	// topic is mirrored when it matches an include and no exclude. Names starting with "__"
	// (Kafka's and kmirror's internal topics) are never mirrored.
	Include []string `mapstructure:"include"`
	// Exclude lists regular expressions of topics not mirrored even when they match an include.
	Exclude []string `mapstructure:"exclude"`
	// RefreshInterval is how often the source is listed again for new topics and new partitions.
	RefreshInterval time.Duration `mapstructure:"refresh_interval"`
	// ReplicationPolicy names target topics: "identity" (same name) or "prefix"
	// ("<source.alias>.<topic>"). With prefix, a source topic whose name shows it came from the
	// target (a remote prefix equal to target.alias anywhere in its chain of prefixes, as
	// MirrorMaker 2 reads it: "us.orders", "asia.us.orders" when mirroring to us) or from the
	// source itself ("europe.orders" on europe) is never mirrored: it is logged once and counted
	// in kmirror_cycle_topics_skipped_total.
	ReplicationPolicy string `mapstructure:"replication_policy" kafka:"replication.policy.class (MirrorMaker 2)" enum:"identity,prefix"`
	// Create creates missing target topics with the source's partition count and grows the
	// target's partition count when the source grows. When false, target topics must exist
	// already.
	Create bool `mapstructure:"create"`
	// ReplicationFactor is the replication factor of topics kmirror creates; capped at the number
	// of target brokers.
	ReplicationFactor int `mapstructure:"replication_factor" kafka:"replication.factor"`
	// SyncConfigs are the topic configs copied from the source when a target topic is created
	// and, with SyncExistingConfigs, kept equal to the source's on existing target topics. A
	// config the source topic leaves at its default is not copied (the target keeps its own
	// default or override), and configs not listed here are never touched.
	// message.timestamp.after.max.ms and message.timestamp.before.max.ms decide which timestamps
	// a topic accepts: they are copied with the source topic's effective values (defaults
	// included; a source's message.timestamp.difference.max.ms counts for both, as Kafka 3.6+
	// reads it), so a topic kmirror creates accepts every record the source accepted (Kafka 4.x
	// refuses a timestamp more than 1 hour ahead by default). Refused here:
	// message.timestamp.type (a LogAppendTime target would overwrite every copy's timestamp),
	// message.timestamp.difference.max.ms (Kafka 4 removed it; carried over as the two bounds),
	// leader/follower.replication.throttled.replicas (they name the source's brokers) and
	// unclean.leader.election.enable (the target's durability is its own). min.insync.replicas
	// is capped at the target topic's replication factor.
	SyncConfigs []string `mapstructure:"sync_configs"`
	// SyncExistingConfigs, every RefreshInterval, sets the sync_configs of existing target topics
	// (created by kmirror or not) to the source topic's values when they differ
	// (IncrementalAlterConfigs, Kafka 2.3+; needs ALTER_CONFIGS on the target topics), logging
	// one line per topic with each "key: old → new". When false, configs are copied only when
	// kmirror creates a topic, existing target topics are never altered, and one that accepts
	// less than its source is only warned about.
	SyncExistingConfigs bool `mapstructure:"sync_existing_configs" kafka:"sync.topic.configs.enabled (MirrorMaker 2)"`
	// SyncACLs, every RefreshInterval, copies the source topics' LITERAL ALLOW ACLs for READ and
	// DESCRIBE (ALL becomes READ; WRITE and the rest are never copied) to the target topics,
	// named by ReplicationPolicy. ACLs are only ever added on the target, never deleted. Needs
	// DESCRIBE on the source cluster resource and DESCRIBE and ALTER on the target's.
	SyncACLs bool `mapstructure:"sync_acls" kafka:"sync.topic.acls.enabled (MirrorMaker 2)"`
	// ProvenanceHeader is for active-active pairs with the identity policy (two flows,
	// europe→us and us→europe, writing into the same topic names): every copy gets a
	// "kmirror.origin" header naming the cluster its record was first written to (a record that
	// has the header keeps its value; one without gets source.alias), and a record whose header
	// names target.alias is never copied (it came from there: counted in
	// kmirror_records_from_target_skipped_total, its offset committed as done). Set it on both
	// flows of the pair. Off (the default), every copy keeps exactly its source's headers; on,
	// this header is the only change made to a record.
	ProvenanceHeader bool `mapstructure:"provenance_header"`
}

// OriginHeader is the record header topics.provenance_header adds: the alias of the cluster the
// record was first written to.
const OriginHeader = "kmirror.origin"

// Consumer configures the source consumer group.
type Consumer struct {
	// GroupID is the consumer group on the source cluster; every kmirror replica with the same
	// group shares the partitions.
	GroupID string `mapstructure:"group_id" kafka:"group.id"`
	// GroupInstanceID makes this process a static member of the group (KIP-345; sarama's
	// Consumer.Group.InstanceId), unique per replica: a replica that restarts within
	// SessionTimeout gets its partitions back without a rebalance, and the other members never
	// stop. ${NAME} is replaced by the environment variable NAME, e.g. ${HOSTNAME} (in
	// Kubernetes, the pod's name: stable across a StatefulSet's restarts); a variable that is not
	// set is an error. A static member that stops does not leave the group (Kafka's design): its
	// partitions wait up to SessionTimeout for it, so a replica removed for good should be stopped
	// with that wait in mind (or with the id unset). Empty (the default): a dynamic member, and
	// every join or leave rebalances the group.
	GroupInstanceID string `mapstructure:"group_instance_id" kafka:"group.instance.id"`
	// InitialOffset is where a partition without a committed offset starts: "oldest" or
	// "newest" (Kafka's "earliest" and "latest" are accepted too). The position is committed as
	// soon as the partition is claimed, so a restart resumes there even if no record arrived in
	// between.
	InitialOffset string `mapstructure:"initial_offset" kafka:"auto.offset.reset" enum:"oldest,newest,earliest,latest"`
	// IsolationLevel is "read_committed" (aborted transactional records are not mirrored) or
	// "read_uncommitted".
	IsolationLevel string `mapstructure:"isolation_level" kafka:"isolation.level" enum:"read_committed,read_uncommitted"`
	// RebalanceStrategy is the assignment ("sticky", "range" or "roundrobin") that releases
	// before kmirror's own group member joined the source group with in at_least_once. kmirror
	// assigns partitions with its slot strategy over delivery.slots, in cooperative rebalances
	// (a partition that stays with a member is neither revoked nor paused while the group
	// rebalances); it offers this strategy last, so that during a rolling upgrade a new member
	// joins a group whose other members still run the earlier release (the group then
	// rebalances eagerly, as they do, until the last of them has left). Keep the value the
	// earlier release ran with.
	RebalanceStrategy string `mapstructure:"rebalance_strategy" kafka:"partition.assignment.strategy" enum:"sticky,range,roundrobin"`
	// SessionTimeout is how long the group coordinator waits for a member's heartbeat before it
	// removes the member and rebalances.
	SessionTimeout time.Duration `mapstructure:"session_timeout" kafka:"session.timeout.ms"`
	// HeartbeatInterval is the time between two heartbeats to the group coordinator; shorter
	// than SessionTimeout (a third of it is usual).
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval" kafka:"heartbeat.interval.ms"`
	// RebalanceTimeout is how long the group waits for members to rejoin in a rebalance (Kafka's
	// max.poll.interval.ms plays this part for Java consumers, default 5m). A revoked partition
	// is drained first: its records are acknowledged, or failed by producer.delivery_timeout,
	// before the member rejoins, so that nothing is written after another member took the
	// partition. It must exceed producer.delivery_timeout and shutdown.timeout by 15s or more.
	RebalanceTimeout time.Duration `mapstructure:"rebalance_timeout" kafka:"max.poll.interval.ms"`
	// FetchMaxBytes is the largest fetch response, all partitions together. A record batch
	// larger than it is still fetched whole (the broker returns it alone), so no record is ever
	// held back or skipped for its size.
	FetchMaxBytes int32 `mapstructure:"fetch_max_bytes" kafka:"fetch.max.bytes"`
	// FetchPartitionBytes is the usual fetch per partition. A record batch larger than it is
	// still fetched whole, and the partition's fetch size then stays raised (doubled until its
	// batches fit, at most producer.max_message_bytes): a broker returns a batch larger than a
	// partition's fetch size only when that partition comes first in the response, so a size
	// below the source's batches made every response carry one batch (1 MiB batches, 12
	// partitions: 0.59 of the bare franz-go mirror's catch-up, 0.88 with the size kept, medians
	// of 3, docs/benchmarks.md). Smaller fetches keep memory low where the source's batches are
	// small.
	FetchPartitionBytes int32 `mapstructure:"fetch_partition_bytes" kafka:"max.partition.fetch.bytes"`
	// FetchMinBytes is what a broker waits for before it answers a fetch (or FetchMaxWait). Under
	// load fetches fill at once and nothing waits. Kafka's consumer defaults (1 byte, 500 ms)
	// answer every fetch with whatever single record is there: at 10,000 records/s the benchmarks
	// measured kmirror at 44% of a core and the source broker at 77% that way, against 18% and
	// 68% with the defaults here, for about 4 ms more median latency at that rate.
	FetchMinBytes int32 `mapstructure:"fetch_min_bytes" kafka:"fetch.min.bytes"`
	// FetchMaxWait is how long a broker may hold a fetch that has fewer than FetchMinBytes to
	// return: what a record waits at most at a trickle, and how often an idle broker answers. It
	// is the wait of a consumer of few partitions; FetchWaitPerPartition lengthens it for many.
	FetchMaxWait time.Duration `mapstructure:"fetch_max_wait" kafka:"fetch.max.wait.ms"`
	// FetchWaitPerPartition lengthens the fetch wait of the consumer group to this much per source
	// partition mirrored (counted once, at start), when that is longer than FetchMaxWait, up to
	// 5s; 0 keeps FetchMaxWait whatever the count. A broker reads every partition of a fetch
	// session on every fetch, records or not (kmirror's fetch sessions, KIP-227, spare the
	// request and the answer, not that): before them, at 10,000 partitions one fetch cost kmirror
	// ~80 ms and the source broker ~190 ms of CPU, so a 10 ms wait kept an idle kmirror at 45% of
	// a core and the source broker at a whole one (benchmarks/results/scale-2026-12-01.md).
	// Scaled, an idle fetch loop costs about the same share of a core at any size: 10 ms up to 50
	// partitions, 200 ms at 1,000, 2 s at 10,000. Only a trickle notices: a record there waits up
	// to that long, and any rate that fills FetchMinBytes sooner is answered sooner. A fetch that
	// adds partitions to its session (at start, in a rebalance) does not wait, and the waits
	// lengthen back to this one while the session stays as it is.
	FetchWaitPerPartition time.Duration `mapstructure:"fetch_wait_per_partition"`
	// DistantRTT is the round trip to the source (measured at start) from which the source counts
	// as distant: each partition's fetch then asks for at least the largest max.message.bytes of
	// the mirrored topics instead of FetchPartitionBytes. A broker answers a partition whose
	// first batch is larger than the partition's fetch size with that batch alone, and only for
	// the first such partition of the response: with 256 KiB and a producer's 1 MiB batches every
	// response carries one batch, and across a transatlantic link that is one batch per 80 ms
	// round trip (benchmarks/results/wan-2026-12-01.md: 20% of the loopback throughput). 0 never
	// enlarges the fetches.
	DistantRTT time.Duration `mapstructure:"distant_rtt"`
	// DistantFetchPartitionBytes is each partition's fetch size from a distant source (at least
	// DistantRTT away), when it is larger than the largest batch the mirrored topics accept. A
	// fetch loop has one fetch in flight, so a partition moves at most its fetch size per round
	// trip: at 80 ms, 1 MiB is 13 MB/s per partition, and with 12 source partitions kmirror kept
	// 49-59% of its loopback rate; 2 MiB kept 83%, 4 MiB 72-93% (docs/benchmarks.md). The
	// memory bound counts it as each partition's fetch share once distant_rtt is set. 0 keeps
	// the largest batch.
	DistantFetchPartitionBytes int32 `mapstructure:"distant_fetch_partition_bytes"`
	// FetchLanes is how many fetch loops read each source broker, each on a connection and in a
	// fetch session of its own, the broker's partitions divided among them. A loop has one
	// fetch in flight, so across a long round trip a broker's partitions move one response
	// per round trip, however wide the link; lanes multiply that. 0 picks enough lanes that no
	// session holds more than FetchSessionPartitions of a broker's partitions, adding lanes as a
	// broker comes to lead more (topics created, partitions added, leaders moved), and at least
	// DistantFetchLanes for a source at least DistantRTT away (at most MaxFetchLanes).
	FetchLanes int `mapstructure:"fetch_lanes"`
	// MaxHeldBytes bounds what the member fetched and could not hand on yet because the
	// workers' inboxes (or a partition's in-flight window) were full, a slow or frozen target.
	// Each worker's partitions share an equal part of it (max_held_bytes / ring.workers): once
	// those waiting for room hold that many bytes, none of the worker's partitions is fetched
	// until they drain below it, while the other workers' partitions go on. Each such partition
	// holds a fetch of its own, or two, so without the bound the memory grows with the
	// partitions: at 10,000 partitions with a backlog, up to 10,000 fetch_partition_bytes. Keep a
	// worker's part well above what a partition holds (fetch_partition_bytes, or
	// distant_fetch_partition_bytes for a distant source, twice). 0: no bound.
	MaxHeldBytes int64 `mapstructure:"max_held_bytes"`
	// SourceLossPolicy is what happens when records were deleted from the source (retention,
	// DeleteRecords) before kmirror read them (it was stopped too long, or fell too far behind):
	// the gap is logged once with topic, partition and the lost offsets, and counted in
	// kmirror_source_records_lost_total; then "fail" stops kmirror (exit 1, /readyz says why) or
	// "continue" resumes at the log start.
	SourceLossPolicy string `mapstructure:"source_loss_policy" enum:"fail,continue"`
}

// HeldPerWorker is each worker's part of MaxHeldBytes (0, no bound, when it is 0), at least a
// byte.
func (c Consumer) HeldPerWorker(workers int) int64 {
	if c.MaxHeldBytes <= 0 {
		return 0
	}
	return max(c.MaxHeldBytes/int64(max(workers, 1)), 1)
}

// MaxFetchWait bounds the fetch wait FetchWaitPerPartition makes (franz-go's default fetch wait).
const MaxFetchWait = 5 * time.Second

// FetchWait returns the fetch wait of a consumer of partitions source partitions: FetchMaxWait,
// or partitions × FetchWaitPerPartition when that is longer, at most MaxFetchWait (or
// FetchMaxWait, when it is longer still).
func (c Consumer) FetchWait(partitions int) time.Duration {
	if c.FetchWaitPerPartition <= 0 || partitions <= 0 {
		return c.FetchMaxWait
	}
	scaled := MaxFetchWait
	if int64(partitions) < int64(MaxFetchWait/c.FetchWaitPerPartition) {
		scaled = time.Duration(partitions) * c.FetchWaitPerPartition
	}
	return max(c.FetchMaxWait, scaled)
}

// FetchPartition returns the fetch size of each partition (sarama's Consumer.Fetch.Default) for a
// source rtt away whose mirrored topics accept batches of up to largestBatch bytes:
// FetchPartitionBytes, raised to DistantFetchPartitionBytes or largestBatch, the larger (at most
// FetchMaxBytes), when the source is at least DistantRTT away.
func (c Consumer) FetchPartition(rtt time.Duration, largestBatch int) int32 {
	size := c.FetchPartitionBytes
	distant := max(int64(largestBatch), int64(c.DistantFetchPartitionBytes))
	if c.DistantRTT <= 0 || rtt < c.DistantRTT || distant <= int64(size) {
		return size
	}
	return int32(min(distant, int64(c.FetchMaxBytes)))
}

// LingerAt returns the linger of batches to a target rtt away: DistantLinger when it is longer
// than Linger and the target at least distant away (distant above 0), else Linger.
func (p Producer) LingerAt(rtt, distant time.Duration) time.Duration {
	if distant <= 0 || rtt < distant {
		return p.Linger
	}
	return max(p.Linger, p.DistantLinger)
}

// FetchSessionPartitions is the most partitions of a broker one fetch session holds when
// consumer.fetch_lanes is 0. A broker keeps a session's partitions in a hash table with linear
// probing, keyed, at the fetch versions sarama speaks (before 13), by a hash of topic name and
// partition: topics named in sequence ("orders.0001", "orders.0002", ...) crowd one run of its
// slots, and each partition a fetch returns records for is moved within it. At 10,000
// partitions in one session a fetch that returned a record from 1,000 of them kept the broker
// busy 10 s (thread dumps: FetchContext's PartitionIterator in ImplicitLinkedHashCollection
// .remove), and at 5,000 records/s fetches went unanswered for 30 s; in sessions of 1,000 the
// same start took 1 s and nothing stalled (docs/benchmarks.md, Scale).
const FetchSessionPartitions = 1000

// DistantFetchLanes is the fetch lanes of a distant source when consumer.fetch_lanes is 0.
const DistantFetchLanes = 4

// MaxFetchLanes bounds consumer.fetch_lanes.
const MaxFetchLanes = 16

// Lanes returns the fetch lanes per source broker for a source rtt away, whose brokers lead
// partitions of the mirrored topics between them: FetchLanes, or when it is 0, one per
// FetchSessionPartitions of a broker's share, and at least DistantFetchLanes at DistantRTT and
// farther, at most MaxFetchLanes.
func (c Consumer) Lanes(rtt time.Duration, partitions, brokers int) int {
	if c.FetchLanes > 0 {
		return c.FetchLanes
	}
	lanes := 1
	if c.DistantRTT > 0 && rtt >= c.DistantRTT {
		lanes = DistantFetchLanes
	}
	brokers = max(brokers, 1)
	perBroker := (max(partitions, 0) + brokers - 1) / brokers
	return min(max(lanes, (perBroker+FetchSessionPartitions-1)/FetchSessionPartitions), MaxFetchLanes)
}

// SessionPartitions is how many of a broker's partitions a fetch lane holds before the broker
// gets another lane (pkg/fetch's Config.SessionPartitions): FetchSessionPartitions when
// FetchLanes is 0, so that partitions a broker comes to lead after the start (topics created,
// partitions added, leaders moved) open lanes as those at the start did; 0, lanes fixed, when
// FetchLanes is set.
func (c Consumer) SessionPartitions() int {
	if c.FetchLanes > 0 {
		return 0
	}
	return FetchSessionPartitions
}

// mostLanes is the most fetch lanes per source broker the configuration may pick for partitions
// source partitions (all led by one broker, the source distant).
func (c Consumer) mostLanes(partitions int) int {
	return c.Lanes(c.DistantRTT, partitions, 1)
}

// Ring configures the partition workers and their inboxes.
type Ring struct {
	// Workers is the number of partition workers, each with its own inbox and its own idempotent
	// producer. A source partition always goes to the same worker, so its order is kept. In
	// at_least_once a worker's producer keeps up to five requests in flight per target broker.
	// In exactly_once it has one request in flight and one batch per partition beside it, so
	// across a WAN to the target (kmirror near the source) a partition with a full batch holds
	// its worker's others for a round trip: there, give it as many workers as the busiest topics
	// have partitions (measured with one request in flight: one run with 12 for 12 partitions,
	// and 1 MiB fetches, kept 81% of the loopback rate at 80 ms where the defaults kept 50%; on
	// loopback 16 gained nothing).
	Workers int `mapstructure:"workers"`
	// InboxRecords is the capacity of each worker's inbox in items (rounded up to a power of
	// two): an item is one fetched batch of one partition's records, so inbox_bytes is the bound
	// that usually binds. A full inbox stops fetching the partitions feeding it (backpressure).
	InboxRecords int `mapstructure:"inbox_records"`
	// InboxBytes is the capacity of each worker's inbox in bytes (key + value + headers).
	InboxBytes int64 `mapstructure:"inbox_bytes"`
	// PartitionInFlight is how many records of one partition may be in flight (fetched but not
	// yet acknowledged by the target) at once; rounded up to a power of two.
	PartitionInFlight int `mapstructure:"partition_in_flight"`
}

// Producer configures the idempotent producers writing to the target.
type Producer struct {
	// BatchBytes flushes a batch at this many bytes (or BatchRecords, or Linger, whichever comes
	// first).
	BatchBytes int `mapstructure:"batch_bytes" kafka:"batch.size"`
	// BatchRecords flushes a batch at this many records (or BatchBytes, or Linger).
	BatchRecords int `mapstructure:"batch_records"`
	// Linger flushes a batch this long after its first record (or at BatchBytes or BatchRecords).
	Linger time.Duration `mapstructure:"linger" kafka:"linger.ms"`
	// DistantLinger replaces Linger, when longer, for a distant target: one whose round trip,
	// measured at start, is consumer.distant_rtt or more. Across a long round trip the short
	// linger sends many small batches, and each costs the mirror and the target broker CPU: at
	// 80 ms near the source, kmirror kept 70-82% of its loopback rate with 5 ms (3.0-3.4
	// CPU-seconds per GB), 87% with 10 ms and 85-91% with 20 ms (2.6-2.9), one run each
	// (docs/benchmarks.md), for at most the difference in latency at a trickle, small beside the
	// round trip. 0 keeps Linger.
	DistantLinger time.Duration `mapstructure:"distant_linger"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string `mapstructure:"compression" kafka:"compression.type" enum:"none,gzip,snappy,lz4,zstd"`
	// MaxMessageBytes is the max.message.bytes assumed for a target topic that does not report
	// one. Otherwise each target topic's own max.message.bytes bounds the batches sent to it (one
	// producer per limit).
	MaxMessageBytes int `mapstructure:"max_message_bytes"`
	// DeliveryTimeout bounds how long a record may wait for the target's acknowledgement,
	// retries included, before its partition stops and kmirror exits non-zero (same default as
	// Kafka's). Long enough to ride out a broker failure: a hard-killed leader keeps its
	// partitions until the controller notices (broker.session.timeout.ms) and a single-node
	// target may restart.
	DeliveryTimeout time.Duration `mapstructure:"delivery_timeout" kafka:"delivery.timeout.ms"`
	// RetryBackoff is the first pause between two attempts; it doubles up to 1s.
	RetryBackoff time.Duration `mapstructure:"retry_backoff" kafka:"retry.backoff.ms"`
	// RefusedPolicy is what happens to a record the target topic refuses for what it is (larger
	// than its max.message.bytes, a timestamp outside message.timestamp.after/before.max.ms, no
	// key in a compacted topic). kmirror checks each record before sending it, and names the
	// exact record. "fail": stop there and exit non-zero (nothing after it in its partition is
	// sent); "skip": count it in kmirror_records_skipped_total, log the first of each topic and
	// reason, go on; "dead_letter": write it with the reason to DeadLetterTopic on the target, go
	// on (not with delivery.mode exactly_once).
	RefusedPolicy string `mapstructure:"refused_policy" enum:"fail,skip,dead_letter"`
	// DeadLetterTopic is the target topic refused records go to under refused_policy
	// dead_letter; created by kmirror when missing (cleanup.policy delete). Key, value and
	// headers are kept byte for byte; headers kmirror.dlq.source.topic, .partition, .offset,
	// .timestamp (ms) and kmirror.dlq.reason are added. Empty uses
	// "__kmirror.dead-letter.<source.alias>" (names starting with "__" are never mirrored).
	DeadLetterTopic string `mapstructure:"dead_letter_topic" kafka:"errors.deadletterqueue.topic.name (Kafka Connect)"`
}

// Commit configures source offset commits.
type Commit struct {
	// Interval is how often acknowledged offsets are committed on the source.
	Interval time.Duration `mapstructure:"interval" kafka:"auto.commit.interval.ms"`
}

// Delivery chooses between at-least-once and exactly-once delivery.
type Delivery struct {
	// Mode is at_least_once or exactly_once. at_least_once: source offsets are committed on the
	// source once the target has acknowledged every record before them; a crash or a lost member
	// repeats records, it never skips one. exactly_once: records are written to the target in
	// transactions, and each transaction also commits the source positions it reaches to
	// PositionsGroup on the target (atomically with the records); a member resumes a partition
	// from there. Zombies are fenced by stable transactional ids, one per slot. Consumers of the
	// target must read with isolation.level=read_committed. Needs Kafka 2.5+ on the target and,
	// with ACLs, WRITE and DESCRIBE on the transactional ids (a PREFIXED ACL), READ on the
	// positions group, and READ on the target topics (the positions are committed under their
	// names).
	Mode string `mapstructure:"mode" kafka:"exactly.once.support (MirrorMaker 2)" enum:"at_least_once,exactly_once"`
	// Slots is the number of slots the source partitions are hashed into; the source group
	// assigns each slot whole to one member (in both modes), and in exactly_once each slot has
	// one transactional producer (and id) on the target. Fixed for the life of a mirror (every
	// member must use the same value); a few per expected member.
	Slots int `mapstructure:"slots"`
	// TransactionalIDPrefix names the slots' transactional ids in exactly_once ("<prefix>-<slot>");
	// empty uses "<consumer.group_id>-<source.alias>". The ids live on the target: the source
	// alias keeps two mirrors from different sources into one target (each with the default
	// group id) from fencing each other.
	TransactionalIDPrefix string `mapstructure:"transactional_id_prefix" kafka:"transactional.id"`
	// PositionsGroup is, in exactly_once, the group on the target whose committed offsets hold
	// the source positions, written in each transaction; empty uses
	// "<consumer.group_id>-<source.alias>-positions" (and reads the name used before the alias
	// was part of it, "<consumer.group_id>-positions", for partitions without a position, so
	// that an upgrade resumes where the old version stopped).
	PositionsGroup string `mapstructure:"positions_group"`
	// PositionsRefresh is, in exactly_once, how often the positions of partitions that had no
	// transaction in that time are committed again (the positions group has no members, so the
	// target expires its offsets offsets.retention.minutes, 7 days by default, after their last
	// commit). Keep it well under offsets.retention.minutes.
	PositionsRefresh time.Duration `mapstructure:"positions_refresh" kafka:"offsets.retention.minutes (broker)"`
	// Transaction sizes the transactions of exactly_once.
	Transaction Transaction `mapstructure:"transaction"`
}

// Transaction sizes the transactions of exactly_once delivery: one is committed when it holds
// MaxRecords records or MaxBytes bytes, or MaxAge after it began, whichever comes first; while
// more records wait for its slot (catching up), BacklogMaxAge after it began instead of MaxAge.
// Larger transactions cost fewer commits; MaxAge bounds the latency a transaction adds.
type Transaction struct {
	// MaxRecords commits a transaction once it holds this many records.
	MaxRecords int `mapstructure:"max_records"`
	// MaxBytes commits a transaction once it holds this many bytes.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// MaxAge commits a transaction this long after its oldest record reached its slot (a
	// record that waited for the slot's previous commit counts from its arrival); keep it well
	// under producer.delivery_timeout.
	MaxAge time.Duration `mapstructure:"max_age"`
	// BacklogMaxAge replaces MaxAge while more records wait for the slot (catching up a
	// backlog): an earlier commit would make none of the waiting records readable sooner, and
	// fewer commits drain the backlog faster. Below MaxAge it is MaxAge (no stretching).
	BacklogMaxAge time.Duration `mapstructure:"backlog_max_age"`
}

// TransactionalPrefix returns the prefix of the slots' transactional ids of the mirror of
// consumer group groupID from the source named sourceAlias.
func (d Delivery) TransactionalPrefix(groupID, sourceAlias string) string {
	if d.TransactionalIDPrefix != "" {
		return d.TransactionalIDPrefix
	}
	return groupID + "-" + sourceAlias
}

// Positions returns the target group that holds the source positions in exactly_once.
func (d Delivery) Positions(groupID, sourceAlias string) string {
	if d.PositionsGroup != "" {
		return d.PositionsGroup
	}
	return groupID + "-" + sourceAlias + "-positions"
}

// LegacyPositions returns the positions group's name before the source alias was part of it
// (read when the group of Positions holds no position of a partition), or "" when
// positions_group is set.
func (d Delivery) LegacyPositions(groupID string) string {
	if d.PositionsGroup != "" {
		return ""
	}
	return groupID + "-positions"
}

// OffsetMap configures the exact source → target offset map kept on the target.
type OffsetMap struct {
	// Enabled records, from every acknowledgement, where each source record was copied, in a
	// compacted topic on the target; group offset sync and failover translate with it.
	Enabled bool `mapstructure:"enabled"`
	// Topic is the map topic on the target (compacted, one partition, created by kmirror). Empty
	// uses "__kmirror.offset-map.<source.alias>"; a name of your own must start with "__".
	Topic string `mapstructure:"topic" kafka:"offset-syncs.topic.location (MirrorMaker 2)"`
	// FlushInterval is how often the map's new entries are written (and, at the latest, how far
	// a translation lags).
	FlushInterval time.Duration `mapstructure:"flush_interval"`
}

// Groups configures consumer-group offset sync: the source groups' committed offsets, translated
// exactly, committed to the same groups on the target while they have no members there.
type Groups struct {
	// Include lists regular expressions over group ids (each must match the whole id); empty
	// syncs no group. kmirror's own group (consumer.group_id) is never synced.
	Include []string `mapstructure:"include" kafka:"groups (MirrorMaker 2)"`
	// Exclude lists regular expressions of group ids not synced even when they match an include.
	Exclude []string `mapstructure:"exclude" kafka:"groups.exclude (MirrorMaker 2)"`
	// SyncInterval is how often the groups are synced.
	SyncInterval time.Duration `mapstructure:"sync_interval" kafka:"sync.group.offsets.interval.seconds (MirrorMaker 2)"`
}

// Heartbeats configures the heartbeat records kmirror writes to its own topic on the source and
// mirrors with everything else (pkg/heartbeat), so the target holds a fresh record of the flow
// even while every business topic is idle.
type Heartbeats struct {
	// Enabled writes a heartbeat every Interval.
	Enabled bool `mapstructure:"enabled" kafka:"emit.heartbeats.enabled (MirrorMaker 2)"`
	// Topic starts the heartbeat topics' names: on the source "<topic>.<source.alias>". Never
	// starting with "__": heartbeats are mirrored.
	Topic string `mapstructure:"topic"`
	// Interval is the time between two heartbeats.
	Interval time.Duration `mapstructure:"interval" kafka:"emit.heartbeats.interval.seconds (MirrorMaker 2)"`
}

// HeartbeatTopic returns the flow's heartbeat topic on the source: "<heartbeats.topic>.<source
// alias>".
func (c *Config) HeartbeatTopic() string { return c.Heartbeats.Topic + "." + c.Source.Alias }

// Shutdown configures the graceful stop.
type Shutdown struct {
	// Timeout is how long a graceful stop (SIGTERM/SIGINT) may take to drain in-flight records
	// and commit.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Runtime tunes the Go runtime of the kmirror process.
type Runtime struct {
	// GCPercent is GOGC: how far the heap may grow past the live data before the next garbage
	// collection. kmirror's live data is small (records in flight, bounded by the ring), so Go's
	// default of 100 collects very often: the benchmarks measured 200 at +24% catch-up throughput
	// and -15% CPU for about 1.5x the resident memory (125-187 MiB peak in those runs). The GOGC
	// environment variable, when set, wins; set GOMEMLIMIT too where memory is capped. With
	// thousands of partitions the live memory is not small (500-600 MiB at 10,000: sarama keeps
	// goroutines and buffers for every partition) and 200 lets the process hold up to about three
	// times its live heap (1.0-1.5 GiB there); GOMEMLIMIT=900MiB kept it at 817-874 MiB for more
	// collector work (benchmarks/results/scale-2026-12-01.md).
	GCPercent int `mapstructure:"gc_percent"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level" enum:"debug,info,warn,error"`
	// Format is console (for people) or json (for machines).
	Format string `mapstructure:"format" enum:"console,json"`
}

// Telemetry configures the HTTP endpoint (metrics, health, profiling) and tracing.
type Telemetry struct {
	// Listen is the address (host:port or :port) of /metrics (Prometheus), /healthz and /readyz;
	// empty disables the endpoint.
	Listen string `mapstructure:"listen"`
	// Pprof serves /debug/pprof on the same address.
	Pprof bool `mapstructure:"pprof"`
	// SaramaMetrics exports sarama's own client metrics, bridged from go-metrics
	// (kmirror_sarama_*{client}, per broker as kmirror_sarama_broker_*). Off by default: they
	// are two thirds of a scrape (per client, per broker, per API key), and off, sarama does not
	// make them at all.
	SaramaMetrics bool `mapstructure:"sarama_metrics"`
	// SaramaTopicMetrics also exports sarama's per-topic client metrics (kmirror_sarama_topic_*:
	// send rate, batch size, records per request and compression ratio for each topic and each
	// of sarama's producers: exactly_once's and the dead-letter writer's; at_least_once produces
	// through kmirror's own pipeline, which sarama does not measure per topic); it needs
	// SaramaMetrics. Off, sarama does not even make them: with a thousand
	// topics they are tens of thousands of series per scrape, megabytes of samples, and CPU when
	// nothing moves.
	SaramaTopicMetrics bool `mapstructure:"sarama_topic_metrics"`
	// StallAfter is how long a partition with records to mirror may go without an
	// acknowledgement from the target before it is stalled: kmirror_partition_stalled is 1, one
	// line is logged, and /readyz answers 503 naming it, until records move again (a hung or
	// frozen target, a fetch that no longer advances).
	StallAfter time.Duration `mapstructure:"stall_after"`
	// Tracing configures OpenTelemetry traces.
	Tracing Tracing `mapstructure:"tracing"`
}

// Tracing configures OpenTelemetry traces exported over OTLP (to Jaeger, for instance).
type Tracing struct {
	// Endpoint is the OTLP collector (host:port), e.g. jaeger-collector:4317 (grpc) or
	// jaeger-collector:4318 (http); empty disables tracing. Headers for a collector that wants
	// them (an authorisation token) come from the standard OTEL_EXPORTER_OTLP_HEADERS variable.
	Endpoint string `mapstructure:"endpoint"`
	// Protocol is grpc or http.
	Protocol string `mapstructure:"protocol" enum:"grpc,http"`
	// Insecure sends OTLP without TLS.
	Insecure bool `mapstructure:"insecure"`
	// SampleRatio is the share of new traces recorded (0 to 1); records that arrive with a
	// sampled W3C traceparent header are always followed.
	SampleRatio float64 `mapstructure:"sample_ratio"`
	// PropagateToTarget rewrites a traced record's traceparent/tracestate headers on its copy
	// (one of each, lower-case keys, replacing the source's) with kmirror's span context, so
	// that consumers of the target continue kmirror's span. Off (the default), every copy keeps
	// exactly the source's headers, byte for byte, even when the record is traced.
	PropagateToTarget bool `mapstructure:"propagate_to_target"`
}

// Policies and enumerations accepted in the configuration.
const (
	PolicyIdentity = "identity"
	PolicyPrefix   = "prefix"

	RefusedFail       = "fail"
	RefusedSkip       = "skip"
	RefusedDeadLetter = "dead_letter"

	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"

	LossFail     = "fail"
	LossContinue = "continue"
)

// DeadLetterPrefix starts the default dead-letter topic's name, which ends with the source
// alias. Names starting with "__" are never mirrored.
const DeadLetterPrefix = "__kmirror.dead-letter."

// OffsetMapTopic returns the map topic on the target: offset_map.topic, or
// "__kmirror.offset-map.<source alias>" when that is empty.
func (c *Config) OffsetMapTopic() string {
	if c.OffsetMap.Topic != "" {
		return c.OffsetMap.Topic
	}
	return OffsetMapPrefix + c.Source.Alias
}

// OffsetMapPrefix starts the default map topic's name.
const OffsetMapPrefix = "__kmirror.offset-map."

// DeadLetterTopicName returns the dead-letter topic on the target: producer.dead_letter_topic,
// or "__kmirror.dead-letter.<source alias>" when that is empty.
func (c *Config) DeadLetterTopicName() string {
	if c.Producer.DeadLetterTopic != "" {
		return c.Producer.DeadLetterTopic
	}
	return DeadLetterPrefix + c.Source.Alias
}
