package migrate

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/config"
)

// dedicated is an mm2.properties as MirrorMaker 2's own examples (config/connect-mirror-maker.properties)
// and the e2e suite write it, with a setting no one knows.
const dedicated = `# Two clusters, one flow.
clusters = europe, us
europe.bootstrap.servers = eu-1:9092, eu-2:9092
us.bootstrap.servers = us-1:9092
europe->us.enabled = true
us->europe.enabled = false
europe->us.topics = orders.*, payments
europe->us.groups = billing.*
europe->us.emit.checkpoints.enabled = true
europe->us.emit.checkpoints.interval.seconds = 1
europe->us.sync.group.offsets.enabled = true
europe->us.sync.group.offsets.interval.seconds = 10
europe->us.refresh.topics.interval.seconds = 20
europe.consumer.isolation.level = read_committed
us.producer.compression.type = zstd
us.producer.linger.ms = 20
tasks.max = 4
replication.factor = 3
offset-syncs.topic.replication.factor = 3
checkpoints.topic.replication.factor = 3
heartbeats.topic.replication.factor = 3
offset.storage.replication.factor = 3
config.storage.replication.factor = 3
status.storage.replication.factor = 3
sync.topic.acls.enabled = false
frobnicate.level = 11
`

// strimziV1 is a KafkaMirrorMaker2 of Strimzi's v1 API (the CRD in /work/shared/strimzi-crds),
// shaped like Strimzi's examples/mirror-maker/kafka-mirror-maker-2-tls.yaml with SCRAM.
const strimziV1 = `apiVersion: kafka.strimzi.io/v1
kind: KafkaMirrorMaker2
metadata:
  name: my-mirror-maker-2
spec:
  version: 4.1.0
  replicas: 3
  target:
    alias: us
    bootstrapServers: us-kafka-bootstrap:9093
    groupId: my-mirror-maker-2-group
    configStorageTopic: my-mirror-maker-2-config
    offsetStorageTopic: my-mirror-maker-2-offsets
    statusStorageTopic: my-mirror-maker-2-status
    tls:
      trustedCertificates:
        - secretName: us-cluster-ca-cert
          certificate: ca.crt
    authentication:
      type: scram-sha-512
      username: mm2-user
      passwordSecret:
        secretName: mm2-user
        password: password
    config:
      config.storage.replication.factor: -1
      offset.storage.replication.factor: -1
      status.storage.replication.factor: -1
  mirrors:
    - source:
        alias: europe
        bootstrapServers: europe-kafka-bootstrap:9093
        tls:
          trustedCertificates:
            - secretName: europe-cluster-ca-cert
              certificate: ca.crt
        authentication:
          type: tls
          certificateAndKey:
            secretName: mm2-europe
            certificate: user.crt
            key: user.key
      sourceConnector:
        tasksMax: 6
        config:
          replication.factor: -1
          offset-syncs.topic.replication.factor: -1
          sync.topic.acls.enabled: "false"
          replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy
          producer.override.batch.size: 327680
      checkpointConnector:
        tasksMax: 1
        config:
          checkpoints.topic.replication.factor: -1
          sync.group.offsets.enabled: "true"
          sync.group.offsets.interval.seconds: 30
      topicsPattern: "orders.*|payments"
      groupsPattern: ".*"
  resources:
    requests:
      memory: 2Gi
`

// strimziV1beta2 is the older shape: spec.clusters and spec.connectCluster.
const strimziV1beta2 = `apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
metadata:
  name: old-mm2
spec:
  replicas: 1
  connectCluster: us
  clusters:
    - alias: europe
      bootstrapServers: europe-kafka-bootstrap:9092
    - alias: us
      bootstrapServers: us-kafka-bootstrap:9092
      config:
        offset.storage.topic: mm2-offsets
  mirrors:
    - sourceCluster: europe
      targetCluster: us
      sourceConnector:
        config:
          replication.factor: 1
      topicsPattern: ".*"
`

