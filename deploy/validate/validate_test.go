package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func schemas(t *testing.T) Schemas {
	t.Helper()
	dir := os.Getenv("STRIMZI_CRDS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", VendoredCRDs)
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

// TestVendoredCRDsServeEveryStrimziKind keeps the check self-contained: the CRDs in the
// repository (not a copy outside it) have a schema for every Strimzi kind the manifests use.
func TestVendoredCRDsServeEveryStrimziKind(t *testing.T) {
	s, err := LoadCRDs(filepath.Join("..", "..", VendoredCRDs))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range Targets {
		for _, o := range render(t, target) {
			if strings.HasPrefix(o.APIVersion, "kafka.strimzi.io/") && !s.Has(o.APIVersion, o.Kind) {
				t.Errorf("%s: %s has no schema in %s", target.Path, o, VendoredCRDs)
			}
		}
	}
}

func TestEveryTargetIsValid(t *testing.T) {
	s := schemas(t)
	for _, target := range Targets {
		if problems := CheckObjects(render(t, target), target, s); len(problems) > 0 {
			t.Errorf("%s:\n%s", target.Path, strings.Join(problems, "\n"))
		}
	}
}

// TestBrokenManifestsAreRefused breaks one field at a time in the rendered OpenShift overlay and
// expects the validator to name the object and the field.
func TestBrokenManifestsAreRefused(t *testing.T) {
	s := schemas(t)
	target := Targets[2]
	cases := []struct {
		name    string
		kind    string
		objName string
		mutate  func(m map[string]any)
		want    []string
	}{
		{"misspelled Kafka field", "Kafka", "europe-cluster", func(m map[string]any) {
			k := get(m, "spec", "kafka").(map[string]any)
			k["listners"] = k["listeners"]
		}, []string{"Kafka/europe-cluster", `unknown field "spec.kafka.listners"`}},
		{"listener without required tls", "Kafka", "us-cluster", func(m map[string]any) {
			l := get(m, "spec", "kafka", "listeners").([]any)
			delete(l[0].(map[string]any), "tls")
		}, []string{"Kafka/us-cluster", "spec.kafka.listeners[0].tls", "Required"}},
		{"unknown ACL operation", "KafkaUser", "kmirror-target", func(m map[string]any) {
			acls := get(m, "spec", "authorization", "acls").([]any)
			acls[0].(map[string]any)["operations"] = []any{"Eat"}
		}, []string{"KafkaUser/kmirror-target", "operations", "Eat"}},
		{"wrong storage class", "KafkaNodePool", "europe-brokers", func(m map[string]any) {
			v := get(m, "spec", "storage", "volumes").([]any)
			v[0].(map[string]any)["class"] = "gp3"
		}, []string{"KafkaNodePool/europe-brokers", "class", "ocs-storagecluster-ceph-rbd"}},
		{"unknown Deployment field", "Deployment", "kmirror", func(m map[string]any) {
			get(m, "spec").(map[string]any)["replica"] = 3
		}, []string{"Deployment/kmirror", `unknown field "replica"`}},
		{"writable root filesystem", "Deployment", "kmirror", func(m map[string]any) {
			c := get(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
			c["securityContext"].(map[string]any)["readOnlyRootFilesystem"] = false
		}, []string{"Deployment/kmirror", "readOnlyRootFilesystem", "restricted-v2"}},
		{"pinned UID", "Deployment", "jaeger", func(m map[string]any) {
			get(m, "spec", "template", "spec", "securityContext").(map[string]any)["runAsUser"] = 1000
		}, []string{"Deployment/jaeger", "runAsUser"}},
		{"readiness on the wrong path", "Deployment", "kmirror", func(m map[string]any) {
			c := get(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
			c["readinessProbe"].(map[string]any)["httpGet"].(map[string]any)["path"] = "/healthz"
		}, []string{"Deployment/kmirror", "readinessProbe", "/readyz"}},
		{"no broker pool", "KafkaNodePool", "us-brokers", func(m map[string]any) {
			get(m, "spec").(map[string]any)["roles"] = []any{"controller"}
		}, []string{"Kafka/us-cluster", "0 brokers"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
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
