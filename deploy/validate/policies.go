package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// CompatFile is the Strimzi ↔ Kafka compatibility matrix, relative to the repository's root.
const CompatFile = "deploy/kubernetes/strimzi-kafka-versions.yaml"

// Compat is the matrix: the Strimzi release the manifests target, and for each release the Kafka
// versions it runs with their KRaft metadata version.
type Compat struct {
	Strimzi  string `json:"strimzi"`
	Releases map[string]struct {
		Default string            `json:"default"`
		Kafka   map[string]string `json:"kafka"`
	} `json:"releases"`
}

// LoadCompat reads the matrix and checks that it names its own target release.
func LoadCompat(root string) (Compat, error) {
	var c Compat
	b, err := os.ReadFile(filepath.Join(root, CompatFile))
	if err != nil {
		return c, fmt.Errorf("read the Strimzi/Kafka matrix: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", CompatFile, err)
	}
	if _, ok := c.Releases[c.Strimzi]; !ok {
		return c, fmt.Errorf("%s: strimzi: %q is not under releases", CompatFile, c.Strimzi)
	}
	return c, nil
}

// checkKafkaVersion refuses a Kafka whose spec.kafka.version the target Strimzi release does not
// run, or whose metadataVersion is newer than that Kafka version.
func checkKafkaVersion(o Object, c Compat) []string {
	if o.APIVersion != "kafka.strimzi.io/v1" || o.Kind != "Kafka" || c.Strimzi == "" {
		return nil
	}
	rel := c.Releases[c.Strimzi]
	var supported []string
	for v := range rel.Kafka {
		supported = append(supported, v)
	}
	slices.Sort(supported)
	v := str(o.Body, "spec", "kafka", "version")
	if v == "" {
		v = rel.Default
	}
	meta, ok := rel.Kafka[v]
	if !ok {
		return []string{fmt.Sprintf("%s: spec.kafka.version: %s is not supported by Strimzi %s (it runs %s; %s): the operator would refuse the cluster",
			o, v, c.Strimzi, strings.Join(supported, ", "), CompatFile)}
	}
	if mv := str(o.Body, "spec", "kafka", "metadataVersion"); mv != "" && minor(mv) > minor(meta) {
		return []string{fmt.Sprintf("%s: spec.kafka.metadataVersion: %s is newer than Kafka %s's (%s)", o, mv, v, meta)}
	}
	return nil
}

// minor turns "4.3-IV0" or "4.3" into 4003, to compare metadata versions by release.
func minor(v string) int {
	v, _, _ = strings.Cut(v, "-")
	maj, mnr, _ := strings.Cut(v, ".")
	a, _ := strconv.Atoi(maj)
	b, _ := strconv.Atoi(mnr)
	return a*1000 + b
}

// checkPDB wants unhealthyPodEvictionPolicy AlwaysAllow: with the default (IfHealthyBudget) a
// node drain waits for pods that cannot become ready — every kmirror pod while a cluster it
// mirrors is down — and stalls.
func checkPDB(o Object) []string {
	if o.APIVersion != "policy/v1" || o.Kind != "PodDisruptionBudget" {
		return nil
	}
	if p := str(o.Body, "spec", "unhealthyPodEvictionPolicy"); p != "AlwaysAllow" {
		return []string{fmt.Sprintf("%s: spec.unhealthyPodEvictionPolicy: %q, want AlwaysAllow (a drain must not wait for pods that cannot be ready while a cluster is down)", o, p)}
	}
	return nil
}

