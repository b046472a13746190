package config

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmirror.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
source: {bootstrap: ["eu-1:9092"]}
target: {bootstrap: ["us-1:9092"]}
`

// TestExampleFileMatchesDefaults keeps configs/kmirror.yaml honest: it must list every key, with
// the default value, so that loading it gives Default() (bootstrap lists aside).
func TestExampleFileMatchesDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "configs", "kmirror.yaml"), nil)
	if err != nil {
		t.Fatalf("load the example: %v", err)
	}
	want := Default()
	want.Source.Bootstrap = cfg.Source.Bootstrap
	want.Target.Bootstrap = cfg.Target.Bootstrap
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("configs/kmirror.yaml differs from Default():\n got %+v\nwant %+v", *cfg, want)
	}
	var keys []string
	walkLeaves("", reflect.ValueOf(want), func(k string, _ any) { keys = append(keys, k) })
	body, _ := os.ReadFile(filepath.Join("..", "..", "configs", "kmirror.yaml"))
	for _, k := range keys {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(body), leaf+":") {
			t.Errorf("configs/kmirror.yaml does not show key %s", k)
		}
	}
}

func TestLoadAppliesFileEnvAndOverridesInOrder(t *testing.T) {
	p := writeConfig(t, minimal+`
producer: {compression: gzip, linger: 20ms}
ring: {workers: 4}
`)
	t.Setenv("KMIRROR_PRODUCER_COMPRESSION", "zstd")
	t.Setenv("KMIRROR_TARGET_BOOTSTRAP", "us-1:9092,us-2:9092")
	cfg, err := Load(p, []string{"ring.workers=6"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Producer.Compression != "zstd" {
		t.Errorf("compression = %q, want the environment's zstd", cfg.Producer.Compression)
	}
	if cfg.Producer.Linger != 20*time.Millisecond {
		t.Errorf("linger = %s, want the file's 20ms", cfg.Producer.Linger)
	}
	if got := cfg.Target.Bootstrap; !reflect.DeepEqual(got, []string{"us-1:9092", "us-2:9092"}) {
		t.Errorf("target.bootstrap = %q, want the environment's two brokers", got)
	}
	if cfg.Ring.Workers != 6 {
		t.Errorf("ring.workers = %d, want the override's 6", cfg.Ring.Workers)
	}
	if cfg.Consumer.GroupID != "kmirror" {
		t.Errorf("group id = %q, want the default", cfg.Consumer.GroupID)
	}
}

func TestLoadRejectsBadInputNamingTheKey(t *testing.T) {
	cases := []struct {
		name string
		body string
		set  []string
		want []string
	}{
		{"unknown key", minimal + "producer: {compresion: gzip}\n", nil, []string{`"producer.compresion"`, "unknown key"}},
		{"unknown section", minimal + "mirror: {x: 1}\n", nil, []string{`"mirror.x"`}},
		{"empty bootstrap", "source: {bootstrap: []}\ntarget: {bootstrap: [\"us:9092\"]}\n", nil, []string{"source.bootstrap: empty"}},
		{"bootstrap without port", "source: {bootstrap: [\"eu\"]}\ntarget: {bootstrap: [\"us:9092\"]}\n", nil, []string{"source.bootstrap[0]", "host:port"}},
		{"bad regex", minimal + "topics: {include: [\"orders(\"]}\n", nil, []string{"topics.include[0]", "invalid regular expression"}},
		{"bad exclude regex", minimal + "topics: {exclude: [\"[a-\"]}\n", nil, []string{"topics.exclude[0]"}},
		{"same cluster identity", "source: {bootstrap: [\"k:9092\"]}\ntarget: {bootstrap: [\"k:9092\"]}\n", nil, []string{"target.bootstrap", "same cluster"}},
		// A cluster mirrored into itself with the prefix policy nested europe.europe.… at every
		// refresh: refused whatever the policy.
		{"same cluster prefix", "source: {bootstrap: [\"k:9092\"]}\ntarget: {bootstrap: [\"k:9092\"]}\ntopics: {replication_policy: prefix}\n", nil,
			[]string{"target.bootstrap", "same cluster", "source.bootstrap", "europe.europe.orders", "point target.bootstrap at another cluster"}},
		{"same cluster prefix with provenance", "source: {bootstrap: [\"k:9092\"]}\ntarget: {bootstrap: [\"k:9092\"]}\ntopics: {replication_policy: prefix, provenance_header: true}\n", nil,
			[]string{"target.bootstrap", "same cluster"}},
		{"same cluster identity with provenance", "source: {bootstrap: [\"k:9092\"]}\ntarget: {bootstrap: [\"k:9092\"]}\ntopics: {provenance_header: true}\n", nil,
			[]string{"target.bootstrap", "same cluster"}},
		{"same cluster, one broker in common", "source: {bootstrap: [\"a:9092\", \"k:9092\"]}\ntarget: {bootstrap: [\"k:9092\", \"b:9092\"]}\ntopics: {replication_policy: prefix}\n", nil,
			[]string{"target.bootstrap", "k:9092"}},
		{"same cluster spelt twice", "source: {bootstrap: [\"Kafka-1.Example.com.:9092\"]}\ntarget: {bootstrap: [\"kafka-1.example.com:9092\"]}\ntopics: {replication_policy: prefix}\n", nil,
			[]string{"target.bootstrap", "same cluster"}},
		{"same cluster on loopback", "source: {bootstrap: [\"localhost:19012\"]}\ntarget: {bootstrap: [\"127.0.0.1:19012\"]}\ntopics: {replication_policy: prefix}\n", nil,
			[]string{"target.bootstrap", "same cluster"}},
		{"same alias, other case", "source: {bootstrap: [\"eu:9092\"], alias: europe}\ntarget: {bootstrap: [\"us:9092\"], alias: Europe}\ntopics: {replication_policy: prefix}\n", nil,
			[]string{"target.alias", "source.alias", "give each cluster its own alias"}},
		{"bad compression", minimal + "producer: {compression: brotli}\n", nil, []string{"producer.compression", "brotli", "zstd"}},
		{"bad refused policy", minimal + "producer: {refused_policy: drop}\n", nil, []string{"producer.refused_policy", "dead_letter"}},
		{"bad dead-letter topic", minimal + "producer: {dead_letter_topic: \"dead letters\"}\n", nil, []string{"producer.dead_letter_topic", "' '"}},
		{"timestamp type synced", minimal + "topics: {sync_configs: [retention.ms, message.timestamp.type]}\n", nil,
			[]string{"topics.sync_configs[1]", "message.timestamp.type", "overwrite every copy's timestamp"}},
		{"timestamp difference synced", minimal + "topics: {sync_configs: [message.timestamp.difference.max.ms]}\n", nil,
			[]string{"topics.sync_configs[0]", "Kafka 4.0 removed it"}},
		{"throttled replicas synced", minimal + "topics: {sync_configs: [retention.ms, leader.replication.throttled.replicas]}\n", nil,
			[]string{"topics.sync_configs[1]", "source cluster's brokers"}},
		{"unclean election synced", minimal + "topics: {sync_configs: [unclean.leader.election.enable]}\n", nil,
			[]string{"topics.sync_configs[0]", "durability"}},
		{"bad duration", minimal + "commit: {interval: soon}\n", nil, []string{"commit.interval"}},
		{"bad number", minimal + "ring: {workers: many}\n", nil, []string{"ring.workers"}},
		{"zero workers", minimal + "ring: {workers: 0}\n", nil, []string{"ring.workers", "1 to 1024"}},
		{"old version", "source: {bootstrap: [\"eu:9092\"]}\ntarget: {bootstrap: [\"us:9092\"], version: 0.10.2.0}\n", nil, []string{"target.version", "too old"}},
		{"bad version", "target: {bootstrap: [\"us:9092\"]}\nsource: {bootstrap: [\"eu:9092\"], version: banana}\n", nil, []string{"source.version"}},
		{"same alias", "source: {bootstrap: [\"eu:9092\"]}\ntarget: {bootstrap: [\"us:9092\"], alias: europe}\n", nil, []string{"target.alias"}},
		{"sasl without user", "target: {bootstrap: [\"us:9092\"]}\nsource: {bootstrap: [\"eu:9092\"], sasl: {mechanism: SCRAM-SHA-512, password: x}}\n", nil, []string{"source.sasl.username"}},
		{"sasl bad mechanism", "target: {bootstrap: [\"us:9092\"]}\nsource: {bootstrap: [\"eu:9092\"], sasl: {mechanism: GSSAPI}}\n", nil, []string{"source.sasl.mechanism"}},
		{"tls files without tls", "source: {bootstrap: [\"eu:9092\"]}\ntarget: {bootstrap: [\"us:9092\"], tls: {ca_file: /ca.pem}}\n", nil, []string{"target.tls.enabled"}},
		{"unknown override", minimal, []string{"ring.wrkers=3"}, []string{`unknown key "ring.wrkers"`}},
		{"override without value", minimal, []string{"ring.workers"}, []string{"want key=value"}},
		{"heartbeat too long", minimal + "consumer: {heartbeat_interval: 60s}\n", nil, []string{"consumer.heartbeat_interval"}},
		{"internal heartbeat topic", minimal + "heartbeats: {topic: __heartbeats}\n", nil, []string{"heartbeats.topic", "never mirrors"}},
		{"bad heartbeat topic", minimal + "heartbeats: {topic: \"heart beats\"}\n", nil, []string{"heartbeats.topic", "' '"}},
		{"heartbeat interval too short", minimal + "heartbeats: {interval: 1ms}\n", nil, []string{"heartbeats.interval", "too short"}},
		{"sarama topic metrics without sarama metrics", minimal + "telemetry: {sarama_topic_metrics: true}\n", nil,
			[]string{"telemetry.sarama_topic_metrics", "telemetry.sarama_metrics: true"}},
		{"gc percent too low", minimal + "runtime: {gc_percent: 0}\n", nil, []string{"runtime.gc_percent", "10 to 10000"}},
		{"zero fetch min", minimal + "consumer: {fetch_min_bytes: 0}\n", nil, []string{"consumer.fetch_min_bytes"}},
		{"fetch min above max", minimal + "consumer: {fetch_min_bytes: 2000000, fetch_max_bytes: 1000000}\n", nil,
			[]string{"consumer.fetch_min_bytes", "consumer.fetch_max_bytes"}},
		{"too many fetch lanes", minimal + "consumer: {fetch_lanes: 17}\n", nil, []string{"consumer.fetch_lanes", "0 (1 lane"}},
		{"negative distant round trip", minimal + "consumer: {distant_rtt: -1ms}\n", nil,
			[]string{"consumer.distant_rtt", "negative"}},
		{"negative fetch wait per partition", minimal + "consumer: {fetch_wait_per_partition: -1ms}\n", nil,
			[]string{"consumer.fetch_wait_per_partition", "negative"}},
		// A bare number is not a duration: YAML reads it as an integer, 5 nanoseconds.
		{"duration without unit", minimal + "commit: {interval: 5}\n", nil, []string{"commit.interval", "has no unit", "5s"}},
		{"duration without unit from --set", minimal, []string{"commit.interval=5"}, []string{"commit.interval", "has no unit"}},
		{"duration too short", minimal + "commit: {interval: 1us}\n", nil, []string{"commit.interval", "too short", "10ms"}},
		{"did you mean", minimal + "producer: {compresion: gzip}\n", nil, []string{`did you mean "producer.compression"`}},
		{"did you mean in --set", minimal, []string{"ring.wrkers=3"}, []string{`did you mean "ring.workers"`}},
		{"retry_max was replaced", minimal + "producer: {retry_max: 50}\n", nil, []string{"producer.delivery_timeout"}},
		{"rebalance shorter than delivery", minimal + "consumer: {rebalance_timeout: 60s}\n", nil,
			[]string{"consumer.rebalance_timeout", "producer.delivery_timeout"}},
		// A drain cut short inside a rebalance would leave records that might land after another
		// member took the partition: shutdown.timeout must leave room in rebalance_timeout.
		{"shutdown too long for the rebalance", minimal + "shutdown: {timeout: 300s}\n", nil,
			[]string{"shutdown.timeout", "consumer.rebalance_timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.body), tc.set)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestActiveActivePairsAreAccepted: the two flows of an active-active pair, each as its own
// configuration, pass validation with either policy; ports alike on different hosts, or hosts
// alike on different ports, are different clusters.
func TestActiveActivePairsAreAccepted(t *testing.T) {
	for _, body := range []string{
		"source: {alias: europe, bootstrap: [\"eu-1:9092\"]}\ntarget: {alias: us, bootstrap: [\"us-1:9092\"]}\ntopics: {replication_policy: prefix}\n",
		"source: {alias: us, bootstrap: [\"us-1:9092\"]}\ntarget: {alias: europe, bootstrap: [\"eu-1:9092\"]}\ntopics: {replication_policy: prefix}\n",
		"source: {alias: europe, bootstrap: [\"eu-1:9092\"]}\ntarget: {alias: us, bootstrap: [\"us-1:9092\"]}\ntopics: {provenance_header: true}\n",
		"source: {alias: us, bootstrap: [\"127.0.0.1:29012\"]}\ntarget: {alias: europe, bootstrap: [\"127.0.0.1:19012\"]}\ntopics: {provenance_header: true}\n",
	} {
		cfg, err := Load(writeConfig(t, body), nil)
		if err != nil {
			t.Errorf("refused %q: %v", body, err)
			continue
		}
		if strings.Contains(body, "provenance_header") && !cfg.Topics.ProvenanceHeader {
			t.Errorf("%q: provenance_header not read", body)
		}
	}
}

func TestDefaultsSyncAcceptanceConfigsButNeverTheTimestampType(t *testing.T) {
	d := Default()
	for _, key := range []string{"message.timestamp.after.max.ms", "message.timestamp.before.max.ms"} {
		if !slices.Contains(d.Topics.SyncConfigs, key) {
			t.Errorf("topics.sync_configs lacks %s: a topic kmirror creates must accept what the source accepted", key)
		}
	}
	for _, key := range []string{"message.timestamp.type", "message.timestamp.difference.max.ms"} {
		if slices.Contains(d.Topics.SyncConfigs, key) {
			t.Errorf("topics.sync_configs holds %s by default", key)
		}
	}
	if d.Producer.RefusedPolicy != RefusedFail || d.Producer.DeadLetterTopic != "" || d.Telemetry.Tracing.PropagateToTarget {
		t.Errorf("refused_policy %q, dead_letter_topic %q, propagate_to_target %v: want fail, empty, false",
			d.Producer.RefusedPolicy, d.Producer.DeadLetterTopic, d.Telemetry.Tracing.PropagateToTarget)
	}
	if got := d.DeadLetterTopicName(); got != "__kmirror.dead-letter.europe" {
		t.Errorf("DeadLetterTopicName() = %q, want __kmirror.dead-letter.europe", got)
	}
	d.Producer.DeadLetterTopic = "refused"
	if got := d.DeadLetterTopicName(); got != "refused" {
		t.Errorf("DeadLetterTopicName() = %q, want the configured refused", got)
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	_, err := Load(writeConfig(t, `
source: {bootstrap: []}
target: {bootstrap: []}
ring: {workers: 0}
`), nil)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{"source.bootstrap", "target.bootstrap", "ring.workers"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %s: %v", w, err)
		}
	}
}

func TestUnknownSettingInTheEnvironmentIsAnError(t *testing.T) {
	t.Setenv("KMIRROR_PRODUCER_COMPRESION", "zstd")
	t.Setenv("KMIRROR_KAFKA_STATE", "/tmp/x") // not a setting's name: tooling may use the prefix
	_, err := Load(writeConfig(t, minimal), nil)
	if err == nil || !strings.Contains(err.Error(), "KMIRROR_PRODUCER_COMPRESION") ||
		!strings.Contains(err.Error(), "did you mean KMIRROR_PRODUCER_COMPRESSION") || strings.Contains(err.Error(), "KAFKA_STATE") {
		t.Fatalf("err = %v, want the misspelt setting named with a suggestion, and the tooling variable left alone", err)
	}
}

// TestMisspeltVariableOfEverySectionIsAnError: a misspelt KMIRROR_<SECTION>_… variable is refused
// for every section of the Config type, each named with its suggestion; the sections are read from
// the type, so that a section added later is covered without a list to keep.
func TestMisspeltVariableOfEverySectionIsAnError(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		sec := typ.Field(i).Tag.Get("mapstructure")
		t.Run(sec, func(t *testing.T) {
			var key string // the section's first setting, misspelt by a doubled last letter
			walkLeaves(sec, reflect.ValueOf(Default()).Field(i), func(k string, _ any) {
				if key == "" {
					key = k
				}
			})
			good := envName(key)
			bad := good + good[len(good)-1:]
			t.Setenv(bad, "1")
			_, err := Load(writeConfig(t, minimal), nil)
			if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "did you mean "+good) {
				t.Fatalf("%s=1: err = %v, want it refused, naming %s", bad, err, good)
			}
		})
	}
}

func TestKafkaWordsForInitialOffset(t *testing.T) {
	for word, want := range map[string]string{"earliest": "oldest", "latest": "newest", "Oldest": "oldest"} {
		cfg, err := Load(writeConfig(t, minimal+"consumer: {initial_offset: "+word+"}\n"), nil)
		if err != nil {
			t.Fatalf("%s: %v", word, err)
		}
		if cfg.Consumer.InitialOffset != want {
			t.Errorf("initial_offset %s = %q, want %q", word, cfg.Consumer.InitialOffset, want)
		}
	}
}

func TestEffectiveListsEverySettingAndHidesSecrets(t *testing.T) {
	cfg, err := Load(writeConfig(t, `
