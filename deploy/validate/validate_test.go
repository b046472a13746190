package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func schemas(t *testing.T) Schemas {
	t.Helper()
	dir := os.Getenv("STRIMZI_CRDS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", SharedCRDs)
	}
	s, err := LoadCRDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func render(t *testing.T, target Target) []Object {
	t.Helper()
	objs, err := Render(filepath.Join("..", "..", target.Path))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestEveryTargetIsValid(t *testing.T) {
	s := schemas(t)
	for _, target := range Targets {
		if problems := CheckObjects(render(t, target), target, s); len(problems) > 0 {
			t.Errorf("%s:\n%s", target.Path, strings.Join(problems, "\n"))
		}
	}
}

// TestPrometheusRuleMatchesRulesFile keeps the two copies of the alerting rules equal: the
// PrometheusRule in the base and deploy/prometheus/kmirror-rules.yaml, which promtool checks and
// tests.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "prometheus", "kmirror-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	target, _ := TargetByPath("deploy/kubernetes/base")
	found := false
	for _, o := range render(t, target) {
		if o.Kind != "PrometheusRule" || o.Name != "kmirror" {
			continue
		}
		found = true
		if got, want := get(o.Body, "spec", "groups"), file["groups"]; !reflect.DeepEqual(got, want) {
			gb, _ := yaml.Marshal(got)
			wb, _ := yaml.Marshal(want)
			t.Errorf("PrometheusRule kmirror's groups differ from deploy/prometheus/kmirror-rules.yaml:\n--- PrometheusRule\n%s\n--- kmirror-rules.yaml\n%s", gb, wb)
		}
	}
	if !found {
		t.Fatal("no PrometheusRule kmirror in the base")
	}
}

const (
	openshift = "deploy/kubernetes/overlays/openshift-stretched"
	odf       = "deploy/kubernetes/overlays/openshift-odf-stretch"
	kind      = "deploy/kubernetes/overlays/kind"
)

