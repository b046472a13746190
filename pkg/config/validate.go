package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// DrainMargin is the time a revoked partition's drain keeps free inside
// consumer.rebalance_timeout, for the final commit and rejoining the group.
const DrainMargin = 15 * time.Second

// MinVersion is the oldest Kafka protocol version kmirror accepts: it needs record headers,
// idempotent production and the modern fetch and consumer-group APIs.
var minVersion = sarama.V2_8_0_0

// instanceID is what Kafka accepts as a group.instance.id.
var instanceID = regexp.MustCompile(`^[0-9a-zA-Z._-]+$`)

// Validate checks every value and returns all problems at once, each naming its key and what
// is expected.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	c.Source.validate("source", bad)
	c.Target.validate("target", bad)
	// A cluster mirrored into itself reads its own copies back, whatever the policy: with identity
	// it appends every record to its own topic forever, with prefix it nests a topic a level
	// deeper at every refresh (europe.orders, europe.europe.orders, ...). Aliases name the
	// clusters in topic names, the offset map and the provenance header: two clusters with one
	// name cannot be told apart, so the cycle rules could not work.
	if c.Source.Alias != "" && strings.EqualFold(c.Source.Alias, c.Target.Alias) {
		bad("target.alias", "%q is also the source's alias (source.alias %q): the aliases name the clusters in topic names "+
			"(prefix policy), in the provenance header and in the offset map, and with one name for both kmirror cannot tell a "+
			"copy from an original, nor stop a cycle; give each cluster its own alias (e.g. europe and us)", c.Target.Alias, c.Source.Alias)
	}
	if b, ok := sameCluster(c.Source.Bootstrap, c.Target.Bootstrap); ok {
		bad("target.bootstrap", "source and target are the same cluster (source.bootstrap and target.bootstrap both name %s): "+
			"kmirror would read its own copies back forever (with replication_policy %s, %s); point target.bootstrap at "+
			"another cluster", b, c.Topics.ReplicationPolicy, selfMirror(c.Topics.ReplicationPolicy, c.Source.Alias))
	}

	for i, re := range c.Topics.Include {
		if _, err := regexp.Compile(re); err != nil {
			bad(fmt.Sprintf("topics.include[%d]", i), "invalid regular expression %q: %v", re, unwrapRE(err))
		}
	}
	for i, re := range c.Topics.Exclude {
		if _, err := regexp.Compile(re); err != nil {
			bad(fmt.Sprintf("topics.exclude[%d]", i), "invalid regular expression %q: %v", re, unwrapRE(err))
		}
	}
	for _, list := range []struct {
		key string
		res []string
	}{{"groups.include", c.Groups.Include}, {"groups.exclude", c.Groups.Exclude}} {
		for i, re := range list.res {
			if _, err := regexp.Compile(re); err != nil {
				bad(fmt.Sprintf("%s[%d]", list.key, i), "invalid regular expression %q: %v", re, unwrapRE(err))
			}
		}
	}
	if len(c.Groups.Include) > 0 && !c.OffsetMap.Enabled {
		bad("groups.include", "group offsets are translated with the offset map: set offset_map.enabled: true, or leave groups.include empty")
	}
	if len(c.Topics.Include) == 0 {
		bad("topics.include", "empty: list at least one regular expression (\".*\" mirrors every topic)")
	}
	if c.Topics.RefreshInterval < 1e9 {
		bad("topics.refresh_interval", "%s is too short: use 1s or more", c.Topics.RefreshInterval)
	}
	if !slices.Contains([]string{PolicyIdentity, PolicyPrefix}, c.Topics.ReplicationPolicy) {
		bad("topics.replication_policy", "%q: want identity or prefix", c.Topics.ReplicationPolicy)
	}
	for i, key := range c.Topics.SyncConfigs {
		if why, ok := neverSynced[strings.ToLower(strings.TrimSpace(key))]; ok {
			bad(fmt.Sprintf("topics.sync_configs[%d]", i), "%q is never copied: %s; remove it from the list", key, why)
		}
	}
	if c.Topics.ReplicationFactor < 1 || c.Topics.ReplicationFactor > 32767 {
		bad("topics.replication_factor", "%d: want 1 or more (it is capped at the target's broker count)", c.Topics.ReplicationFactor)
	}

	if strings.TrimSpace(c.Consumer.GroupID) == "" {
		bad("consumer.group_id", "empty: name the source consumer group kmirror replicas share")
	}
	if id := c.Consumer.GroupInstanceID; id != "" && (!instanceID.MatchString(id) || len(id) > 249 || id == "." || id == "..") {
		bad("consumer.group_instance_id", "%q: want up to 249 of the characters a-z A-Z 0-9 . _ - (Kafka's rule), "+
			"unique per replica, e.g. ${HOSTNAME}", id)
	}
	oneOf(bad, "consumer.initial_offset", c.Consumer.InitialOffset, "oldest", "newest", "earliest", "latest")
	oneOf(bad, "consumer.isolation_level", c.Consumer.IsolationLevel, "read_committed", "read_uncommitted")
	oneOf(bad, "consumer.rebalance_strategy", c.Consumer.RebalanceStrategy, "sticky", "range", "roundrobin")
	atLeast(bad, "consumer.session_timeout", c.Consumer.SessionTimeout, time.Second)
	atLeast(bad, "consumer.heartbeat_interval", c.Consumer.HeartbeatInterval, 100*time.Millisecond)
	atLeast(bad, "consumer.rebalance_timeout", c.Consumer.RebalanceTimeout, time.Second)
	if c.Consumer.HeartbeatInterval >= c.Consumer.SessionTimeout && c.Consumer.SessionTimeout > 0 {
		bad("consumer.heartbeat_interval", "%s must be shorter than consumer.session_timeout (%s); a third of it is usual",
			c.Consumer.HeartbeatInterval, c.Consumer.SessionTimeout)
	}
	positive(bad, "consumer.fetch_max_bytes", int64(c.Consumer.FetchMaxBytes))
	positive(bad, "consumer.fetch_partition_bytes", int64(c.Consumer.FetchPartitionBytes))
	positive(bad, "consumer.fetch_min_bytes", int64(c.Consumer.FetchMinBytes))
	if c.Consumer.FetchMinBytes > c.Consumer.FetchMaxBytes && c.Consumer.FetchMaxBytes > 0 {
		bad("consumer.fetch_min_bytes", "%d is more than consumer.fetch_max_bytes (%d): a fetch could never be answered before fetch_max_wait",
			c.Consumer.FetchMinBytes, c.Consumer.FetchMaxBytes)
	}
	atLeast(bad, "consumer.fetch_max_wait", c.Consumer.FetchMaxWait, time.Millisecond)
	if c.Consumer.FetchLanes < 0 || c.Consumer.FetchLanes > MaxFetchLanes {
		bad("consumer.fetch_lanes", "%d: want 0 (1 lane, or %d for a distant source) to %d fetch loops per source broker",
			c.Consumer.FetchLanes, DistantFetchLanes, MaxFetchLanes)
	}
	if c.Consumer.DistantRTT < 0 {
		bad("consumer.distant_rtt", "%s is negative: use 0 (fetches keep consumer.fetch_partition_bytes) or a duration such as 10ms",
			c.Consumer.DistantRTT)
	}
	if c.Consumer.DistantFetchPartitionBytes < 0 {
		bad("consumer.distant_fetch_partition_bytes", "%d is negative: use 0 (a distant source's partitions are fetched with the largest batch their topics accept) or a size such as 4194304",
			c.Consumer.DistantFetchPartitionBytes)
	}
	if c.Consumer.MaxHeldBytes < 0 {
		bad("consumer.max_held_bytes", "%d is negative: use 0 (no bound across partitions) or a size such as 134217728",
			c.Consumer.MaxHeldBytes)
	}
	if c.Consumer.FetchWaitPerPartition < 0 {
		bad("consumer.fetch_wait_per_partition", "%s is negative: use 0 (the wait stays consumer.fetch_max_wait) or a duration such as 200us",
			c.Consumer.FetchWaitPerPartition)
	}
	oneOf(bad, "consumer.source_loss_policy", c.Consumer.SourceLossPolicy, LossFail, LossContinue)

	oneOf(bad, "delivery.mode", c.Delivery.Mode, AtLeastOnce, ExactlyOnce)
	if c.Delivery.Slots < 1 || c.Delivery.Slots > 4096 {
		bad("delivery.slots", "%d: want 1 to 4096 (one transactional id each; fixed for the life of a mirror)", c.Delivery.Slots)
	}
	positive(bad, "delivery.transaction.max_records", int64(c.Delivery.Transaction.MaxRecords))
	positive(bad, "delivery.transaction.max_bytes", c.Delivery.Transaction.MaxBytes)
	atLeast(bad, "delivery.transaction.max_age", c.Delivery.Transaction.MaxAge, time.Millisecond)
	atLeast(bad, "delivery.positions_refresh", c.Delivery.PositionsRefresh, time.Second)
	if c.Delivery.PositionsRefresh > 24*time.Hour {
		bad("delivery.positions_refresh", "%s: keep it well under the target's offsets.retention.minutes (7 days by default), "+
			"after which an uncommitted position expires; use 24h or less", c.Delivery.PositionsRefresh)
	}
	if c.Delivery.Mode == ExactlyOnce {
		if c.Producer.RefusedPolicy == RefusedDeadLetter {
			bad("producer.refused_policy", "dead_letter is not available with delivery.mode exactly_once (the dead letter would be "+
				"written outside the transaction): use fail or skip")
		}
		if c.Consumer.IsolationLevel != "read_committed" {
			bad("consumer.isolation_level", "%s: delivery.mode exactly_once copies committed source records only; use read_committed",
				c.Consumer.IsolationLevel)
		}
		if c.Delivery.Transaction.MaxAge > c.Producer.DeliveryTimeout/2 {
			bad("delivery.transaction.max_age", "%s: keep it well under producer.delivery_timeout (%s), which bounds how long a record may wait for its commit",
				c.Delivery.Transaction.MaxAge, c.Producer.DeliveryTimeout)
		}
		if t := c.Delivery.Transaction; t.BacklogMaxAge > c.Producer.DeliveryTimeout/2 {
			bad("delivery.transaction.backlog_max_age", "%s: keep it well under producer.delivery_timeout (%s), which bounds how long a record may wait for its commit",
				t.BacklogMaxAge, c.Producer.DeliveryTimeout)
		}
	}
	atLeast(bad, "offset_map.flush_interval", c.OffsetMap.FlushInterval, 100*time.Millisecond)
	atLeast(bad, "groups.sync_interval", c.Groups.SyncInterval, time.Second)
	if t := c.OffsetMap.Topic; t != "" && !strings.HasPrefix(t, "__") {
		bad("offset_map.topic", "%q: the map topic must start with \"__\", so that no mirror copies it", t)
	}
	atLeast(bad, "heartbeats.interval", c.Heartbeats.Interval, 100*time.Millisecond)
	if t := c.Heartbeats.Topic; strings.HasPrefix(t, "__") || t == "" {
		bad("heartbeats.topic", "%q: heartbeats are mirrored, and kmirror never mirrors a topic starting with \"__\" (default kmirror.heartbeats)", t)
	} else if why := badTopicName(c.HeartbeatTopic()); why != "" {
		bad("heartbeats.topic", "%q: the heartbeat topic %q: %s", t, c.HeartbeatTopic(), why)
	}
	if c.Runtime.GCPercent < 10 || c.Runtime.GCPercent > 10000 {
		bad("runtime.gc_percent", "%d: want 10 to 10000 (100 is Go's default; set GOGC=off in the environment to turn collection off)", c.Runtime.GCPercent)
	}

	if c.Ring.Workers < 1 || c.Ring.Workers > 1024 {
		bad("ring.workers", "%d: want 1 to 1024", c.Ring.Workers)
	}
	if c.Ring.InboxRecords < 2 || c.Ring.InboxRecords > 1<<24 {
		bad("ring.inbox_records", "%d: want 2 to 16777216", c.Ring.InboxRecords)
	}
	positive(bad, "ring.inbox_bytes", c.Ring.InboxBytes)
	if c.Ring.PartitionInFlight < 2 || c.Ring.PartitionInFlight > 1<<24 {
		bad("ring.partition_in_flight", "%d: want 2 to 16777216", c.Ring.PartitionInFlight)
	}

	positive(bad, "producer.batch_bytes", int64(c.Producer.BatchBytes))
	positive(bad, "producer.batch_records", int64(c.Producer.BatchRecords))
	if c.Producer.Linger < 0 {
		bad("producer.linger", "%s: want 0 or more", c.Producer.Linger)
	}
	if c.Producer.DistantLinger < 0 {
		bad("producer.distant_linger", "%s: want 0 (a distant target keeps producer.linger) or more, such as 20ms", c.Producer.DistantLinger)
	}
	oneOf(bad, "producer.compression", c.Producer.Compression, "none", "gzip", "snappy", "lz4", "zstd")
	positive(bad, "producer.max_message_bytes", int64(c.Producer.MaxMessageBytes))
	if c.Producer.DeliveryTimeout < time.Second {
		bad("producer.delivery_timeout", "%s is too short: a record needs time for retries while a broker fails over; "+
			"use 1s or more (Kafka's delivery.timeout.ms default is 2m)", c.Producer.DeliveryTimeout)
	}
	if c.Producer.RetryBackoff < 0 || c.Producer.RetryBackoff > time.Second {
		bad("producer.retry_backoff", "%s: want 0 to 1s (the pause doubles from it up to 1s)", c.Producer.RetryBackoff)
	}
	oneOf(bad, "producer.refused_policy", c.Producer.RefusedPolicy, RefusedFail, RefusedSkip, RefusedDeadLetter)
	// A revoked partition is drained (its records acknowledged, or failed by delivery_timeout)
	// before the member rejoins; the group coordinator waits rebalance_timeout for that. A drain
	// cut short would leave records in a producer that might land after another member took the
	// partition over.
	if rt, dt := c.Consumer.RebalanceTimeout, c.Producer.DeliveryTimeout; rt > 0 && dt > 0 && rt < dt+DrainMargin {
		bad("consumer.rebalance_timeout", "%s must exceed producer.delivery_timeout (%s) by %s or more: a revoked partition "+
			"waits for its records up to delivery_timeout before the member rejoins", rt, dt, DrainMargin)
	}
	if rt, st := c.Consumer.RebalanceTimeout, c.Shutdown.Timeout; rt > 0 && st > 0 && rt < st+DrainMargin {
		bad("shutdown.timeout", "%s must be shorter than consumer.rebalance_timeout (%s) by %s or more", st, rt, DrainMargin)
	}
	if t := c.Producer.DeadLetterTopic; t != "" {
		if why := badTopicName(t); why != "" {
			bad("producer.dead_letter_topic", "%q: %s (empty uses %s<source.alias>)", t, why, DeadLetterPrefix)
		}
	}

	atLeast(bad, "commit.interval", c.Commit.Interval, 10*time.Millisecond)
	atLeast(bad, "shutdown.timeout", c.Shutdown.Timeout, time.Second)
	oneOf(bad, "log.level", strings.ToLower(c.Log.Level), "debug", "info", "warn", "error")
	oneOf(bad, "log.format", c.Log.Format, "console", "json")

	if l := c.Telemetry.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			bad("telemetry.listen", "%q: want host:port or :port (empty disables the endpoint)", l)
		}
	}
	atLeast(bad, "telemetry.stall_after", c.Telemetry.StallAfter, time.Second)
	if c.Telemetry.SaramaTopicMetrics && !c.Telemetry.SaramaMetrics {
		bad("telemetry.sarama_topic_metrics", "true needs telemetry.sarama_metrics: true (sarama's metrics are not exported at all without it)")
	}
	if c.Telemetry.Tracing.Endpoint != "" {
		oneOf(bad, "telemetry.tracing.protocol", c.Telemetry.Tracing.Protocol, "grpc", "http")
	}
	if r := c.Telemetry.Tracing.SampleRatio; r < 0 || r > 1 {
		bad("telemetry.tracing.sample_ratio", "%v: want a number from 0 to 1", r)
	}
	return errors.Join(errs...)
}

