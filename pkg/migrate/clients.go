package migrate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// jaasField reads username="..." and password="..." out of a sasl.jaas.config.
var jaasField = regexp.MustCompile(`(username|password)\s*=\s*"([^"]*)"`)

// clusters maps the two clusters of the flow: aliases, bootstrap servers, TLS and SASL.
func (m *mapper) clusters() {
	for _, c := range []struct{ key, alias string }{{"source", m.s}, {"target", m.t}} {
		m.set(c.key+".alias", c.alias, "clusters")
		v, k, ok := m.cluster(c.alias, "bootstrap.servers")
		if !ok {
			m.fail("%s.bootstrap.servers is not set: kmirror needs the %s cluster's brokers", c.alias, c.key)
			continue
		}
		m.set(c.key+".bootstrap", list(v), m.from(k))
		if sec, ok := m.in.Security[c.alias]; ok {
			m.strimziSecurity(c.key, sec)
		} else {
			m.propsSecurity(c.key, c.alias)
		}
		if v, k, ok := m.cluster(c.alias, "client.id"); ok {
			m.set(c.key+".client_id", v, m.from(k))
		}
	}
	m.set("consumer.group_id", m.res.GroupID, "--group, or kmirror-<source>-<target> (MirrorMaker 2 reads the source without a group)")
}

func (m *mapper) strimziSecurity(key string, sec *Security) {
	if sec.TLS {
		m.set(key+".tls.enabled", true, sec.From+".tls")
		if sec.CAFile != "" {
			m.set(key+".tls.ca_file", sec.CAFile, sec.From+".tls.trustedCertificates")
			m.note(sec.From+".tls.trustedCertificates", "", Approximated, "mount the Secret at "+SecretsDir+"/<secret name> in the kmirror pod: "+key+".tls.ca_file names "+sec.CAFile)
		}
	}
	if sec.CertFile != "" {
		m.set(key+".tls.cert_file", sec.CertFile, sec.From+".authentication.certificateAndKey")
		m.set(key+".tls.key_file", sec.KeyFile, sec.From+".authentication.certificateAndKey")
		m.note(sec.From+".authentication.certificateAndKey", "", Approximated, "mount the Secret at "+SecretsDir+"/<secret name>: "+key+".tls.cert_file and key_file name the files")
	}
	if sec.Mechanism != "" {
		m.set(key+".sasl.mechanism", sec.Mechanism, sec.From+".authentication.type")
		m.set(key+".sasl.username", sec.Username, sec.From+".authentication.username")
		if sec.PasswordFile != "" {
			m.set(key+".sasl.password_file", sec.PasswordFile, sec.From+".authentication.passwordSecret")
			m.note(sec.From+".authentication.passwordSecret", "", Approximated, "mount the Secret at "+SecretsDir+"/<secret name>: "+key+".sasl.password_file names "+sec.PasswordFile)
		}
	}
}

// propsSecurity maps a cluster's security.protocol, ssl.* and sasl.* settings.
func (m *mapper) propsSecurity(key, alias string) {
	proto, pk, _ := m.cluster(alias, "security.protocol")
	proto = strings.ToUpper(proto)
	tls := proto == "SSL" || proto == "SASL_SSL"
	sasl := proto == "SASL_PLAINTEXT" || proto == "SASL_SSL"
	if proto != "" && proto != "PLAINTEXT" && !tls && !sasl {
		m.fail("%s = %q: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", pk, proto)
	}
	if tls {
		m.set(key+".tls.enabled", true, m.from(pk))
	}
	storeType := func(kind string) string {
		v, _, ok := m.cluster(alias, "ssl."+kind+".type")
		if !ok {
			return "JKS"
		}
		return strings.ToUpper(v)
	}
	if loc, k, ok := m.cluster(alias, "ssl.truststore.location"); ok {
		if storeType("truststore") == "PEM" {
			m.set(key+".tls.ca_file", loc, m.from(k))
		} else {
			m.note(k, loc, Approximated, fmt.Sprintf("kmirror reads PEM files: export the CA certificates (keytool -exportcert -rfc -keystore %s) "+
				"and set %s.tls.ca_file; until then the system's CAs are trusted", loc, key))
		}
	}
	if loc, k, ok := m.cluster(alias, "ssl.keystore.location"); ok {
		if storeType("keystore") == "PEM" {
			m.set(key+".tls.cert_file", loc, m.from(k))
			m.set(key+".tls.key_file", loc, m.from(k))
		} else {
			m.note(k, loc, NoEquivalent, fmt.Sprintf("kmirror reads PEM files: convert the keystore (openssl pkcs12) and set %s.tls.cert_file and key_file", key))
		}
	}
	if v, k, ok := m.cluster(alias, "ssl.endpoint.identification.algorithm"); ok && v == "" {
		m.note(k, "(empty)", NoEquivalent, fmt.Sprintf("kmirror always checks the broker's host name; set %s.tls.server_name to the name in its certificate", key))
	}
	for _, drop := range []string{"ssl.truststore.type", "ssl.keystore.type", "ssl.truststore.password", "ssl.keystore.password", "ssl.key.password", "ssl.protocol", "ssl.enabled.protocols"} {
		if v, k, ok := m.cluster(alias, drop); ok {
			m.note(k, v, NoEquivalent, "kmirror reads PEM files without passwords and negotiates TLS 1.2 or newer")
		}
	}
	if !sasl {
		return
	}
	mech, mk, ok := m.cluster(alias, "sasl.mechanism")
	if !ok {
		mech, mk = "GSSAPI", "sasl.mechanism (Kafka's default)"
	}
	switch strings.ToUpper(mech) {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		m.set(key+".sasl.mechanism", strings.ToUpper(mech), m.from(mk))
	default:
		m.fail("%s = %s: kmirror authenticates with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 only", m.from(mk), mech)
		return
	}
	jaas, jk, ok := m.cluster(alias, "sasl.jaas.config")
	if !ok {
		m.fail("%s.sasl.jaas.config is not set: kmirror needs the %s cluster's SASL username and password", alias, key)
		return
	}
	fields := map[string]string{}
	for _, f := range jaasField.FindAllStringSubmatch(jaas, -1) {
		fields[f[1]] = f[2]
	}
	m.set(key+".sasl.username", fields["username"], m.from(jk))
	pw := fields["password"]
	switch {
	case pw == "" || strings.Contains(pw, "${"):
		file := fmt.Sprintf("/etc/kmirror/%s-sasl-password", alias)
		m.set(key+".sasl.password_file", file, m.from(jk))
		m.note(jk, "", Approximated, fmt.Sprintf("the password is not written out (a config provider kmirror cannot resolve, or none): "+
			"put it in %s or set KMIRROR_%s_SASL_PASSWORD", file, strings.ToUpper(key)))
	default:
		m.set(key+".sasl.password", pw, m.from(jk))
		m.note(jk, "", Approximated, fmt.Sprintf("the password is copied inline from the JAAS line; prefer %s.sasl.password_file or KMIRROR_%s_SASL_PASSWORD", key, strings.ToUpper(key)))
	}
}

