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
func CheckTarget(dir string, t Target, schemas Schemas, compat Compat) ([]string, int, error) {
	objs, err := Render(dir)
	if err != nil {
		return nil, 0, err
	}
	return CheckObjects(objs, t, schemas, compat), len(objs), nil
}

// CheckObjects validates rendered objects one by one, then the policies that span them.
func CheckObjects(objs []Object, t Target, schemas Schemas, compat Compat) []string {
	var problems []string
	for _, o := range objs {
		problems = append(problems, checkNamespace(o)...)
		switch {
		case schemas.Has(o.APIVersion, o.Kind):
			problems = append(problems, schemas.Validate(o)...)
			problems = append(problems, checkStrimziCluster(o, objs)...)
			problems = append(problems, checkKafkaVersion(o, compat)...)
		case o.APIVersion == "monitoring.coreos.com/v1" && o.Kind == "ServiceMonitor":
			problems = append(problems, checkServiceMonitor(o)...)
		case o.APIVersion == "monitoring.coreos.com/v1" && o.Kind == "PodMonitor":
			problems = append(problems, checkPodMonitor(o)...)
		case o.APIVersion == "monitoring.coreos.com/v1" && o.Kind == "PrometheusRule":
			problems = append(problems, checkPrometheusRule(o)...)
		case o.APIVersion == "keda.sh/v1alpha1" && o.Kind == "ScaledObject":
			problems = append(problems, checkScaledObject(o, objs)...)
		case o.APIVersion == "keda.sh/v1alpha1" && o.Kind == "TriggerAuthentication":
			problems = append(problems, checkTriggerAuthentication(o, objs)...)
		case o.APIVersion == "route.openshift.io/v1" && o.Kind == "Route":
			problems = append(problems, checkRoute(o)...)
		default:
			v, errs := decodeBuiltin(o)
			problems = append(problems, errs...)
			problems = append(problems, checkPDB(o)...)
			if v == nil && errs == nil {
				problems = append(problems, fmt.Sprintf("%s: kind not known to the validator (add its schema)", o))
			}
			if d, ok := v.(*appsv1.Deployment); ok {
				problems = append(problems, checkRestrictedV2(o, &d.Spec.Template.Spec)...)
				problems = append(problems, checkImagesPinned(o, &d.Spec.Template.Spec)...)
				problems = append(problems, checkNotAutoscaledAndPinned(o, d, objs)...)
				if d.Spec.Template.Labels["app.kubernetes.io/name"] == "kmirror" {
					problems = append(problems, checkKmirrorProbes(o, &d.Spec.Template.Spec)...)
					problems = append(problems, checkSite(o, "spec.template.spec.affinity", get(o.Body, "spec", "template", "spec", "affinity"), Sites[d.Name], t)...)
					problems = append(problems, checkKmirrorPod(o, d, objs, t)...)
				}
			}
		}
	}
	return append(problems, checkKafka(objs, t)...)
}

// checkNamespace keeps every namespaced object in the deployment's namespace, so that
// `oc apply -k` puts nothing in whatever namespace the user happens to be in.
func checkNamespace(o Object) []string {
	if o.APIVersion == "v1" && o.Kind == "Namespace" {
		return nil
	}
	if ns := str(o.Body, "metadata", "namespace"); ns != Namespace {
		return []string{fmt.Sprintf("%s: metadata.namespace: %q, want %s (set namespace: in the kustomization)", o, ns, Namespace)}
	}
	return nil
}

// checkStrimziCluster checks that a Strimzi resource managed by a Kafka's operators names a Kafka
// of the rendering in its strimzi.io/cluster label; otherwise no operator ever acts on it.
func checkStrimziCluster(o Object, objs []Object) []string {
	switch o.Kind {
	case "KafkaNodePool", "KafkaTopic", "KafkaUser":
	default:
		return nil
	}
	cluster := str(o.Body, "metadata", "labels", "strimzi.io/cluster")
	if cluster == "" {
		return []string{fmt.Sprintf("%s: metadata.labels[strimzi.io/cluster]: missing: name the Kafka it belongs to", o)}
	}
	if !has(objs, "Kafka", cluster) {
		return []string{fmt.Sprintf("%s: metadata.labels[strimzi.io/cluster]: no Kafka %q in the rendering", o, cluster)}
	}
	return nil
}