// checkKmirrorPod checks a kmirror Deployment's pod: its own ServiceAccount of the rendering with
// no token mounted, a NetworkPolicy of the rendering selecting it, GOMEMLIMIT at 85-95% of the
// memory limit, and every Secret it mounts made by the rendering (a Secret, Strimzi's cluster CA
// of a Kafka, a KafkaUser's password) or copied from the other site (t.CopiedSecrets).
func checkKmirrorPod(o Object, d *appsv1.Deployment, objs []Object, t Target) []string {
	var problems []string
	pod := &d.Spec.Template.Spec
	sa := pod.ServiceAccountName
	if sa == "" || sa == "default" || !has(objs, "ServiceAccount", sa) {
		problems = append(problems, fmt.Sprintf("%s: spec.template.spec.serviceAccountName: %q, want kmirror's own ServiceAccount of the rendering", o, sa))
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		problems = append(problems, fmt.Sprintf("%s: spec.template.spec.automountServiceAccountToken: want false (kmirror never calls the Kubernetes API)", o))
	}
	selected := false
	for _, np := range objs {
		if np.Kind != "NetworkPolicy" {
			continue
		}
		sel, _ := asMap(get(np.Body, "spec", "podSelector"))["matchLabels"].(map[string]any)
		match := len(sel) > 0
		for k, v := range sel {
			if d.Spec.Template.Labels[k] != v {
				match = false
			}
		}
		selected = selected || match
	}
	if !selected {
		problems = append(problems, fmt.Sprintf("%s: no NetworkPolicy of the rendering selects its pods", o))
	}
	for i, c := range pod.Containers {
		if c.Name != "kmirror" {
			continue
		}
		problems = append(problems, checkGoMemLimit(o, i, c)...)
		if c.Image != KmirrorImage {
			problems = append(problems, fmt.Sprintf("%s: spec.template.spec.containers[%d](%s).image: %q, want %s (every flow runs the release's image; override it with an images: entry in your overlay)", o, i, c.Name, c.Image, KmirrorImage))
		}
	}
	for i, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		name := v.Secret.SecretName
		made := has(objs, "Secret", name) || has(objs, "KafkaUser", name) || slices.Contains(t.CopiedSecrets, name) ||
			(strings.HasSuffix(name, "-cluster-ca-cert") && has(objs, "Kafka", strings.TrimSuffix(name, "-cluster-ca-cert")))
		if !made {
			problems = append(problems, fmt.Sprintf("%s: spec.template.spec.volumes[%d](%s).secret.secretName: %q: nothing in the rendering makes it (a Secret, a Kafka's <name>-cluster-ca-cert, a KafkaUser) and it is not one copied from the other site",
				o, i, v.Name, name))
		}
	}
	return problems
}

// checkGoMemLimit wants GOMEMLIMIT at 85-95% of the container's memory limit: at 100% the Go
// runtime collects hardest exactly when the kernel kills the container, and what the runtime
// does not count (thread stacks, the binary) has no room.
func checkGoMemLimit(o Object, i int, c corev1.Container) []string {
	path := fmt.Sprintf("spec.template.spec.containers[%d](%s).env[GOMEMLIMIT]", i, c.Name)
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return []string{fmt.Sprintf("%s: spec.template.spec.containers[%d](%s).resources.limits.memory: missing", o, i, c.Name)}
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		if e.ValueFrom != nil {
			return []string{fmt.Sprintf("%s: %s: from %v: want a value at 90%% of limits.memory (%s), not the whole limit", o, path, e.ValueFrom.ResourceFieldRef, limit.String())}
		}
		v, err := goMemLimit(e.Value)
		if err != nil {
			return []string{fmt.Sprintf("%s: %s: %q: %v", o, path, e.Value, err)}
		}
		share := float64(v) / float64(limit.Value())
		if share < 0.85 || share > 0.95 {
			return []string{fmt.Sprintf("%s: %s: %s is %.0f%% of limits.memory %s, want 85-95%% (about %dMiB)", o, path, e.Value, share*100, limit.String(), limit.Value()*9/10>>20)}
		}
		return nil
	}
	return []string{fmt.Sprintf("%s: %s: missing (want 90%% of limits.memory %s)", o, path, limit.String())}
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does: a byte count with an optional B, KiB, MiB,
// GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("want a number of bytes with B, KiB, MiB, GiB or TiB")
			}
			return v << u.shift, nil
		}
	}
	if q, err := resource.ParseQuantity(s); err == nil && !strings.ContainsAny(s, "KMGTPEkmi") {
		return q.Value(), nil
	}
	return 0, fmt.Errorf("want a number of bytes with B, KiB, MiB, GiB or TiB (Go does not read Kubernetes quantities like 1Gi)")
}