// consumer maps the source consumer's settings ("<source>.consumer.*", "consumer.*").
func (m *mapper) consumer() {
	iso, ik, ok := m.cluster(m.s, "consumer.isolation.level")
	switch {
	case !ok:
		m.note("consumer.isolation.level", "read_uncommitted (MirrorMaker 2's default)", Approximated,
			"kmirror reads read_committed (consumer.isolation_level): MirrorMaker 2 also copied the records of aborted transactions")
	default:
		m.set("consumer.isolation_level", strings.ToLower(iso), m.from(ik))
	}
	if v, k, ok := m.cluster(m.s, "consumer.auto.offset.reset"); ok {
		m.set("consumer.initial_offset", strings.ToLower(v), m.from(k))
	}
	ints := []struct{ prop, key string }{
		{"fetch.max.bytes", "consumer.fetch_max_bytes"}, {"max.partition.fetch.bytes", "consumer.fetch_partition_bytes"},
		{"fetch.min.bytes", "consumer.fetch_min_bytes"},
	}
	for _, p := range ints {
		if v, k, ok := m.cluster(m.s, "consumer."+p.prop); ok {
			m.set(p.key, m.integer(k, v), m.from(k))
		}
	}
	for _, p := range []struct{ prop, key string }{{"fetch.max.wait.ms", "consumer.fetch_max_wait"}, {"session.timeout.ms", "consumer.session_timeout"}, {"heartbeat.interval.ms", "consumer.heartbeat_interval"}} {
		if v, k, ok := m.cluster(m.s, "consumer."+p.prop); ok {
			m.set(p.key, dur(m.millis(k, v)), m.from(k))
		}
	}
}

// producer maps the target producer's settings ("<target>.producer.*", "producer.*").
func (m *mapper) producer() {
	if v, k, ok := m.cluster(m.t, "producer.compression.type"); ok {
		m.set("producer.compression", strings.ToLower(v), m.from(k))
	}
	if v, k, ok := m.cluster(m.t, "producer.batch.size"); ok {
		m.set("producer.batch_bytes", m.integer(k, v), m.from(k))
	}
	for _, p := range []struct{ prop, key string }{{"linger.ms", "producer.linger"}, {"delivery.timeout.ms", "producer.delivery_timeout"}, {"retry.backoff.ms", "producer.retry_backoff"}} {
		if v, k, ok := m.cluster(m.t, "producer."+p.prop); ok {
			m.set(p.key, dur(m.millis(k, v)), m.from(k))
		}
	}
	if v, k, ok := m.cluster(m.t, "producer.max.request.size"); ok {
		m.note(k, v, Approximated, "kmirror bounds each batch by the target topic's max.message.bytes (producer.max_message_bytes when the topic reports none)")
	}
	if v, k, ok := m.cluster(m.t, "producer.acks"); ok && v != "all" && v != "-1" {
		m.note(k, v, Approximated, "kmirror always writes with acks=all and an idempotent producer")
	}
	if v, k, ok := m.cluster(m.t, "producer.enable.idempotence"); ok {
		m.note(k, v, Approximated, "kmirror's producers are always idempotent")
	}
}