// neverSynced are topic configs kmirror refuses to copy onto a target topic, and why.
var neverSynced = map[string]string{
	"message.timestamp.type": "a LogAppendTime target topic makes the target broker overwrite every copy's " +
		"timestamp with its own append time, so the copies would not carry the source records' timestamps " +
		"(MirrorMaker 2 excludes it for the same reason)",
	"message.timestamp.difference.max.ms": "Kafka 4.0 removed it and refuses to create a topic that sets it; " +
		"kmirror carries a source topic's value over as message.timestamp.before.max.ms and " +
		"message.timestamp.after.max.ms, as Kafka 3.6 and later read it, when those two are listed",
	"leader.replication.throttled.replicas": "it lists partition:broker pairs of the source cluster's brokers, " +
		"which mean other brokers or none on the target (MirrorMaker 2 excludes it too)",
	"follower.replication.throttled.replicas": "it lists partition:broker pairs of the source cluster's brokers, " +
		"which mean other brokers or none on the target (MirrorMaker 2 excludes it too)",
	"unclean.leader.election.enable": "it would let the target elect an out-of-sync leader and lose copies it " +
		"acknowledged: the target's durability is the target's own setting (MirrorMaker 2 excludes it too)",
}

// badTopicName says what is wrong with a Kafka topic name, or "" when it is legal.
func badTopicName(t string) string {
	switch {
	case t == "." || t == "..":
		return "not a legal topic name"
	case len(t) > 249:
		return fmt.Sprintf("%d characters: Kafka allows at most 249", len(t))
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("%q is not allowed in a topic name: use letters, digits, '.', '_' or '-'", r)
		}
	}
	return ""
}

