package migrate

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The Strimzi KafkaMirrorMaker2 resource, the fields that matter here. v1 (the CRD in
// /work/shared/strimzi-crds: spec.target and spec.mirrors[].source) and v1beta2 (spec.clusters,
// spec.connectCluster and spec.mirrors[].sourceCluster/targetCluster) are both read.
type strimziResource struct {
	APIVersion string `yaml:"apiVersion"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec strimziSpec `yaml:"spec"`
}

type strimziSpec struct {
	Target         *strimziCluster  `yaml:"target"`
	Clusters       []strimziCluster `yaml:"clusters"`
	ConnectCluster string           `yaml:"connectCluster"`
	Mirrors        []strimziMirror  `yaml:"mirrors"`
	// The rest: Kubernetes deployment of the Connect cluster, reported by name.
	Rest map[string]any `yaml:",inline"`
}

type strimziCluster struct {
	Alias              string         `yaml:"alias"`
	BootstrapServers   string         `yaml:"bootstrapServers"`
	GroupID            string         `yaml:"groupId"`
	ConfigStorageTopic string         `yaml:"configStorageTopic"`
	StatusStorageTopic string         `yaml:"statusStorageTopic"`
	OffsetStorageTopic string         `yaml:"offsetStorageTopic"`
	TLS                *strimziTLS    `yaml:"tls"`
	Authentication     *strimziAuth   `yaml:"authentication"`
	Config             map[string]any `yaml:"config"`
}

type strimziTLS struct {
	TrustedCertificates []strimziCert `yaml:"trustedCertificates"`
}

type strimziCert struct {
	SecretName  string `yaml:"secretName"`
	Certificate string `yaml:"certificate"`
	Pattern     string `yaml:"pattern"`
}

type strimziAuth struct {
	Type              string `yaml:"type"`
	Username          string `yaml:"username"`
	CertificateAndKey *struct {
		SecretName  string `yaml:"secretName"`
		Certificate string `yaml:"certificate"`
		Key         string `yaml:"key"`
	} `yaml:"certificateAndKey"`
	PasswordSecret *struct {
		SecretName string `yaml:"secretName"`
		Password   string `yaml:"password"`
	} `yaml:"passwordSecret"`
}

type strimziConnector struct {
	TasksMax int            `yaml:"tasksMax"`
	Config   map[string]any `yaml:"config"`
	State    string         `yaml:"state"`
}

type strimziMirror struct {
	Source               *strimziCluster   `yaml:"source"`
	SourceCluster        string            `yaml:"sourceCluster"`
	TargetCluster        string            `yaml:"targetCluster"`
	SourceConnector      *strimziConnector `yaml:"sourceConnector"`
	CheckpointConnector  *strimziConnector `yaml:"checkpointConnector"`
	HeartbeatConnector   *strimziConnector `yaml:"heartbeatConnector"`
	TopicsPattern        string            `yaml:"topicsPattern"`
	TopicsExcludePattern string            `yaml:"topicsExcludePattern"`
	GroupsPattern        string            `yaml:"groupsPattern"`
	GroupsExcludePattern string            `yaml:"groupsExcludePattern"`
}

// SecretsDir is where the written configuration expects the Secrets a Strimzi resource names to
// be mounted: <SecretsDir>/<secret name>/<key>.
const SecretsDir = "/etc/kmirror/secrets"

// DefaultStrimziOffsetsTopic is Strimzi's offset.storage.topic for MirrorMaker 2 when v1beta2's
// target cluster config names none.
const DefaultStrimziOffsetsTopic = "mirrormaker2-cluster-offsets"

func parseStrimzi(name string, data []byte) (*Input, error) {
	var r strimziResource
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: read the KafkaMirrorMaker2 resource: %w", name, err)
	}
	in := &Input{Name: name, Props: map[string]string{}, Origin: map[string]string{}, Security: map[string]*Security{}}
	spec := r.Spec

	// The target: v1's spec.target, or v1beta2's cluster named by spec.connectCluster.
	var target *strimziCluster
	targetField := "spec.target"
	switch {
	case spec.Target != nil:
		target = spec.Target
	case spec.ConnectCluster != "":
		for i := range spec.Clusters {
			if spec.Clusters[i].Alias == spec.ConnectCluster {
				target, targetField = &spec.Clusters[i], fmt.Sprintf("spec.clusters[%d]", i)
			}
		}
		if target == nil {
			return nil, fmt.Errorf("%s: spec.connectCluster %q names none of spec.clusters", name, spec.ConnectCluster)
		}
	default:
		return nil, fmt.Errorf("%s: no spec.target (v1) or spec.connectCluster (v1beta2): the resource names no target cluster", name)
	}
	if target.Alias == "" || target.BootstrapServers == "" {
		return nil, fmt.Errorf("%s: %s needs alias and bootstrapServers", name, targetField)
	}
	aliases := []string{target.Alias}
	in.addCluster(target, targetField)
	in.OffsetsTopic = target.OffsetStorageTopic
	if in.OffsetsTopic == "" {
		in.OffsetsTopic = DefaultStrimziOffsetsTopic
		if t, ok := target.Config["offset.storage.topic"]; ok {
			in.OffsetsTopic = fmt.Sprint(t)
		}
	}
	// The target's config block is the Connect workers' configuration: top-level settings, as in
	// dedicated mode.
	in.setConfig("", target.Config, targetField+".config")
	for _, f := range []struct{ field, value string }{
		{"groupId", target.GroupID}, {"configStorageTopic", target.ConfigStorageTopic},
		{"statusStorageTopic", target.StatusStorageTopic}, {"offsetStorageTopic", target.OffsetStorageTopic},
	} {
		if f.value != "" {
			in.Notes = append(in.Notes, Note{Setting: targetField + "." + f.field, Value: f.value, Kind: NoEquivalent,
				Text: "Kafka Connect's own; kmirror keeps its positions in its consumer group on the source (this topic is where migrate reads MirrorMaker 2's)"})
		}
	}

	if len(spec.Mirrors) == 0 {
		return nil, fmt.Errorf("%s: spec.mirrors is empty: nothing is mirrored", name)
	}
	for i, m := range spec.Mirrors {
		field := fmt.Sprintf("spec.mirrors[%d]", i)
		src := m.Source
		srcField := field + ".source"
		if src == nil && m.SourceCluster != "" {
			for j := range spec.Clusters {
				if spec.Clusters[j].Alias == m.SourceCluster {
					src, srcField = &spec.Clusters[j], fmt.Sprintf("spec.clusters[%d]", j)
				}
			}
		}
		if src == nil || src.Alias == "" || src.BootstrapServers == "" {
			return nil, fmt.Errorf("%s: %s names no source cluster with alias and bootstrapServers", name, field)
		}
		if m.TargetCluster != "" && m.TargetCluster != target.Alias {
			return nil, fmt.Errorf("%s: %s.targetCluster %q is not the Connect cluster %q: Strimzi mirrors into the Connect cluster only", name, field, m.TargetCluster, target.Alias)
		}
		if _, seen := in.Security[src.Alias]; !seen {
			aliases = append(aliases, src.Alias)
			in.addCluster(src, srcField)
			in.setConfig(src.Alias+".", src.Config, srcField+".config")
		}
		flow := src.Alias + "->" + target.Alias + "."
		in.set(flow+"enabled", "true", field)
		for _, p := range []struct{ key, value, field string }{
			{"topics", m.TopicsPattern, "topicsPattern"}, {"topics.exclude", m.TopicsExcludePattern, "topicsExcludePattern"},
			{"groups", m.GroupsPattern, "groupsPattern"}, {"groups.exclude", m.GroupsExcludePattern, "groupsExcludePattern"},
		} {
			if p.value != "" {
				in.set(flow+p.key, p.value, field+"."+p.field)
			}
		}
		for _, c := range []struct {
			kind string
			c    *strimziConnector
		}{{"sourceConnector", m.SourceConnector}, {"checkpointConnector", m.CheckpointConnector}, {"heartbeatConnector", m.HeartbeatConnector}} {
			cf := field + "." + c.kind
			if c.c == nil {
				switch c.kind {
				case "checkpointConnector":
					// No checkpoint connector: no checkpoints and no group offset sync.
					in.set(flow+"emit.checkpoints.enabled", "false", cf+" (absent)")
					in.set(flow+"sync.group.offsets.enabled", "false", cf+" (absent)")
				case "heartbeatConnector":
					// v1 has no heartbeat connector at all; v1beta2 runs one only when listed.
					in.set(flow+"emit.heartbeats.enabled", "false", cf+" (absent)")
				}
				continue
			}
			if c.c.TasksMax > 0 && c.kind == "sourceConnector" {
				in.set(flow+"tasks.max", fmt.Sprint(c.c.TasksMax), cf+".tasksMax")
			}
			if c.c.State != "" && c.c.State != "running" {
				in.Notes = append(in.Notes, Note{Setting: cf + ".state", Value: c.c.State, Kind: Approximated,
					Text: "kmirror has no paused state: a stopped kmirror is scaled to 0 replicas"})
			}
			in.setConfig(flow, c.c.Config, cf+".config")
		}
	}
	in.set("clusters", strings.Join(aliases, ", "), targetField+".alias, spec.mirrors[].source.alias")

	for k, v := range spec.Rest {
		if k == "replicas" {
			in.Notes = append(in.Notes, Note{Setting: "spec.replicas", Value: fmt.Sprint(v), Kind: Approximated,
				Text: "run as many kmirror replicas (deploy/kubernetes: the Deployment's replicas); they share consumer.group_id and divide the partitions"})
			continue
		}
		in.Notes = append(in.Notes, Note{Setting: "spec." + k, Kind: NoEquivalent,
			Text: "the Connect cluster's Kubernetes settings: set the kmirror Deployment's own (deploy/kubernetes)"})
	}
	return in, nil
}

// addCluster records a cluster's bootstrap servers and its TLS and authentication.
func (in *Input) addCluster(c *strimziCluster, field string) {
	in.set(c.Alias+".bootstrap.servers", c.BootstrapServers, field+".bootstrapServers")
	sec := &Security{From: field}
	if c.TLS != nil {
		sec.TLS = true
		if len(c.TLS.TrustedCertificates) > 0 {
			tc := c.TLS.TrustedCertificates[0]
			file := tc.Certificate
			if file == "" {
				file = "ca.crt" // a pattern: one PEM bundle of the matching files is expected here
				in.Notes = append(in.Notes, Note{Setting: field + ".tls.trustedCertificates[0].pattern", Value: tc.Pattern, Kind: Approximated,
					Text: "kmirror reads one PEM bundle: concatenate the matching certificates into " + path.Join(SecretsDir, tc.SecretName, file)})
			}
			sec.CAFile = path.Join(SecretsDir, tc.SecretName, file)
			if len(c.TLS.TrustedCertificates) > 1 {
				in.Notes = append(in.Notes, Note{Setting: field + ".tls.trustedCertificates", Kind: Approximated,
					Text: "kmirror reads one PEM bundle (tls.ca_file): concatenate the certificates of every listed Secret into " + sec.CAFile})
			}
		}
	}
	if a := c.Authentication; a != nil {
		switch strings.ToLower(a.Type) {
		case "tls":
			if a.CertificateAndKey != nil {
				sec.CertFile = path.Join(SecretsDir, a.CertificateAndKey.SecretName, a.CertificateAndKey.Certificate)
				sec.KeyFile = path.Join(SecretsDir, a.CertificateAndKey.SecretName, a.CertificateAndKey.Key)
			}
		case "scram-sha-256", "scram-sha-512", "plain":
			sec.Mechanism = strings.ToUpper(a.Type)
			sec.Username = a.Username
			if a.PasswordSecret != nil {
				sec.PasswordFile = path.Join(SecretsDir, a.PasswordSecret.SecretName, a.PasswordSecret.Password)
			}
		default:
			in.Notes = append(in.Notes, Note{Setting: field + ".authentication.type", Value: a.Type, Kind: NoEquivalent,
				Text: "kmirror authenticates with TLS client certificates, PLAIN or SCRAM only"})
		}
	}
	in.Security[c.Alias] = sec
}
