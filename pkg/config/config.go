// Package config owns kmirror's configuration: the Config type, its defaults, loading from a
// YAML file, KMIRROR_* environment variables and flags (viper), and validation that names the
// offending key and what it expects.
//
// It must never hand out a Config that has not passed Validate.
package config

import (
	"time"
)

// Config is the whole of kmirror's configuration. configs/kmirror.yaml documents every key.
type Config struct {
	Source     Cluster    `mapstructure:"source"`
	Target     Cluster    `mapstructure:"target"`
	Topics     Topics     `mapstructure:"topics"`
	Consumer   Consumer   `mapstructure:"consumer"`
	Ring       Ring       `mapstructure:"ring"`
	Producer   Producer   `mapstructure:"producer"`
	Commit     Commit     `mapstructure:"commit"`
	Delivery   Delivery   `mapstructure:"delivery"`
	OffsetMap  OffsetMap  `mapstructure:"offset_map"`
	Groups     Groups     `mapstructure:"groups"`
	Heartbeats Heartbeats `mapstructure:"heartbeats"`
	Shutdown   Shutdown   `mapstructure:"shutdown"`
	Log        Log        `mapstructure:"log"`
	Telemetry  Telemetry  `mapstructure:"telemetry"`
	Runtime    Runtime    `mapstructure:"runtime"`
}