func (cl *Cluster) validate(key string, bad func(key, format string, args ...any)) {
	if strings.TrimSpace(cl.Alias) == "" {
		bad(key+".alias", "empty: name the cluster (e.g. europe)")
	} else if strings.ContainsAny(cl.Alias, " ./\\") {
		bad(key+".alias", "%q: use letters, digits, '-' or '_' (it becomes part of topic names)", cl.Alias)
	}
	if len(cl.Bootstrap) == 0 {
		bad(key+".bootstrap", "empty: list at least one broker as host:port")
	}
	for i, b := range cl.Bootstrap {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			bad(fmt.Sprintf("%s.bootstrap[%d]", key, i), "%q: want host:port", b)
		}
	}
	v, err := sarama.ParseKafkaVersion(cl.Version)
	switch {
	case err != nil:
		bad(key+".version", "%q: want a Kafka version such as 3.6.0", cl.Version)
	case !v.IsAtLeast(minVersion):
		bad(key+".version", "%s is too old: kmirror needs 2.8.0 or newer", cl.Version)
	}
	atLeast(bad, key+".dial_timeout", cl.DialTimeout, 100*time.Millisecond)
	atLeast(bad, key+".read_timeout", cl.ReadTimeout, 100*time.Millisecond)
	atLeast(bad, key+".write_timeout", cl.WriteTimeout, 100*time.Millisecond)
	atLeast(bad, key+".metadata_refresh", cl.MetadataRefresh, time.Second)

	if !cl.TLS.Enabled && (cl.TLS.CAFile != "" || cl.TLS.CertFile != "" || cl.TLS.KeyFile != "") {
		bad(key+".tls.enabled", "false, but tls files are set: set enabled: true or remove them")
	}
	if (cl.TLS.CertFile == "") != (cl.TLS.KeyFile == "") {
		bad(key+".tls.cert_file", "cert_file and key_file go together (mutual TLS needs both)")
	}
	switch cl.SASL.Mechanism {
	case "":
		if cl.SASL.Username != "" {
			bad(key+".sasl.mechanism", "empty, but a username is set: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if cl.SASL.Username == "" {
			bad(key+".sasl.username", "empty: SASL %s needs a username", cl.SASL.Mechanism)
		}
		if cl.SASL.Password != "" && cl.SASL.PasswordFile != "" {
			bad(key+".sasl.password", "set both inline and as password_file: keep one")
		}
		if cl.SASL.Password == "" && cl.SASL.PasswordFile == "" {
			bad(key+".sasl.password_file", "empty: SASL needs a password (password_file, or the %s_%s_SASL_PASSWORD variable)",
				EnvPrefix, strings.ToUpper(key))
		}
	default:
		bad(key+".sasl.mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cl.SASL.Mechanism)
	}
}

func oneOf(bad func(key, format string, args ...any), key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		bad(key, "%q: want one of %s", val, strings.Join(allowed, ", "))
	}
}

