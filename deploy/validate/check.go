package main

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// CheckTarget renders a kustomize directory and returns every problem found, and the number of
// objects checked.
func CheckTarget(dir string, t Target, schemas Schemas) ([]string, int, error) {
	objs, err := Render(dir)
	if err != nil {
		return nil, 0, err
	}
	return CheckObjects(objs, t, schemas), len(objs), nil
}

// CheckObjects validates rendered objects one by one, then the policies that span them.
func CheckObjects(objs []Object, t Target, schemas Schemas) []string {
	var problems []string
	for _, o := range objs {
		switch {
		case schemas.Has(o.APIVersion, o.Kind):
			problems = append(problems, schemas.Validate(o)...)
		case o.APIVersion == "monitoring.coreos.com/v1" && o.Kind == "ServiceMonitor":
			problems = append(problems, checkServiceMonitor(o)...)
		case o.APIVersion == "route.openshift.io/v1" && o.Kind == "Route":
			problems = append(problems, checkRoute(o)...)
		default:
			v, errs := decodeBuiltin(o)
			problems = append(problems, errs...)
			if v == nil && errs == nil {
				problems = append(problems, fmt.Sprintf("%s: kind not known to the validator (add its schema)", o))
			}
			if d, ok := v.(*appsv1.Deployment); ok {
				problems = append(problems, checkRestrictedV2(o, &d.Spec.Template.Spec)...)
				if d.Name == "kmirror" {
					problems = append(problems, checkKmirrorProbes(o, &d.Spec.Template.Spec)...)
				}
			}
		}
	}
	return append(problems, checkKafka(objs, t)...)
}

// checkRestrictedV2 applies OpenShift's restricted-v2 SCC rules to a pod template: non-root, no
// privilege escalation, read-only root filesystem, every capability dropped, the runtime's
// default seccomp profile, and no pinned UID (OpenShift assigns one from the namespace range).
func checkRestrictedV2(o Object, pod *corev1.PodSpec) []string {
	var problems []string
	bad := func(path, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s: %s (OpenShift restricted-v2)", o, path, fmt.Sprintf(format, args...)))
	}
	psc := pod.SecurityContext
	if psc != nil && psc.RunAsUser != nil {
		bad("spec.template.spec.securityContext.runAsUser", "must not be pinned; OpenShift assigns the UID")
	}
	podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	for i, c := range pod.Containers {
		path := fmt.Sprintf("spec.template.spec.containers[%d](%s).securityContext", i, c.Name)
		sc := c.SecurityContext
		if sc == nil {
			bad(path, "missing")
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad(path+".allowPrivilegeEscalation", "must be false")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad(path+".readOnlyRootFilesystem", "must be true")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			bad(path+".capabilities.drop", "must contain ALL")
		} else if len(sc.Capabilities.Add) > 0 {
			bad(path+".capabilities.add", "must be empty")
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad(path+".privileged", "must not be true")
		}
		if sc.RunAsUser != nil {
			bad(path+".runAsUser", "must not be pinned; OpenShift assigns the UID")
		}
		if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			bad(path+".runAsNonRoot", "must be true (here or in the pod's securityContext)")
		}
		if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			bad(path+".seccompProfile.type", "must be RuntimeDefault (here or in the pod's securityContext)")
		}
	}
	return problems
}

func checkKmirrorProbes(o Object, pod *corev1.PodSpec) []string {
	var problems []string
	for i, c := range pod.Containers {
		if c.Name != "kmirror" {
			continue
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
				problems = append(problems, fmt.Sprintf("%s: spec.template.spec.containers[%d].%s: must be an HTTP GET of %s", o, i, p.name, p.path))
			}
		}
	}
	return problems
}

// checkKafka checks that every Kafka runs in KRaft mode with node pools that provide both
// controllers and brokers, and that persistent volumes use the target's storage class.
func checkKafka(objs []Object, t Target) []string {
	var problems []string
	roles := map[string]map[string]int{} // cluster -> role -> replicas
	for _, o := range objs {
		if o.APIVersion != "kafka.strimzi.io/v1" || o.Kind != "KafkaNodePool" {
			continue
		}
		cluster := str(o.Body, "metadata", "labels", "strimzi.io/cluster")
		if cluster == "" {
			problems = append(problems, fmt.Sprintf("%s: metadata.labels[strimzi.io/cluster]: missing: a node pool must name its Kafka", o))
			continue
		}
		if roles[cluster] == nil {
			roles[cluster] = map[string]int{}
		}
		replicas := toInt(get(o.Body, "spec", "replicas"))
		if rs, ok := get(o.Body, "spec", "roles").([]any); ok {
			for _, r := range rs {
				roles[cluster][fmt.Sprint(r)] += int(replicas)
			}
		}
		if t.StorageClass != "" {
			vols, _ := get(o.Body, "spec", "storage", "volumes").([]any)
			for i, v := range vols {
				vm, _ := v.(map[string]any)
				if vm["type"] == "persistent-claim" && vm["class"] != t.StorageClass {
					problems = append(problems, fmt.Sprintf("%s: spec.storage.volumes[%d].class: %v, want %s", o, i, vm["class"], t.StorageClass))
				}
			}
		}
	}
	for _, o := range objs {
		if o.APIVersion != "kafka.strimzi.io/v1" || o.Kind != "Kafka" {
			continue
		}
		r := roles[o.Name]
		if r["controller"] < 3 || r["broker"] < 3 {
			problems = append(problems, fmt.Sprintf("%s: node pools give %d controllers and %d brokers; want KRaft with at least 3 of each",
				o, r["controller"], r["broker"]))
		}
		if rack := str(o.Body, "spec", "kafka", "rack", "topologyKey"); rack != "topology.kubernetes.io/zone" {
			problems = append(problems, fmt.Sprintf("%s: spec.kafka.rack.topologyKey: %q, want topology.kubernetes.io/zone", o, rack))
		}
	}
	return problems
}

func checkServiceMonitor(o Object) []string {
	var problems []string
	if get(o.Body, "spec", "selector") == nil {
		problems = append(problems, fmt.Sprintf("%s: spec.selector: missing", o))
	}
	eps, _ := get(o.Body, "spec", "endpoints").([]any)
	if len(eps) == 0 {
		problems = append(problems, fmt.Sprintf("%s: spec.endpoints: want at least one", o))
	}
	for i, e := range eps {
		if m, _ := e.(map[string]any); m["port"] == nil && m["targetPort"] == nil {
			problems = append(problems, fmt.Sprintf("%s: spec.endpoints[%d]: name a port", o, i))
		}
	}
	return problems
}

func checkRoute(o Object) []string {
	if str(o.Body, "spec", "to", "kind") != "Service" || str(o.Body, "spec", "to", "name") == "" {
		return []string{fmt.Sprintf("%s: spec.to: want kind Service and a name", o)}
	}
	return nil
}

func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func str(m map[string]any, path ...string) string {
	s, _ := get(m, path...).(string)
	return strings.TrimSpace(s)
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}
