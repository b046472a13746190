package main

import (
	"fmt"
	"strconv"
	"strings"
)

var (
	scaledObjectSpecKeys = keys("scaleTargetRef", "pollingInterval", "initialCooldownPeriod", "cooldownPeriod",
		"idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "triggers", "fallback")
	scaleTargetRefKeys = keys("apiVersion", "kind", "name", "envSourceContainerName")
	triggerKeys        = keys("type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics")
	prometheusKeys     = keys("serverAddress", "query", "threshold", "activationThreshold", "namespace", "authModes",
		"ignoreNullValues", "unsafeSsl", "customHeaders", "queryParameters", "timeout", "metricName")
	triggerAuthSpecKeys = keys("secretTargetRef", "env", "configMapTargetRef", "podIdentity", "hashiCorpVault",
		"azureKeyVault", "awsSecretManager", "gcpSecretManager", "boundServiceAccountToken")
	secretTargetRefKeys = keys("parameter", "name", "key")
)

// checkScaledObject checks a KEDA ScaledObject: it scales a Deployment of the rendering between
// sane bounds, and each prometheus trigger has a server, a query, a numeric threshold and, when it
// authenticates, a TriggerAuthentication of the rendering.
func checkScaledObject(o Object, objs []Object) []string {
	spec := get(o.Body, "spec")
	problems := unknownKeys(o, "spec", spec, scaledObjectSpecKeys)
	ref := asMap(get(o.Body, "spec", "scaleTargetRef"))
	problems = append(problems, unknownKeys(o, "spec.scaleTargetRef", ref, scaleTargetRefKeys)...)
	kind, _ := ref["kind"].(string)
	if kind == "" {
		kind = "Deployment"
	}
	if name, _ := ref["name"].(string); !has(objs, kind, name) {
		problems = append(problems, fmt.Sprintf("%s: spec.scaleTargetRef.name: no %s %q in the rendering", o, kind, name))
	}
	lo, hi := toInt(get(o.Body, "spec", "minReplicaCount")), toInt(get(o.Body, "spec", "maxReplicaCount"))
	if hi < 1 || lo > hi {
		problems = append(problems, fmt.Sprintf("%s: spec.minReplicaCount/maxReplicaCount: %d/%d, want 0 <= min <= max, max >= 1", o, lo, hi))
	}
	triggers := asSlice(get(o.Body, "spec", "triggers"))
	if len(triggers) == 0 {
		problems = append(problems, fmt.Sprintf("%s: spec.triggers: want at least one", o))
	}
	for i, tr := range triggers {
		tp := fmt.Sprintf("spec.triggers[%d]", i)
		tm := asMap(tr)
		problems = append(problems, unknownKeys(o, tp, tm, triggerKeys)...)
		switch mt := tm["metricType"]; mt {
		case nil, "AverageValue", "Value", "Utilization":
		default:
			problems = append(problems, fmt.Sprintf("%s: %s.metricType: %v, want AverageValue, Value or Utilization", o, tp, mt))
		}
		if tm["type"] != "prometheus" {
			continue
		}
		md := asMap(tm["metadata"])
		problems = append(problems, unknownKeys(o, tp+".metadata", md, prometheusKeys)...)
		// Scaling out on the backlog while a cluster is unreachable adds replicas that cannot
		// help, and a rebalance each; kmirror_ready says whether the flow can move.
		if q, _ := md["query"].(string); strings.Contains(q, "kmirror_unmirrored_records") && !strings.Contains(q, "kmirror_ready") {
			problems = append(problems, fmt.Sprintf("%s: %s.metadata.query: scales on the backlog whatever kmirror_ready says; hold the replica count while kmirror is not ready (the target unreachable)", o, tp))
		}
		for _, k := range []string{"serverAddress", "query", "threshold"} {
			if s, _ := md[k].(string); s == "" {
				problems = append(problems, fmt.Sprintf("%s: %s.metadata.%s: missing (a string)", o, tp, k))
			}
		}
		if s, ok := md["threshold"].(string); ok && s != "" {
			if f, err := strconv.ParseFloat(s, 64); err != nil || f <= 0 {
				problems = append(problems, fmt.Sprintf("%s: %s.metadata.threshold: %q, want a positive number", o, tp, s))
			}
		}
		if modes, _ := md["authModes"].(string); modes != "" {
			name, _ := asMap(tm["authenticationRef"])["name"].(string)
			if !has(objs, "TriggerAuthentication", name) {
				problems = append(problems, fmt.Sprintf("%s: %s.authenticationRef.name: no TriggerAuthentication %q in the rendering (authModes %s needs one)", o, tp, name, modes))
			}
		}
	}
	return problems
}

// checkTriggerAuthentication checks that every Secret a TriggerAuthentication reads is one of the
// rendering, with a parameter and a key.
func checkTriggerAuthentication(o Object, objs []Object) []string {
	problems := unknownKeys(o, "spec", get(o.Body, "spec"), triggerAuthSpecKeys)
	refs := asSlice(get(o.Body, "spec", "secretTargetRef"))
	if len(refs) == 0 {
		problems = append(problems, fmt.Sprintf("%s: spec.secretTargetRef: want at least one", o))
	}
	for i, r := range refs {
		rp := fmt.Sprintf("spec.secretTargetRef[%d]", i)
		rm := asMap(r)
		problems = append(problems, unknownKeys(o, rp, rm, secretTargetRefKeys)...)
		for _, k := range []string{"parameter", "key"} {
			if s, _ := rm[k].(string); s == "" {
				problems = append(problems, fmt.Sprintf("%s: %s.%s: missing", o, rp, k))
			}
		}
		if name, _ := rm["name"].(string); !has(objs, "Secret", name) {
			problems = append(problems, fmt.Sprintf("%s: %s.name: no Secret %q in the rendering", o, rp, name))
		}
	}
	return problems
}