// atLeast refuses a duration below min: a value without a unit, or a typo, that would make
// kmirror spin (a 5 ns commit interval commits in a loop).
func atLeast(bad func(key, format string, args ...any), key string, d, min time.Duration) {
	if d < min {
		bad(key, "%s is too short: use %s or more (durations need a unit: 500ms, 5s, 2m)", d, min)
	}
}

func positive(bad func(key, format string, args ...any), key string, v int64) {
	if v <= 0 {
		bad(key, "must be greater than 0")
	}
}

// selfMirror says what a cluster mirrored into itself does under policy.
func selfMirror(policy, alias string) string {
	if policy == PolicyPrefix {
		return fmt.Sprintf("a copy of each topic nested one level deeper at every refresh: %s.orders, %s.%s.orders, ...", alias, alias, alias)
	}
	return "every record appended to its own topic again and again"
}

// sameCluster returns a broker two bootstrap lists have in common, if any. Host names are
// compared without case and a trailing dot, and the loopback names (localhost, 127.0.0.1,
// ::1) as one host: a cluster given twice under two spellings is still one cluster. A cluster
// reached through two unrelated names is not caught here; kmirror compares the cluster IDs the
// brokers report when it starts (and validate --connect does).
func sameCluster(a, b []string) (string, bool) {
	for _, x := range a {
		for _, y := range b {
			if brokerKey(x) == brokerKey(y) {
				return x, true
			}
		}
	}
	return "", false
}

// brokerKey normalises a host:port for sameCluster.
func brokerKey(addr string) string {
	addr = strings.TrimSpace(addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.ToLower(addr)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || host == "::1" || host == "127.0.0.1" {
		host = "loopback"
	}
	return host + ":" + port
}

func unwrapRE(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s in %q", se.Code, se.Expr)
	}
	return err.Error()
}