source: {bootstrap: ["eu:9092"], sasl: {mechanism: PLAIN, username: u, password: hunter2}}
target: {bootstrap: ["us:9092"]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Join(cfg.Effective(), "\n")
	for _, want := range []string{`source.bootstrap: [eu:9092]`, `source.sasl.password: (set)`, `producer.delivery_timeout: 2m0s`, `target.sasl.password: ""`} {
		if !strings.Contains(lines, want) {
			t.Errorf("effective settings lack %q:\n%s", want, lines)
		}
	}
	if strings.Contains(lines, "hunter2") {
		t.Fatal("the effective settings print the password")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

// TestActiveActiveExamplesAreTwins: configs/active-active holds the two flows of a pair; each
// loads, and the second is the first with the clusters swapped, its own group, and the same loop
// rule.
func TestActiveActiveExamplesAreTwins(t *testing.T) {
	dir := filepath.Join("..", "..", "configs", "active-active")
	a, err := Load(filepath.Join(dir, "europe-to-us.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(filepath.Join(dir, "us-to-europe.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Source.Alias != b.Target.Alias || a.Target.Alias != b.Source.Alias ||
		!slices.Equal(a.Source.Bootstrap, b.Target.Bootstrap) || !slices.Equal(a.Target.Bootstrap, b.Source.Bootstrap) {
		t.Errorf("the flows are not each other's reverse: %s %v → %s %v and %s %v → %s %v", a.Source.Alias, a.Source.Bootstrap,
			a.Target.Alias, a.Target.Bootstrap, b.Source.Alias, b.Source.Bootstrap, b.Target.Alias, b.Target.Bootstrap)
	}
	if a.Consumer.GroupID == b.Consumer.GroupID || a.OffsetMapTopic() == b.OffsetMapTopic() {
		t.Errorf("the flows share a group (%s) or an offset map (%s)", a.Consumer.GroupID, a.OffsetMapTopic())
	}
	if a.Topics.ReplicationPolicy != b.Topics.ReplicationPolicy || a.Topics.ProvenanceHeader != b.Topics.ProvenanceHeader ||
		(a.Topics.ReplicationPolicy == PolicyIdentity && !a.Topics.ProvenanceHeader) {
		t.Errorf("the flows do not share a loop rule: %s/%v and %s/%v", a.Topics.ReplicationPolicy, a.Topics.ProvenanceHeader,
			b.Topics.ReplicationPolicy, b.Topics.ProvenanceHeader)
	}
}

func TestGroupInstanceIDTakesALiteralOrTheEnvironment(t *testing.T) {
	t.Setenv("HOSTNAME", "kmirror-2")
	t.Setenv("ZONE", "eu-west-1a")
	cases := []struct {
		name, yaml, env, want string
	}{
		{"unset is a dynamic member", minimal, "", ""},
		{"a literal", minimal + "consumer: {group_instance_id: mirror-a}\n", "", "mirror-a"},
		{"the pod's name", minimal + "consumer: {group_instance_id: \"${HOSTNAME}\"}\n", "", "kmirror-2"},
		{"a name around variables", minimal + "consumer: {group_instance_id: \"kmirror-${ZONE}-${HOSTNAME}\"}\n", "", "kmirror-eu-west-1a-kmirror-2"},
		{"from the environment", minimal, "${HOSTNAME}", "kmirror-2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("KMIRROR_CONSUMER_GROUP_INSTANCE_ID", c.env)
			}
			cfg, err := Load(writeConfig(t, c.yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Consumer.GroupInstanceID != c.want {
				t.Errorf("group_instance_id = %q, want %q", cfg.Consumer.GroupInstanceID, c.want)
			}
		})
	}
}

func TestGroupInstanceIDRefusedNamesTheKey(t *testing.T) {
	for yaml, want := range map[string]string{
		`consumer: {group_instance_id: "${KMIRROR_TEST_NOT_SET}"}`: "KMIRROR_TEST_NOT_SET, which are not set",
		`consumer: {group_instance_id: "pod/1"}`:                   "a-z A-Z 0-9 . _ -",
		`consumer: {group_instance_id: ".."}`:                      "a-z A-Z 0-9 . _ -",
	} {
		_, err := Load(writeConfig(t, minimal+yaml+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "consumer.group_instance_id") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want consumer.group_instance_id named with %q", yaml, err, want)
		}
	}
}

// TestFetchWaitGrowsWithThePartitions: a consumer of few partitions waits fetch_max_wait; one of
// many waits fetch_wait_per_partition for each, up to MaxFetchWait; 0 per partition, or a
// fetch_max_wait longer than the scaled wait, keeps fetch_max_wait.
func TestFetchWaitGrowsWithThePartitions(t *testing.T) {
	def := Default().Consumer
	fixed := def
	fixed.FetchWaitPerPartition = 0
	long := def
	long.FetchMaxWait = 10 * time.Second
	cases := []struct {
		name       string
		c          Consumer
		partitions int
		want       time.Duration
	}{
		{"no partitions yet", def, 0, 10 * time.Millisecond},
		{"12 partitions", def, 12, 10 * time.Millisecond},
		{"50 partitions: where the two meet", def, 50, 10 * time.Millisecond},
		{"1,000 partitions", def, 1000, 200 * time.Millisecond},
		{"10,000 partitions", def, 10_000, 2 * time.Second},
		{"100,000 partitions: at most MaxFetchWait", def, 100_000, MaxFetchWait},
		{"an absurd count does not overflow", def, math.MaxInt, MaxFetchWait},
		{"0 per partition", fixed, 10_000, 10 * time.Millisecond},
		{"fetch_max_wait above the bound", long, 100_000, 10 * time.Second},
	}
	for _, tc := range cases {
		if got := tc.c.FetchWait(tc.partitions); got != tc.want {
			t.Errorf("%s: FetchWait(%d) = %s, want %s", tc.name, tc.partitions, got, tc.want)
		}
	}
}

// TestFetchPartitionGrowsForADistantSource: a near source is fetched with fetch_partition_bytes;
// one at least distant_rtt away with distant_fetch_partition_bytes or the largest batch its
// topics accept, the larger, within fetch_max_bytes; distant_rtt 0 never enlarges the fetches.
func TestFetchPartitionGrowsForADistantSource(t *testing.T) {
	def := Default().Consumer
	off := def
	off.DistantRTT = 0
	batchOnly := def
	batchOnly.DistantFetchPartitionBytes = 0
	const mib = 1 << 20
	cases := []struct {
		name  string
		c     Consumer
		rtt   time.Duration
		batch int
		want  int32
	}{
		{"loopback", def, 200 * time.Microsecond, mib + 12, 256 << 10},
		{"just under distant_rtt", def, 9 * time.Millisecond, mib + 12, 256 << 10},
		{"at distant_rtt", def, 10 * time.Millisecond, mib + 12, 4 * mib},
		{"transatlantic", def, 80 * time.Millisecond, mib + 12, 4 * mib},
		{"topics with small batches: the distant size all the same", def, 80 * time.Millisecond, 64 << 10, 4 * mib},
		{"topics with batches above the distant size: the largest batch", def, 80 * time.Millisecond, 8 * mib, 8 * mib},
		{"at most fetch_max_bytes", def, 80 * time.Millisecond, 200 * mib, 50 * mib},
		{"distant_fetch_partition_bytes 0: the largest batch", batchOnly, 80 * time.Millisecond, mib + 12, mib + 12},
		{"distant_fetch_partition_bytes 0, small batches keep the configured size", batchOnly, 80 * time.Millisecond, 64 << 10, 256 << 10},
		{"distant_rtt 0", off, 80 * time.Millisecond, mib + 12, 256 << 10},
	}
	for _, tc := range cases {
		if got := tc.c.FetchPartition(tc.rtt, tc.batch); got != tc.want {
			t.Errorf("%s: FetchPartition(%s, %d) = %d, want %d", tc.name, tc.rtt, tc.batch, got, tc.want)
		}
	}
}

// TestFetchLanesGrowForADistantSource: a near source is read by one fetch loop per broker, one
// at least distant_rtt away by DistantFetchLanes; and by more when a broker leads more than
// FetchSessionPartitions of the mirrored partitions, so that no fetch session holds more (up to
// MaxFetchLanes); consumer.fetch_lanes, when set, wins.
func TestFetchLanesGrowForADistantSource(t *testing.T) {
	def := Default().Consumer
	off := def
	off.DistantRTT = 0
	set := def
	set.FetchLanes = 2
	near, far := 200*time.Microsecond, 80*time.Millisecond
	for _, tc := range []struct {
		name                string
		c                   Consumer
		rtt                 time.Duration
		partitions, brokers int
		want                int
	}{
		{"loopback", def, near, 100, 1, 1},
		{"just under distant_rtt", def, 9 * time.Millisecond, 100, 1, 1},
		{"at distant_rtt", def, 10 * time.Millisecond, 100, 1, DistantFetchLanes},
		{"transatlantic", def, far, 100, 1, DistantFetchLanes},
		{"distant_rtt 0", off, far, 100, 1, 1},
		{"a session's worth", def, near, FetchSessionPartitions, 1, 1},
		{"one more", def, near, FetchSessionPartitions + 1, 1, 2},
		{"10,000 partitions, one broker", def, near, 10000, 1, 10},
		{"10,000 partitions, three brokers", def, near, 10000, 3, 4},
		{"10,000 partitions, distant, three brokers", def, far, 10000, 3, 4},
		{"100,000 partitions, one broker", def, near, 100000, 1, MaxFetchLanes},
		{"no broker known", def, near, 2500, 0, 3},
		{"fetch_lanes set, near", set, near, 10000, 1, 2},
		{"fetch_lanes set, distant", set, far, 100, 1, 2},
	} {
		if got := tc.c.Lanes(tc.rtt, tc.partitions, tc.brokers); got != tc.want {
			t.Errorf("%s: Lanes(%s, %d partitions, %d brokers) = %d, want %d", tc.name, tc.rtt, tc.partitions, tc.brokers, got, tc.want)
		}
	}
	// The lanes at the start grow later, as a broker comes to lead more partitions, only when
	// fetch_lanes is 0: a set value is kept.
	if got := def.SessionPartitions(); got != FetchSessionPartitions {
		t.Errorf("fetch_lanes 0: SessionPartitions() = %d, want %d", got, FetchSessionPartitions)
	}
	if got := set.SessionPartitions(); got != 0 {
		t.Errorf("fetch_lanes set: SessionPartitions() = %d, want 0 (lanes fixed)", got)
	}
}

// TestLingerGrowsForADistantTarget: a near target keeps producer.linger; one at least
// distant_rtt away gets producer.distant_linger when that is longer; distant_rtt 0 or
// distant_linger 0 keep the linger.
func TestLingerGrowsForADistantTarget(t *testing.T) {
	def := Default()
	short := def.Producer
	short.DistantLinger = time.Millisecond
	off := def.Producer
	off.DistantLinger = 0
	for _, tc := range []struct {
		name    string
		p       Producer
		rtt     time.Duration
		distant time.Duration
		want    time.Duration
	}{
		{"loopback", def.Producer, 200 * time.Microsecond, def.Consumer.DistantRTT, 5 * time.Millisecond},
		{"just under distant_rtt", def.Producer, 9 * time.Millisecond, def.Consumer.DistantRTT, 5 * time.Millisecond},
		{"at distant_rtt", def.Producer, 10 * time.Millisecond, def.Consumer.DistantRTT, 20 * time.Millisecond},
		{"transatlantic", def.Producer, 80 * time.Millisecond, def.Consumer.DistantRTT, 20 * time.Millisecond},
		{"distant_rtt 0", def.Producer, 80 * time.Millisecond, 0, 5 * time.Millisecond},
		{"distant_linger 0", off, 80 * time.Millisecond, def.Consumer.DistantRTT, 5 * time.Millisecond},
		{"distant_linger shorter than linger", short, 80 * time.Millisecond, def.Consumer.DistantRTT, 5 * time.Millisecond},
	} {
		if got := tc.p.LingerAt(tc.rtt, tc.distant); got != tc.want {
			t.Errorf("%s: LingerAt(%s, %s) = %s, want %s", tc.name, tc.rtt, tc.distant, got, tc.want)
		}
	}
}