func (m *mapper) integer(key, v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		m.fail("%s = %q: want a whole number", m.from(key), v)
	}
	return n
}

// Settings kmirror has no use for, with why: Kafka Connect's machinery and MirrorMaker 2's own
// topics, which kmirror replaces with its consumer group and its offset map.
var noEquivalent = map[string]string{
	"offset-syncs.topic.replication.factor":               "kmirror keeps no offset-syncs topic: its offset map (offset_map, on the target) records every copy",
	"offset-syncs.topic.location":                         "kmirror keeps no offset-syncs topic: its offset map (offset_map, on the target) records every copy",
	"emit.offset-syncs.enabled":                           "kmirror keeps no offset-syncs topic: its offset map (offset_map, on the target) records every copy",
	"offset.lag.max":                                      "kmirror's offset map is exact: translation needs no lag bound",
	"checkpoints.topic.replication.factor":                "kmirror writes no checkpoints topic",
	"heartbeats.topic.replication.factor":                 "kmirror creates its heartbeat topic on the source itself",
	"offset.storage.replication.factor":                   "Kafka Connect's internal topics: kmirror has no Connect cluster; its positions are its consumer group's offsets on the source",
	"config.storage.replication.factor":                   "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"status.storage.replication.factor":                   "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"offset.storage.topic":                                "Kafka Connect's internal topics: kmirror has no Connect cluster (migrate reads MirrorMaker 2's positions from it: --offsets-topic)",
	"config.storage.topic":                                "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"status.storage.topic":                                "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"offset.storage.partitions":                           "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"status.storage.partitions":                           "Kafka Connect's internal topics: kmirror has no Connect cluster",
	"group.id":                                            "Kafka Connect's worker group: kmirror's replicas share consumer.group_id instead",
	"refresh.groups.interval.seconds":                     "kmirror lists the source groups at every groups.sync_interval",
	"refresh.groups.enabled":                              "kmirror lists the source groups at every groups.sync_interval",
	"dedicated.mode.enable.internal.rest":                 "kmirror has no REST API between replicas: the consumer group coordinates them",
	"replication.policy.internal.topic.separator.enabled": "kmirror's internal topics are named __kmirror.*",
	"consumer.poll.timeout.ms":                            "kmirror's fetch wait is consumer.fetch_max_wait",
	"admin.timeout.ms":                                    "kmirror's requests are bounded by source/target read_timeout",
	"plugin.path":                                         "kmirror has no plugins",
	"listeners":                                           "kmirror's HTTP endpoint is telemetry.listen (metrics, health)",
	"config.providers":                                    "kmirror reads secrets from files (password_file) or KMIRROR_* variables",
}

// noEquivalents reports the settings kmirror replaces and the few approximated by other means.
func (m *mapper) noEquivalents() {
	keys := make([]string, 0, len(noEquivalent))
	for key := range noEquivalent {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if v, k, ok := m.get(key); ok {
			m.note(k, v, NoEquivalent, noEquivalent[key])
		}
	}
	for _, key := range []string{"key.converter", "value.converter", "header.converter"} {
		if v, k, ok := m.get(key); ok && !strings.HasSuffix(v, "ByteArrayConverter") {
			m.note(k, v, NoEquivalent, "kmirror copies keys, values and headers byte for byte, as ByteArrayConverter does")
		}
	}
	if v, k, ok := m.get("tasks.max"); ok {
		m.note(k, v, Approximated, "kmirror has no tasks: replicas sharing consumer.group_id divide the partitions, and ring.workers "+
			"(8 by default) copy partitions in parallel inside each; run as many replicas as MirrorMaker 2 had workers")
	}
	if v, k, ok := m.get("offset.flush.interval.ms"); ok {
		m.set("commit.interval", dur(m.millis(k, v)), m.from(k))
	}
	for _, key := range []string{"exactly.once.source.support", "exactly.once.support"} {
		if v, k, ok := m.get(key); ok && v != "disabled" {
			m.note(k, v, Approximated, "written as delivery.mode at_least_once, which needs no transactional ACLs; set exactly_once "+
				"(delivery.mode) before or after the first start if wanted: it resumes from the positions migrate seeded "+
				"(docs/exactly-once.md on the ACLs it needs)")
		}
	}
	// Every other cluster-level client setting of the two clusters (admin.*, the target's
	// consumer, the source's producer, unmapped ssl/sasl ones) is a client tuning kmirror sets
	// itself.
	for _, k := range m.in.Keys {
		if m.used[k] {
			continue
		}
		for _, alias := range []string{m.s, m.t} {
			rest, ok := strings.CutPrefix(k, alias+".")
			if !ok || strings.Contains(rest, "->") {
				continue
			}
			m.used[k] = true
			m.note(k, m.in.Props[k], NoEquivalent, fmt.Sprintf("a Kafka client setting of cluster %s that kmirror does not take (see configs/kmirror.yaml for what it does)", alias))
		}
	}
}