func TestMapWritesAValidConfig(t *testing.T) {
	tests := []struct {
		name, file, input string
		opts              Options
		want              func(c *config.Config) []any // pairs: got, want
		offsetsTopic      string
		notes             []string // substrings each expected in one note
	}{
		{
			name: "dedicated mm2.properties", file: "mm2.properties", input: dedicated,
			want: func(c *config.Config) []any {
				return []any{
					c.Source.Alias, "europe", c.Target.Alias, "us",
					c.Source.Bootstrap, []string{"eu-1:9092", "eu-2:9092"}, c.Target.Bootstrap, []string{"us-1:9092"},
					c.Topics.ReplicationPolicy, config.PolicyPrefix,
					c.Topics.Include, []string{"orders.*", "payments"},
					c.Topics.Exclude, []string{`.*[\-\.]internal`, `.*\.replica`},
					c.Topics.ReplicationFactor, 3, c.Topics.RefreshInterval, 20 * time.Second, c.Topics.SyncACLs, false,
					c.Groups.Include, []string{"billing.*"}, c.Groups.Exclude, []string{"console-consumer-.*", "connect-.*"},
					c.Groups.SyncInterval, 10 * time.Second,
					c.Consumer.GroupID, "kmirror-europe-us", c.Consumer.IsolationLevel, "read_committed",
					c.Producer.Compression, "zstd", c.Producer.Linger, 20 * time.Millisecond,
					c.Delivery.Mode, config.AtLeastOnce,
				}
			},
			offsetsTopic: "mm2-offsets.europe.internal",
			notes: []string{
				"tasks.max = 4: approximated",
				"offset-syncs.topic.replication.factor = 3: no equivalent",
				"checkpoints.topic.replication.factor = 3: no equivalent",
				"offset.storage.replication.factor = 3: no equivalent",
				"europe->us.emit.checkpoints.enabled = true: approximated",
				"europe->us.emit.checkpoints.interval.seconds = 1: no equivalent",
				"frobnicate.level = 11: unknown",
			},
		},
		{
			name: "identity policy, SASL_SSL with SCRAM and a PEM truststore, two flows", file: "mm2.properties",
			input: `clusters = a, b
a.bootstrap.servers = a:9093
b.bootstrap.servers = b:9093
a->b.enabled = true
b->a.enabled = true
b->a.topics = .*
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
security.protocol = SASL_SSL
sasl.mechanism = SCRAM-SHA-512
a.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username="mm2" password="s3cret";
b.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username="mm2" password="${file:/opt/secrets.properties:b}";
a.ssl.truststore.type = PEM
a.ssl.truststore.location = /certs/a-ca.pem
b.ssl.truststore.location = /certs/b.jks
b.ssl.truststore.password = changeit
`,
			opts: Options{Flow: "a->b", GroupID: "mirror-a-b"},
			want: func(c *config.Config) []any {
				return []any{
					c.Source.Alias, "a", c.Topics.ReplicationPolicy, config.PolicyIdentity,
					c.Source.TLS.Enabled, true, c.Source.TLS.CAFile, "/certs/a-ca.pem", c.Target.TLS.Enabled, true, c.Target.TLS.CAFile, "",
					c.Source.SASL.Mechanism, "SCRAM-SHA-512", c.Source.SASL.Username, "mm2", c.Source.SASL.Password, "s3cret",
					c.Target.SASL.Password, "", c.Target.SASL.PasswordFile, "/etc/kmirror/b-sasl-password",
					c.Consumer.GroupID, "mirror-a-b", c.Topics.SyncACLs, true, c.Topics.ReplicationFactor, 2,
				}
			},
			offsetsTopic: "mm2-offsets.a.internal",
			notes: []string{
				"a.sasl.jaas.config = (secret): approximated: the password is copied inline",
				"b.sasl.jaas.config = (secret): approximated: the password is not written out",
				"b.ssl.truststore.location = /certs/b.jks: approximated: kmirror reads PEM files",
				"b.ssl.truststore.password = (secret): no equivalent",
				"b->a.enabled = true: not this flow",
				"b->a.topics = .*: not this flow",
				"consumer.isolation.level = read_uncommitted (MirrorMaker 2's default): approximated",
				"sync.topic.acls.enabled (MirrorMaker 2's default) = true: approximated",
			},
		},
		{
			name: "Strimzi v1", file: "mm2.yaml", input: strimziV1,
			want: func(c *config.Config) []any {
				return []any{
					c.Source.Alias, "europe", c.Target.Alias, "us",
					c.Source.Bootstrap, []string{"europe-kafka-bootstrap:9093"},
					c.Topics.ReplicationPolicy, config.PolicyIdentity, c.Topics.Include, []string{"orders.*|payments"},
					c.Source.TLS.CAFile, "/etc/kmirror/secrets/europe-cluster-ca-cert/ca.crt",
					c.Source.TLS.CertFile, "/etc/kmirror/secrets/mm2-europe/user.crt", c.Source.TLS.KeyFile, "/etc/kmirror/secrets/mm2-europe/user.key",
					c.Target.SASL.Mechanism, "SCRAM-SHA-512", c.Target.SASL.Username, "mm2-user",
					c.Target.SASL.PasswordFile, "/etc/kmirror/secrets/mm2-user/password",
					c.Groups.Include, []string{".*"}, c.Groups.SyncInterval, 30 * time.Second, c.Topics.SyncACLs, false,
					c.Heartbeats.Enabled, false,
				}
			},
			offsetsTopic: "my-mirror-maker-2-offsets",
			notes: []string{
				"spec.mirrors[0].sourceConnector.tasksMax = 6: approximated",
				"spec.replicas = 3: approximated",
				"spec.resources: no equivalent",
				"spec.mirrors[0].sourceConnector.config.producer.override.batch.size = 327680: unknown",
				"spec.target.offsetStorageTopic = my-mirror-maker-2-offsets: no equivalent",
				"spec.target.config.offset.storage.replication.factor = -1: no equivalent",
			},
		},
		{
			name: "Strimzi v1beta2", file: "old.yaml", input: strimziV1beta2,
			want: func(c *config.Config) []any {
				return []any{c.Source.Alias, "europe", c.Target.Bootstrap, []string{"us-kafka-bootstrap:9092"},
					c.Topics.ReplicationFactor, 1, c.Groups.Include, []string{}}
			},
			offsetsTopic: "mm2-offsets",
			notes:        []string{"spec.replicas = 1: approximated"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, res := mapAndLoad(t, tc.file, tc.input, tc.opts)
			pairs := tc.want(cfg)
			for i := 0; i < len(pairs); i += 2 {
				if !reflect.DeepEqual(pairs[i], pairs[i+1]) {
					t.Errorf("setting %d: got %#v, want %#v", i/2, pairs[i], pairs[i+1])
				}
			}
			if res.OffsetsTopic != tc.offsetsTopic {
				t.Errorf("offsets topic %q, want %q", res.OffsetsTopic, tc.offsetsTopic)
			}
			var all []string
			for _, n := range res.Notes {
				all = append(all, n.String())
			}
			for _, want := range tc.notes {
				if !containsPrefix(all, want) {
					t.Errorf("no note starts with %q; notes:\n%s", want, strings.Join(all, "\n"))
				}
			}
			for _, n := range all {
				if strings.Contains(n, "s3cret") {
					t.Errorf("a note shows a password: %s", n)
				}
			}
		})
	}
}