// checkImagesPinned refuses images without a tag or digest and the "latest" tags: a restart must
// not change what runs.
func checkImagesPinned(o Object, pod *corev1.PodSpec) []string {
	var problems []string
	all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	for _, c := range all {
		if strings.Contains(c.Image, "@sha256:") {
			continue
		}
		ref := c.Image[strings.LastIndex(c.Image, "/")+1:]
		tag := ""
		if i := strings.LastIndex(ref, ":"); i >= 0 {
			tag = ref[i+1:]
		}
		if tag == "" || tag == "latest" || strings.HasPrefix(tag, "latest-") {
			problems = append(problems, fmt.Sprintf("%s: container %s: image %q: pin a version tag or a digest", o, c.Name, c.Image))
		}
	}
	return problems
}

// checkNotAutoscaledAndPinned refuses a Deployment that sets spec.replicas while an autoscaler
// (a KEDA ScaledObject or an HPA) drives it: every apply would reset the autoscaler's choice.
func checkNotAutoscaledAndPinned(o Object, d *appsv1.Deployment, objs []Object) []string {
	if d.Spec.Replicas == nil {
		return nil
	}
	for _, a := range objs {
		if (a.Kind == "ScaledObject" || a.Kind == "HorizontalPodAutoscaler") &&
			str(a.Body, "spec", "scaleTargetRef", "name") == d.Name && str(a.Body, "spec", "scaleTargetRef", "kind") == "Deployment" {
			return []string{fmt.Sprintf("%s: spec.replicas: set while %s scales it; remove it", o, a)}
		}
	}
	return nil
}

// checkSite checks that a pod's required node affinity pins it to site through t.SiteKey.
func checkSite(o Object, path string, affinity any, site string, t Target) []string {
	if t.SiteKey == "" {
		return nil
	}
	terms, _ := get(asMap(affinity), "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
	if len(terms) == 0 {
		return []string{fmt.Sprintf("%s: %s.nodeAffinity: required node affinity missing; want %s In [%s]", o, path, t.SiteKey, site)}
	}
	var problems []string
	for i, term := range terms {
		ok := false
		exprs, _ := asMap(term)["matchExpressions"].([]any)
		for _, e := range exprs {
			em := asMap(e)
			vals, _ := em["values"].([]any)
			if em["key"] == t.SiteKey && em["operator"] == "In" && len(vals) == 1 && vals[0] == site {
				ok = true
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[%d]: want %s In [%s] (the node label that names the site)",
				o, path, i, t.SiteKey, site))
		}
	}
	return problems
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

// checkKmirrorProbes pins each probe to the endpoint with its meaning: liveness /healthz (the
// process runs), readiness /readyz (mirroring), startup /startupz (configuration loaded and main
// loop running, whatever the clusters do: a startup probe on /readyz would restart a pod whose
// cluster is down, one on /healthz would mean nothing).
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
		}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}, {"startupProbe", c.StartupProbe, "/startupz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
				problems = append(problems, fmt.Sprintf("%s: spec.template.spec.containers[%d].%s: must be an HTTP GET of %s", o, i, p.name, p.path))
			}
		}
	}
	return problems
}

// checkKafka checks that every Kafka runs in KRaft mode with node pools that provide both
// controllers and brokers, pinned to its site, with rack awareness on the target's rack label, and
// that persistent volumes use the storage class of their site.
func checkKafka(objs []Object, t Target) []string {
	var problems []string
	roles := map[string]map[string]int{} // cluster -> role -> replicas
	for _, o := range objs {
		if o.APIVersion != "kafka.strimzi.io/v1" || o.Kind != "KafkaNodePool" {
			continue
		}
		cluster := str(o.Body, "metadata", "labels", "strimzi.io/cluster")
		if cluster == "" {
			continue // checkStrimziCluster names it
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
		if want, ok := t.StorageClasses[cluster]; ok {
			vols, _ := get(o.Body, "spec", "storage", "volumes").([]any)
			for i, v := range vols {
				vm, _ := v.(map[string]any)
				if vm["type"] == "persistent-claim" && vm["class"] != want {
					problems = append(problems, fmt.Sprintf("%s: spec.storage.volumes[%d].class: %v, want %s (the storage class of %s's site)", o, i, vm["class"], want, cluster))
				}
			}
		}
		problems = append(problems, checkSite(o, "spec.template.pod.affinity", get(o.Body, "spec", "template", "pod", "affinity"), Sites[cluster], t)...)
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
		if rack := str(o.Body, "spec", "kafka", "rack", "topologyKey"); rack != t.RackKey {
			problems = append(problems, fmt.Sprintf("%s: spec.kafka.rack.topologyKey: %q, want %s", o, rack, t.RackKey))
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

func has(objs []Object, kind, name string) bool {
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
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
