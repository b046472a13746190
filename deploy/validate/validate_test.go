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

func compat(t *testing.T) Compat {
	t.Helper()
	c, err := LoadCompat(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return c
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
		if problems := CheckObjects(render(t, target), target, s, compat(t)); len(problems) > 0 {
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
	demo      = "deploy/kubernetes/overlays/openshift-stretched-demo"
	twoUS     = "deploy/kubernetes/overlays/openshift-two-sites/us"
	twoEurope = "deploy/kubernetes/overlays/openshift-two-sites/europe"
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
		{"Kafka version the Strimzi release does not run", openshift, "Kafka", "europe-cluster", func(m map[string]any) {
			get(m, "spec", "kafka").(map[string]any)["version"] = "4.1.1"
			get(m, "spec", "kafka").(map[string]any)["metadataVersion"] = "4.1-IV1"
		}, []string{"Kafka/europe-cluster", "spec.kafka.version: 4.1.1 is not supported by Strimzi 1.2.0", "4.3.1", "strimzi-kafka-versions.yaml"}},
		{"metadata version newer than the Kafka version", twoUS, "Kafka", "us-cluster", func(m map[string]any) {
			get(m, "spec", "kafka").(map[string]any)["version"] = "4.2.1"
		}, []string{"Kafka/us-cluster", "spec.kafka.metadataVersion: 4.3-IV0 is newer than Kafka 4.2.1's"}},
		{"PDB that stalls a drain while a cluster is down", openshift, "PodDisruptionBudget", "kmirror", func(m map[string]any) {
			delete(get(m, "spec").(map[string]any), "unhealthyPodEvictionPolicy")
		}, []string{"PodDisruptionBudget/kmirror", "spec.unhealthyPodEvictionPolicy", "AlwaysAllow"}},
		{"GOMEMLIMIT at the whole memory limit", openshift, "Deployment", "kmirror", func(m map[string]any) {
			for _, e := range container(m)["env"].([]any) {
				if e.(map[string]any)["name"] == "GOMEMLIMIT" {
					e.(map[string]any)["value"] = "1GiB"
				}
			}
		}, []string{"Deployment/kmirror", "env[GOMEMLIMIT]", "100% of limits.memory", "85-95%"}},
		{"GOMEMLIMIT as a Kubernetes quantity", twoUS, "Deployment", "kmirror", func(m map[string]any) {
			for _, e := range container(m)["env"].([]any) {
				if e.(map[string]any)["name"] == "GOMEMLIMIT" {
					e.(map[string]any)["value"] = "900Mi"
				}
			}
		}, []string{"Deployment/kmirror", "env[GOMEMLIMIT]", "900Mi"}},
		{"kmirror on the default ServiceAccount with a token", openshift, "Deployment", "kmirror-reverse", func(m map[string]any) {
			spec := get(m, "spec", "template", "spec").(map[string]any)
			delete(spec, "serviceAccountName")
			delete(spec, "automountServiceAccountToken")
		}, []string{"Deployment/kmirror-reverse", "serviceAccountName", "automountServiceAccountToken: want false"}},
		{"reverse flow on another kmirror image", openshift, "Deployment", "kmirror-reverse", func(m map[string]any) {
			container(m)["image"] = "quay.io/kmirror/kmirror:0.1.0"
		}, []string{"Deployment/kmirror-reverse", "containers[0](kmirror).image", "quay.io/kmirror/kmirror:v0.2.0"}},
		{"kmirror pods no NetworkPolicy selects", twoEurope, "NetworkPolicy", "kmirror", func(m map[string]any) {
			get(m, "spec", "podSelector").(map[string]any)["matchLabels"] = map[string]any{"app.kubernetes.io/name": "kmirror-old"}
		}, []string{"Deployment/kmirror-reverse", "no NetworkPolicy of the rendering selects its pods"}},
		{"Secret nobody makes nor copies", twoUS, "Deployment", "kmirror", func(m map[string]any) {
			get(m, "spec", "template", "spec", "volumes").([]any)[1].(map[string]any)["secret"].(map[string]any)["secretName"] = "europe-ca"
		}, []string{"Deployment/kmirror", "volumes[1](europe-ca).secret.secretName", `"europe-ca"`, "copied from the other site"}},
		{"reverse flow pinned to the wrong site", openshift, "Deployment", "kmirror-reverse", func(m map[string]any) {
			terms := get(m, "spec", "template", "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
			terms[0].(map[string]any)["matchExpressions"].([]any)[0].(map[string]any)["values"] = []any{"us"}
		}, []string{"Deployment/kmirror-reverse", "topology.kubernetes.io/region In [europe]"}},
		{"KEDA scaling on the backlog while the target is unreachable", openshift, "ScaledObject", "kmirror", func(m map[string]any) {
			get(m, "spec", "triggers").([]any)[0].(map[string]any)["metadata"].(map[string]any)["query"] = `sum(kmirror_unmirrored_records{namespace="kafka-mirror"})`
		}, []string{"ScaledObject/kmirror", "spec.triggers[0].metadata.query", "kmirror_ready"}},
		{"two-site Kafka without its external listener's TLS", twoEurope, "Kafka", "europe-cluster", func(m map[string]any) {
			l := get(m, "spec", "kafka", "listeners").([]any)
			delete(l[len(l)-1].(map[string]any), "tls")
		}, []string{"Kafka/europe-cluster", "spec.kafka.listeners[3].tls", "Required"}},
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
		{"pinned UID", demo, "Deployment", "jaeger", func(m map[string]any) {
			get(m, "spec", "template", "spec", "securityContext").(map[string]any)["runAsUser"] = 1000
		}, []string{"Deployment/jaeger", "runAsUser"}},
		{"image on latest", demo, "Deployment", "demo-producer", func(m map[string]any) {
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
		{"KafkaTopic with a partition count that is not a number", demo, "KafkaTopic", "orders", func(m map[string]any) {
			get(m, "spec").(map[string]any)["partitions"] = "twelve"
		}, []string{"KafkaTopic/orders", "spec.partitions"}},
		{"KafkaTopic of a cluster that does not exist", demo, "KafkaTopic", "orders", func(m map[string]any) {
			get(m, "metadata", "labels").(map[string]any)["strimzi.io/cluster"] = "eu-cluster"
		}, []string{"KafkaTopic/orders", "strimzi.io/cluster", "eu-cluster"}},
		{"demo producer ACL on an unknown resource type", demo, "KafkaUser", "demo-producer", func(m map[string]any) {
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
			problems := strings.Join(CheckObjects(objs, target, s, compat(t)), "\n")
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

// TestEveryOverlayIsATarget: an overlay (any directory under deploy/kubernetes/overlays with a
// kustomization.yaml) that is not in Targets would never be rendered nor validated.
func TestEveryOverlayIsATarget(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(filepath.Join(root, "deploy", "kubernetes", "overlays"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		if isComponent(t, path) {
			return nil // a component local to an overlay, rendered with it
		}
		if _, ok := TargetByPath(filepath.ToSlash(rel)); !ok {
			t.Errorf("%s is not in Targets (targets.go): it is never rendered nor validated", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isComponent(t *testing.T, path string) bool {
	var k struct{ Kind string }
	if err := yaml.Unmarshal(mustRead(t, path), &k); err != nil {
		t.Fatal(err)
	}
	return k.Kind == "Component"
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKEDAQueryIsTheTestedOne keeps the ScaledObject's query equal to the one
// deploy/prometheus/keda-query.test.yaml tests with promtool.
func TestKEDAQueryIsTheTestedOne(t *testing.T) {
	var file struct {
		Tests []struct {
			PromqlExprTest []struct{ Expr string } `json:"promql_expr_test"`
		}
	}
	if err := yaml.Unmarshal(mustRead(t, filepath.Join("..", "prometheus", "keda-query.test.yaml")), &file); err != nil {
		t.Fatal(err)
	}
	tested := file.Tests[0].PromqlExprTest[0].Expr
	target, _ := TargetByPath(openshift)
	for _, o := range render(t, target) {
		if o.Kind == "ScaledObject" && o.Name == "kmirror" {
			q := get(o.Body, "spec", "triggers").([]any)[0].(map[string]any)["metadata"].(map[string]any)["query"]
			if q != tested {
				t.Fatalf("the ScaledObject's query differs from the tested one:\n%v\n---\n%s", q, tested)
			}
			return
		}
	}
	t.Fatal("no ScaledObject kmirror")
}