// Cluster says how to reach one Kafka cluster.
type Cluster struct {
	// Alias names the cluster in logs, metrics and the prefix replication policy.
	Alias string `mapstructure:"alias"`
	// Bootstrap lists host:port addresses of brokers to start from.
	Bootstrap []string `mapstructure:"bootstrap"`
	// Version is the Kafka protocol version spoken (sarama Config.Version).
	Version string `mapstructure:"version"`
	// ClientID is sent as client.id.
	ClientID string `mapstructure:"client_id"`
	// DialTimeout bounds connecting to a broker; ReadTimeout and WriteTimeout bound one request.
	DialTimeout  time.Duration `mapstructure:"dial_timeout"`
	ReadTimeout  time.Duration `mapstructure:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MetadataRefresh is how often cluster metadata is refreshed in the background.
	MetadataRefresh time.Duration `mapstructure:"metadata_refresh"`
	TLS             TLS           `mapstructure:"tls"`
	SASL            SASL          `mapstructure:"sasl"`
}

// TLS configures encryption (and optionally client authentication) to a cluster.
type TLS struct {
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM bundle of the CAs trusted to sign broker certificates; empty uses the
	// system pool.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, for mutual TLS.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName overrides the name checked in the broker certificates.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify disables certificate checks. For tests only.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// SASL configures authentication to a cluster.
type SASL struct {
	// Mechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `mapstructure:"mechanism"`
	Username  string `mapstructure:"username"`
	// Password is the secret inline (prefer PasswordFile or the environment).
	Password string `mapstructure:"password"`
	// PasswordFile is a file holding the password (e.g. a mounted Kubernetes Secret).
	PasswordFile string `mapstructure:"password_file"`
}

// Topics selects what is mirrored and how target topics are named and created.
type Topics struct {
	Include           []string      `mapstructure:"include"`
	Exclude           []string      `mapstructure:"exclude"`
	RefreshInterval   time.Duration `mapstructure:"refresh_interval"`
	ReplicationPolicy string        `mapstructure:"replication_policy"`
	Create            bool          `mapstructure:"create"`
	ReplicationFactor int           `mapstructure:"replication_factor"`
	SyncConfigs       []string      `mapstructure:"sync_configs"`
	// SyncExistingConfigs keeps the sync_configs of existing target topics equal to the
	// source's, every refresh_interval; when false they are copied only at creation.
	SyncExistingConfigs bool `mapstructure:"sync_existing_configs"`
	// SyncACLs copies the source topics' READ and DESCRIBE ACLs to the target topics.
	SyncACLs bool `mapstructure:"sync_acls"`
	// ProvenanceHeader, for active-active pairs, gives every copy a header OriginHeader naming the
	// cluster its record was first written to (a record that has one keeps it; one without gets
	// source.alias) and does not copy a record whose header names target.alias: it came from
	// there. Both flows of a pair must set it. Off, records are copied byte for byte.
	ProvenanceHeader bool `mapstructure:"provenance_header"`
}

// OriginHeader is the record header topics.provenance_header adds: the alias of the cluster the
// record was first written to.
const OriginHeader = "kmirror.origin"

// Consumer configures the source consumer group.
type Consumer struct {
	GroupID string `mapstructure:"group_id"`
	// GroupInstanceID makes this process a static member of the group (group.instance.id,
	// KIP-345; sarama's Consumer.Group.InstanceId): a restart within SessionTimeout gets its
	// partitions back without a rebalance. ${NAME} is replaced by the environment variable NAME
	// (${HOSTNAME}: a pod's name). Empty (the default): a dynamic member.
	GroupInstanceID     string        `mapstructure:"group_instance_id"`
	InitialOffset       string        `mapstructure:"initial_offset"`
	IsolationLevel      string        `mapstructure:"isolation_level"`
	RebalanceStrategy   string        `mapstructure:"rebalance_strategy"`
	SessionTimeout      time.Duration `mapstructure:"session_timeout"`
	HeartbeatInterval   time.Duration `mapstructure:"heartbeat_interval"`
	RebalanceTimeout    time.Duration `mapstructure:"rebalance_timeout"`
	FetchMaxBytes       int32         `mapstructure:"fetch_max_bytes"`
	FetchPartitionBytes int32         `mapstructure:"fetch_partition_bytes"`
	FetchMinBytes       int32         `mapstructure:"fetch_min_bytes"`
	// FetchMaxWait is how long a broker may hold a fetch that has fewer than FetchMinBytes to
	// return (fetch.max.wait.ms): what a record waits at most at a trickle, and how often an idle
	// broker answers. It is the wait of a consumer of few partitions; FetchWaitPerPartition
	// lengthens it for many.
	FetchMaxWait time.Duration `mapstructure:"fetch_max_wait"`
	// FetchWaitPerPartition lengthens the fetch wait of the consumer group to this much per source
	// partition mirrored (counted once, at start), when that is longer than FetchMaxWait, up to
	// MaxFetchWait; 0 keeps FetchMaxWait whatever the count. sarama has no incremental fetch
	// sessions (KIP-227): every fetch names every partition the consumer reads from that broker,
	// and the broker and kmirror both do work for each one, records or not. An idle fetch loop
	// therefore costs in proportion to partitions / wait; waiting in proportion to the partitions
	// keeps that cost flat as a deployment grows.
	FetchWaitPerPartition time.Duration `mapstructure:"fetch_wait_per_partition"`
	// DistantRTT is the round trip to the source (measured at start) from which the source counts
	// as distant: each partition's fetch then asks for at least the largest max.message.bytes of
	// the mirrored topics instead of FetchPartitionBytes. A broker answers a partition whose
	// first batch is larger than the partition's fetch size with that batch alone, and only for
	// the first such partition of the response: with batches larger than FetchPartitionBytes (a
	// producer's 1 MiB batches) every response carries one batch, and across a WAN the mirror
	// reads one batch per round trip. 0 never enlarges the fetches.
	DistantRTT time.Duration `mapstructure:"distant_rtt"`
	// SourceLossPolicy is what happens when records were deleted from the source (retention,
	// DeleteRecords) before kmirror read them: "fail" stops the mirror, "continue" resumes at the
	// log start. Either way the gap is logged and counted in kmirror_source_records_lost_total.
	SourceLossPolicy string `mapstructure:"source_loss_policy"`
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
// FetchPartitionBytes, raised to largestBatch (at most FetchMaxBytes) when the source is at least
// DistantRTT away.
func (c Consumer) FetchPartition(rtt time.Duration, largestBatch int) int32 {
	size := c.FetchPartitionBytes
	if c.DistantRTT <= 0 || rtt < c.DistantRTT || int64(largestBatch) <= int64(size) {
		return size
	}
	return int32(min(int64(largestBatch), int64(c.FetchMaxBytes)))
}

// Ring configures the partition workers and their inboxes.
type Ring struct {
	Workers           int   `mapstructure:"workers"`
	InboxRecords      int   `mapstructure:"inbox_records"`
	InboxBytes        int64 `mapstructure:"inbox_bytes"`
	PartitionInFlight int   `mapstructure:"partition_in_flight"`
}

// Producer configures the idempotent producers writing to the target.
type Producer struct {
	BatchBytes      int           `mapstructure:"batch_bytes"`
	BatchRecords    int           `mapstructure:"batch_records"`
	Linger          time.Duration `mapstructure:"linger"`
	Compression     string        `mapstructure:"compression"`
	MaxMessageBytes int           `mapstructure:"max_message_bytes"`
	// DeliveryTimeout bounds how long a record may wait for the target's acknowledgement,
	// retries included, before its partition stops (Kafka's delivery.timeout.ms).
	DeliveryTimeout time.Duration `mapstructure:"delivery_timeout"`
	// RetryBackoff is the first pause between two attempts; it doubles up to a second.
	RetryBackoff time.Duration `mapstructure:"retry_backoff"`
	// RefusedPolicy is what happens to a record the target refuses for what it is: RefusedFail,
	// RefusedSkip or RefusedDeadLetter.
	RefusedPolicy string `mapstructure:"refused_policy"`
	// DeadLetterTopic is the target topic refused records go to under refused_policy
	// dead_letter; empty means "__kmirror.dead-letter.<source alias>".
	DeadLetterTopic string `mapstructure:"dead_letter_topic"`
}

// Commit configures source offset commits.
type Commit struct {
	Interval time.Duration `mapstructure:"interval"`
}

// OffsetMap configures the exact source → target offset map kept on the target.
// Delivery chooses between at-least-once and exactly-once delivery.
type Delivery struct {
	// Mode is at_least_once (source offsets committed on the source once the target has
	// acknowledged every record before them: a crash repeats records) or exactly_once (records
	// written in transactions on the target, each holding the source positions it reaches, so a
	// read_committed consumer of the target sees every source record once).
	Mode string `mapstructure:"mode"`
	// Slots is the number of slots the source partitions are hashed into in exactly_once: one
	// transactional producer (and id) on the target per slot, assigned whole to one member. Fixed
	// for the life of a mirror: every member must use the same value.
	Slots int `mapstructure:"slots"`
	// TransactionalIDPrefix names the slots' transactional ids ("<prefix>-<slot>"); empty uses
	// "<consumer.group_id>-<source.alias>". The ids live on the target: the source alias keeps
	// two mirrors from different sources into one target (each with the default group id)
	// from fencing each other.
	TransactionalIDPrefix string `mapstructure:"transactional_id_prefix"`
	// PositionsGroup is the group on the target whose committed offsets hold the source
	// positions, written in each transaction; empty uses
	// "<consumer.group_id>-<source.alias>-positions" (and reads the name used before the
	// alias was part of it, "<consumer.group_id>-positions", for partitions without a
	// position, so that an upgrade resumes where the old version stopped).
	PositionsGroup string `mapstructure:"positions_group"`
	// PositionsRefresh is how often the positions of partitions that had no transaction in
	// that time are committed again (the positions group has no members, so the target
	// expires its offsets offsets.retention.minutes, 7 days by default, after their last
	// commit). Keep it well under offsets.retention.minutes.
	PositionsRefresh time.Duration `mapstructure:"positions_refresh"`
	Transaction      Transaction   `mapstructure:"transaction"`
}

// Transaction sizes the transactions of exactly_once delivery: one is committed when it holds
// MaxRecords records or MaxBytes bytes, or MaxAge after it began, whichever comes first; while
// more records wait for its slot (catching up), BacklogMaxAge after it began instead of MaxAge.
type Transaction struct {
	MaxRecords    int           `mapstructure:"max_records"`
	MaxBytes      int64         `mapstructure:"max_bytes"`
	MaxAge        time.Duration `mapstructure:"max_age"`
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

type OffsetMap struct {
	// Enabled records, from every acknowledgement, where each source record was copied, in a
	// compacted topic on the target; group offset sync and failover translate with it.
	Enabled bool `mapstructure:"enabled"`
	// Topic is the map topic on the target; empty means "__kmirror.offset-map.<source alias>".
	Topic string `mapstructure:"topic"`
	// FlushInterval is how often the map's new entries are written.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
}

// Groups configures consumer-group offset sync: the source groups' committed offsets, translated
// exactly, committed to the same groups on the target while they have no members there.
type Groups struct {
	// Include and Exclude are regular expressions over group ids (each must match the whole id);
	// empty Include syncs no group. kmirror's own group is never synced.
	Include []string `mapstructure:"include"`
	Exclude []string `mapstructure:"exclude"`
	// SyncInterval is how often the groups are synced.
	SyncInterval time.Duration `mapstructure:"sync_interval"`
}

// Heartbeats configures the heartbeat records kmirror writes to its own topic on the source and
// mirrors with everything else (pkg/heartbeat), so the target holds a fresh record of the flow
// even while every business topic is idle.
type Heartbeats struct {
	// Enabled writes a heartbeat every Interval.
	Enabled bool `mapstructure:"enabled"`
	// Topic starts the heartbeat topics' names: on the source "<topic>.<source alias>".
	Topic string `mapstructure:"topic"`
	// Interval is the time between two heartbeats.
	Interval time.Duration `mapstructure:"interval"`
}

// HeartbeatTopic returns the flow's heartbeat topic on the source: "<heartbeats.topic>.<source
// alias>".
func (c *Config) HeartbeatTopic() string { return c.Heartbeats.Topic + "." + c.Source.Alias }

// Shutdown configures the graceful stop.
type Shutdown struct {
	Timeout time.Duration `mapstructure:"timeout"`
}

// Runtime tunes the Go runtime of the kmirror process.
type Runtime struct {
	// GCPercent is GOGC: how far the heap may grow past the live data before the next
	// collection. The GOGC environment variable, when set, wins.
	GCPercent int `mapstructure:"gc_percent"`
}

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Telemetry configures the HTTP endpoint (metrics, health, profiling) and tracing.
type Telemetry struct {
	// Listen is the address of /metrics, /healthz and /readyz; empty disables the endpoint.
	Listen string `mapstructure:"listen"`
	// Pprof serves /debug/pprof on the same address.
	Pprof bool `mapstructure:"pprof"`
	// SaramaMetrics exports sarama's own client metrics, bridged from go-metrics
	// (kmirror_sarama_*{client}). Off by default: they are two thirds of a scrape (per client,
	// per broker, per API key), and off, sarama does not make them at all.
	SaramaMetrics bool `mapstructure:"sarama_metrics"`
	// SaramaTopicMetrics also exports sarama's per-topic metrics (kmirror_sarama_topic_*); it
	// needs SaramaMetrics. Off by default: they cost memory, CPU and scrape size with every topic
	// mirrored.
	SaramaTopicMetrics bool `mapstructure:"sarama_topic_metrics"`
	// StallAfter is how long a partition with records to mirror may go without an
	// acknowledgement before it is reported stalled (metric, log line, /readyz).
	StallAfter time.Duration `mapstructure:"stall_after"`
	Tracing    Tracing       `mapstructure:"tracing"`
}

// Tracing configures OpenTelemetry traces exported over OTLP (to Jaeger, for instance).
type Tracing struct {
	// Endpoint is the OTLP collector (host:port); empty disables tracing.
	Endpoint string `mapstructure:"endpoint"`
	// Protocol is grpc or http.
	Protocol string `mapstructure:"protocol"`
	// Insecure sends OTLP without TLS.
	Insecure bool `mapstructure:"insecure"`
	// SampleRatio is the share of new traces recorded; records that carry a sampled trace
	// context are always followed.
	SampleRatio float64 `mapstructure:"sample_ratio"`
	// PropagateToTarget rewrites a traced record's traceparent/tracestate headers on its copy
	// so that consumers of the target continue kmirror's span. Off (the default), every copy
	// keeps exactly the source's headers.
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