// TestBrokenManifestsAreRefused breaks one field at a time in a rendered overlay and expects the
// validator to name the object and the field.
func TestBrokenManifestsAreRefused(t *testing.T) {
	s := schemas(t)
	container := func(m map[string]any) map[string]any {
		return get(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	}
	rule := func(m map[string]any, i int) map[string]any {
		return get(m, "spec", "groups").([]any)[0].(map[string]any)["rules"].([]any)[i].(map[string]any)
	}
	cases := []struct {
		name    string
		target  string
		kind    string
		objName string
		mutate  func(m map[string]any)
		want    []string
	}{
		{"misspelled Kafka field", openshift, "Kafka", "europe-cluster", func(m map[string]any) {
			k := get(m, "spec", "kafka").(map[string]any)
			k["listners"] = k["listeners"]
		}, []string{"Kafka/europe-cluster", `unknown field "spec.kafka.listners"`}},
		{"listener without required tls", openshift, "Kafka", "us-cluster", func(m map[string]any) {
			l := get(m, "spec", "kafka", "listeners").([]any)
			delete(l[0].(map[string]any), "tls")
		}, []string{"Kafka/us-cluster", "spec.kafka.listeners[0].tls", "Required"}},
		{"unknown ACL operation", openshift, "KafkaUser", "kmirror-target", func(m map[string]any) {
			acls := get(m, "spec", "authorization", "acls").([]any)
			acls[0].(map[string]any)["operations"] = []any{"Eat"}
		}, []string{"KafkaUser/kmirror-target", "operations", "Eat"}},
		{"europe volumes on the us storage class", openshift, "KafkaNodePool", "europe-brokers", func(m map[string]any) {
			v := get(m, "spec", "storage", "volumes").([]any)
			v[0].(map[string]any)["class"] = "kafka-us"
		}, []string{"KafkaNodePool/europe-brokers", "spec.storage.volumes[0].class", "want kafka-europe"}},
		{"ODF stretch volumes on another class", odf, "KafkaNodePool", "us-controllers", func(m map[string]any) {
			v := get(m, "spec", "storage", "volumes").([]any)
			v[0].(map[string]any)["class"] = "kafka-us"
		}, []string{"KafkaNodePool/us-controllers", "class", "want ocs-storagecluster-ceph-rbd"}},
		{"ODF stretch pool pinned by region, not zone", odf, "KafkaNodePool", "europe-brokers", func(m map[string]any) {
			terms := get(m, "spec", "template", "pod", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
			terms[0].(map[string]any)["matchExpressions"].([]any)[0].(map[string]any)["key"] = "topology.kubernetes.io/region"
		}, []string{"KafkaNodePool/europe-brokers", "nodeSelectorTerms[0]", "topology.kubernetes.io/zone In [europe]"}},
		{"ODF stretch rack awareness on the zone (= the site)", odf, "Kafka", "us-cluster", func(m map[string]any) {
			get(m, "spec", "kafka", "rack").(map[string]any)["topologyKey"] = "topology.kubernetes.io/zone"
		}, []string{"Kafka/us-cluster", "spec.kafka.rack.topologyKey", "want kubernetes.io/hostname"}},
		{"us pool in the europe site", openshift, "KafkaNodePool", "us-brokers", func(m map[string]any) {
			terms := get(m, "spec", "template", "pod", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
			terms[0].(map[string]any)["matchExpressions"].([]any)[0].(map[string]any)["values"] = []any{"europe"}
		}, []string{"KafkaNodePool/us-brokers", "topology.kubernetes.io/region In [us]"}},
		{"kmirror not pinned to the target site", openshift, "Deployment", "kmirror", func(m map[string]any) {
			delete(get(m, "spec", "template", "spec").(map[string]any), "affinity")
		}, []string{"Deployment/kmirror", "spec.template.spec.affinity.nodeAffinity", "region In [us]"}},
		{"unknown Deployment field", openshift, "Deployment", "kmirror", func(m map[string]any) {
			get(m, "spec").(map[string]any)["replica"] = 3
		}, []string{"Deployment/kmirror", `unknown field "replica"`}},
		{"replicas set under an autoscaler", openshift, "Deployment", "kmirror", func(m map[string]any) {
			get(m, "spec").(map[string]any)["replicas"] = 3
		}, []string{"Deployment/kmirror", "spec.replicas", "ScaledObject/kmirror"}},
		{"writable root filesystem", openshift, "Deployment", "kmirror", func(m map[string]any) {
			container(m)["securityContext"].(map[string]any)["readOnlyRootFilesystem"] = false
		}, []string{"Deployment/kmirror", "readOnlyRootFilesystem", "restricted-v2"}},
		{"pinned UID", openshift, "Deployment", "jaeger", func(m map[string]any) {
			get(m, "spec", "template", "spec", "securityContext").(map[string]any)["runAsUser"] = 1000
		}, []string{"Deployment/jaeger", "runAsUser"}},
		{"image on latest", openshift, "Deployment", "demo-producer", func(m map[string]any) {
			container(m)["image"] = "docker.io/apache/kafka:latest"
		}, []string{"Deployment/demo-producer", "container kafka", "apache/kafka:latest", "pin"}},
		{"image without a tag", kind, "Deployment", "kmirror", func(m map[string]any) {
			container(m)["image"] = "quay.io/kmirror/kmirror"
		}, []string{"Deployment/kmirror", "container kmirror", "pin"}},
		{"readiness on the wrong path", openshift, "Deployment", "kmirror", func(m map[string]any) {
			container(m)["readinessProbe"].(map[string]any)["httpGet"].(map[string]any)["path"] = "/healthz"
		}, []string{"Deployment/kmirror", "readinessProbe", "/readyz"}},
		{"startup probe on /healthz, which is always 200", openshift, "Deployment", "kmirror", func(m map[string]any) {
			container(m)["startupProbe"].(map[string]any)["httpGet"].(map[string]any)["path"] = "/healthz"
		}, []string{"Deployment/kmirror", "startupProbe", "/startupz"}},
		{"no broker pool", openshift, "KafkaNodePool", "us-brokers", func(m map[string]any) {
			get(m, "spec").(map[string]any)["roles"] = []any{"controller"}
		}, []string{"Kafka/us-cluster", "0 brokers"}},
		{"object outside the namespace", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			delete(get(m, "metadata").(map[string]any), "namespace")
		}, []string{"ScaledObject/kmirror", "metadata.namespace", "kafka-mirror"}},
		{"KafkaTopic with a partition count that is not a number", openshift, "KafkaTopic", "orders", func(m map[string]any) {
			get(m, "spec").(map[string]any)["partitions"] = "twelve"
		}, []string{"KafkaTopic/orders", "spec.partitions"}},
		{"KafkaTopic of a cluster that does not exist", openshift, "KafkaTopic", "orders", func(m map[string]any) {
			get(m, "metadata", "labels").(map[string]any)["strimzi.io/cluster"] = "eu-cluster"
		}, []string{"KafkaTopic/orders", "strimzi.io/cluster", "eu-cluster"}},
		{"demo producer ACL on an unknown resource type", openshift, "KafkaUser", "demo-producer", func(m map[string]any) {
			acls := get(m, "spec", "authorization", "acls").([]any)
			acls[0].(map[string]any)["resource"].(map[string]any)["type"] = "topics"
		}, []string{"KafkaUser/demo-producer", "spec.authorization.acls[0].resource"}},
		{"ScaledObject scaling a Deployment that does not exist", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			get(m, "spec", "scaleTargetRef").(map[string]any)["name"] = "kmirorr"
		}, []string{"ScaledObject/kmirror", "spec.scaleTargetRef.name", "kmirorr"}},
		{"ScaledObject threshold that is not a number", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			get(m, "spec", "triggers").([]any)[0].(map[string]any)["metadata"].(map[string]any)["threshold"] = "lots"
		}, []string{"ScaledObject/kmirror", "spec.triggers[0].metadata.threshold", "lots"}},
		{"ScaledObject misspelt key", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			get(m, "spec").(map[string]any)["maxReplicas"] = 12
		}, []string{"ScaledObject/kmirror", `unknown field "spec.maxReplicas"`}},
		{"ScaledObject without its TriggerAuthentication", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			get(m, "spec", "triggers").([]any)[0].(map[string]any)["authenticationRef"] = map[string]any{"name": "thanos"}
		}, []string{"ScaledObject/kmirror", "spec.triggers[0].authenticationRef.name", "thanos"}},
		{"TriggerAuthentication reading a Secret that does not exist", openshift, "TriggerAuthentication", "kmirror-thanos", func(m map[string]any) {
			get(m, "spec", "secretTargetRef").([]any)[1].(map[string]any)["name"] = "thanos-token"
		}, []string{"TriggerAuthentication/kmirror-thanos", "spec.secretTargetRef[1].name", "thanos-token"}},
		{"RoleBinding with an unknown field", openshift, "RoleBinding", "kmirror-thanos-metrics-reader", func(m map[string]any) {
			m["subject"] = m["subjects"]
		}, []string{"RoleBinding/kmirror-thanos-metrics-reader", `unknown field "subject"`}},
		{"PodMonitor scraping the wrong port", openshift, "PodMonitor", "kafka-nodes", func(m map[string]any) {
			get(m, "spec", "podMetricsEndpoints").([]any)[0].(map[string]any)["port"] = "metrics"
		}, []string{"PodMonitor/kafka-nodes", "spec.podMetricsEndpoints[0].port", "tcp-prometheus"}},
		{"PodMonitor misspelt endpoints", openshift, "PodMonitor", "kafka-nodes", func(m map[string]any) {
			spec := get(m, "spec").(map[string]any)
			spec["podMetricEndpoints"] = spec["podMetricsEndpoints"]
			delete(spec, "podMetricsEndpoints")
		}, []string{"PodMonitor/kafka-nodes", `unknown field "spec.podMetricEndpoints"`, "spec.podMetricsEndpoints: want at least one"}},
		{"PodMonitor relabeling with a misspelt key", openshift, "PodMonitor", "kafka-nodes", func(m map[string]any) {
			r := get(m, "spec", "podMetricsEndpoints").([]any)[0].(map[string]any)["relabelings"].([]any)[0].(map[string]any)
			r["target_label"] = r["targetLabel"]
		}, []string{"PodMonitor/kafka-nodes", `spec.podMetricsEndpoints[0].relabelings[0].target_label`}},
		{"alert without an expression", openshift, "PrometheusRule", "kmirror", func(m map[string]any) {
			delete(rule(m, 1), "expr")
		}, []string{"PrometheusRule/kmirror", "spec.groups[0].rules[1].expr: missing"}},
		{"alert without a severity", openshift, "PrometheusRule", "kmirror", func(m map[string]any) {
			delete(rule(m, 0)["labels"].(map[string]any), "severity")
		}, []string{"PrometheusRule/kmirror", "spec.groups[0].rules[0](KmirrorPartitionStalled).labels.severity"}},
		{"rule with a misspelt key", openshift, "PrometheusRule", "kmirror", func(m map[string]any) {
			rule(m, 2)["annotation"] = rule(m, 2)["annotations"]
		}, []string{"PrometheusRule/kmirror", `unknown field "spec.groups[0].rules[2].annotation"`}},
		{"misspelt ServiceMonitor field", openshift, "ServiceMonitor", "kmirror", func(m map[string]any) {
			get(m, "spec").(map[string]any)["endpoint"] = get(m, "spec", "endpoints")
		}, []string{"ServiceMonitor/kmirror", `unknown field "spec.endpoint"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target, ok := TargetByPath(tc.target)
			if !ok {
				t.Fatalf("no target %s", tc.target)
			}
			objs := render(t, target)
			found := false
			for i := range objs {
				if objs[i].Kind == tc.kind && objs[i].Name == tc.objName {
					objs[i].Body = deepCopy(objs[i].Body).(map[string]any)
					tc.mutate(objs[i].Body)
					found = true
				}
			}
			if !found {
				t.Fatalf("no %s/%s in the rendering", tc.kind, tc.objName)
			}
			problems := strings.Join(CheckObjects(objs, target, s), "\n")
			if problems == "" {
				t.Fatal("the broken manifest was accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(problems, w) {
					t.Errorf("problems do not mention %q:\n%s", w, problems)
				}
			}
		})
	}
}