// mapAndLoad maps input and loads the YAML written the way kmirror run does.
func mapAndLoad(t *testing.T, file, input string, opts Options) (*config.Config, *Result) {
	t.Helper()
	in, err := Parse(file, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Map(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	body, err := res.YAML("test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kmirror.yaml")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("the written configuration does not load: %v\n%s", err, body)
	}
	return cfg, res
}

func containsPrefix(notes []string, prefix string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

func TestMapRefusesWhatCannotBeCarriedOver(t *testing.T) {
	base := "clusters = a, b\na.bootstrap.servers = a:9092\nb.bootstrap.servers = b:9092\na->b.enabled = true\n"
	tests := []struct {
		name, file, input string
		opts              Options
		want              string
	}{
		{"custom replication policy", "mm2.properties", base + "replication.policy.class = com.example.MyPolicy\n", Options{}, "replication.policy.class = com.example.MyPolicy"},
		{"another separator", "mm2.properties", base + "replication.policy.separator = _\n", Options{}, `replication.policy.separator = "_"`},
		{"look-ahead in topics", "mm2.properties", base + "a->b.topics = (?!internal).*\n", Options{}, "a->b.topics: \"(?!internal).*\" is not a regular expression"},
		{"two flows, none chosen", "mm2.properties", base + "b->a.enabled = true\n", Options{}, "2 flows are enabled (a->b, b->a)"},
		{"a disabled flow chosen", "mm2.properties", base, Options{Flow: "b->a"}, `--flow "b->a": mm2.properties has b->a.enabled = false`},
		{"no flow", "mm2.properties", "clusters = a, b\na.bootstrap.servers = a:9092\nb.bootstrap.servers = b:9092\n", Options{}, "no flow is enabled"},
		{"no bootstrap", "mm2.properties", "clusters = a, b\na.bootstrap.servers = a:9092\na->b.enabled = true\n", Options{}, "b.bootstrap.servers is not set"},
		{"GSSAPI", "mm2.properties", base + "security.protocol = SASL_PLAINTEXT\nsasl.mechanism = GSSAPI\n", Options{}, "sasl.mechanism = GSSAPI: kmirror authenticates with PLAIN"},
		{"a bad number", "mm2.properties", base + "replication.factor = three\n", Options{}, `replication.factor = "three"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Parse(tc.file, []byte(tc.input))
			if err == nil {
				_, err = Map(in, tc.opts)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseRefusesOtherFiles(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"a kmirror config", "source:\n  alias: europe\n", `no "clusters" setting`},
		{"another resource", "apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnect\n", `kind "KafkaConnect"`},
		{"Strimzi without target", "apiVersion: kafka.strimzi.io/v1\nkind: KafkaMirrorMaker2\nspec:\n  mirrors: []\n", "names no target cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f", []byte(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
