package main

import (
	"fmt"
	"sort"
	"strings"
)

// The Prometheus Operator's and KEDA's CRDs are not available offline, so their objects are
// checked structurally: the fields kmirror's manifests rely on must be there and make sense, and
// every key must be one the CRD knows (a misspelt key would be pruned by the API server and the
// setting silently lost). The key lists follow monitoring.coreos.com/v1 and keda.sh/v1alpha1.

var (
	serviceMonitorSpecKeys = keys("selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
		"podTargetLabels", "sampleLimit", "targetLimit", "scrapeProtocols", "fallbackScrapeProtocol", "labelLimit",
		"labelNameLengthLimit", "labelValueLengthLimit", "keepDroppedTargets", "attachMetadata", "scrapeClass",
		"bodySizeLimit", "selectorMechanism", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
		"scrapeClassicHistograms", "convertClassicHistogramsToNHCB")
	podMonitorSpecKeys = keys("selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
		"sampleLimit", "targetLimit", "scrapeProtocols", "fallbackScrapeProtocol", "labelLimit", "labelNameLengthLimit",
		"labelValueLengthLimit", "keepDroppedTargets", "attachMetadata", "scrapeClass", "bodySizeLimit",
		"selectorMechanism", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
		"scrapeClassicHistograms", "convertClassicHistogramsToNHCB")
	endpointKeys = keys("port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
		"tlsConfig", "bearerTokenFile", "bearerTokenSecret", "authorization", "honorLabels", "honorTimestamps",
		"trackTimestampsStaleness", "basicAuth", "oauth2", "metricRelabelings", "relabelings", "proxyUrl", "noProxy",
		"proxyFromEnvironment", "proxyConnectHeader", "followRedirects", "enableHttp2", "filterRunning")
	relabelKeys   = keys("sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action")
	ruleGroupKeys = keys("name", "labels", "interval", "query_offset", "limit", "rules", "partial_response_strategy")
	ruleKeys      = keys("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")
)

func keys(k ...string) map[string]bool {
	m := make(map[string]bool, len(k))
	for _, s := range k {
		m[s] = true
	}
	return m
}

// unknownKeys names every key of m (at path) that is not in allowed.
func unknownKeys(o Object, path string, v any, allowed map[string]bool) []string {
	var bad []string
	for k := range asMap(v) {
		if !allowed[k] {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	var problems []string
	for _, k := range bad {
		problems = append(problems, fmt.Sprintf("%s: unknown field %q (not in the %s schema)", o, path+"."+k, o.Kind))
	}
	return problems
}

func checkServiceMonitor(o Object) []string {
	problems := unknownKeys(o, "spec", get(o.Body, "spec"), serviceMonitorSpecKeys)
	if get(o.Body, "spec", "selector") == nil {
		problems = append(problems, fmt.Sprintf("%s: spec.selector: missing", o))
	}
	return append(problems, checkEndpoints(o, "spec.endpoints", get(o.Body, "spec", "endpoints"))...)
}

// checkPodMonitor checks a PodMonitor, and that one selecting Strimzi's Kafka pods scrapes the port
// Strimzi names for the metrics exporter.
func checkPodMonitor(o Object) []string {
	problems := unknownKeys(o, "spec", get(o.Body, "spec"), podMonitorSpecKeys)
	sel := asMap(get(o.Body, "spec", "selector"))
	if len(asMap(sel["matchLabels"])) == 0 && sel["matchExpressions"] == nil {
		problems = append(problems, fmt.Sprintf("%s: spec.selector: select the pods (matchLabels or matchExpressions)", o))
	}
	eps := get(o.Body, "spec", "podMetricsEndpoints")
	problems = append(problems, checkEndpoints(o, "spec.podMetricsEndpoints", eps)...)
	if str(o.Body, "spec", "selector", "matchLabels", "strimzi.io/kind") == "Kafka" {
		for i, e := range asSlice(eps) {
			if p := asMap(e)["port"]; p != "tcp-prometheus" {
				problems = append(problems, fmt.Sprintf("%s: spec.podMetricsEndpoints[%d].port: %v, want tcp-prometheus (the port Strimzi gives the metrics exporter)", o, i, p))
			}
		}
	}
	return problems
}

func checkEndpoints(o Object, path string, v any) []string {
	var problems []string
	eps := asSlice(v)
	if len(eps) == 0 {
		problems = append(problems, fmt.Sprintf("%s: %s: want at least one", o, path))
	}
	for i, e := range eps {
		ep := fmt.Sprintf("%s[%d]", path, i)
		m := asMap(e)
		problems = append(problems, unknownKeys(o, ep, m, endpointKeys)...)
		if m["port"] == nil && m["targetPort"] == nil && m["portNumber"] == nil {
			problems = append(problems, fmt.Sprintf("%s: %s: name a port", o, ep))
		}
		for _, rk := range []string{"relabelings", "metricRelabelings"} {
			for j, r := range asSlice(m[rk]) {
				problems = append(problems, unknownKeys(o, fmt.Sprintf("%s.%s[%d]", ep, rk, j), r, relabelKeys)...)
			}
		}
	}
	return problems
}

// checkPrometheusRule checks the shape of a PrometheusRule's groups (promtool checks the
// expressions of the same groups in deploy/prometheus): every rule records or alerts, has an
// expression, and every alert has a severity and a summary.
func checkPrometheusRule(o Object) []string {
	problems := unknownKeys(o, "spec", get(o.Body, "spec"), keys("groups"))
	groups := asSlice(get(o.Body, "spec", "groups"))
	if len(groups) == 0 {
		problems = append(problems, fmt.Sprintf("%s: spec.groups: want at least one", o))
	}
	for i, g := range groups {
		gp := fmt.Sprintf("spec.groups[%d]", i)
		gm := asMap(g)
		problems = append(problems, unknownKeys(o, gp, gm, ruleGroupKeys)...)
		if s, _ := gm["name"].(string); s == "" {
			problems = append(problems, fmt.Sprintf("%s: %s.name: missing", o, gp))
		}
		rules := asSlice(gm["rules"])
		if len(rules) == 0 {
			problems = append(problems, fmt.Sprintf("%s: %s.rules: want at least one", o, gp))
		}
		for j, r := range rules {
			rp := fmt.Sprintf("%s.rules[%d]", gp, j)
			rm := asMap(r)
			problems = append(problems, unknownKeys(o, rp, rm, ruleKeys)...)
			alert, _ := rm["alert"].(string)
			record, _ := rm["record"].(string)
			if (alert == "") == (record == "") {
				problems = append(problems, fmt.Sprintf("%s: %s: want exactly one of alert and record", o, rp))
			}
			if e, _ := rm["expr"].(string); strings.TrimSpace(e) == "" {
				problems = append(problems, fmt.Sprintf("%s: %s.expr: missing", o, rp))
			}
			if alert != "" {
				if s, _ := asMap(rm["labels"])["severity"].(string); s != "critical" && s != "warning" && s != "info" {
					problems = append(problems, fmt.Sprintf("%s: %s(%s).labels.severity: %q, want critical, warning or info", o, rp, alert, s))
				}
				if s, _ := asMap(rm["annotations"])["summary"].(string); s == "" {
					problems = append(problems, fmt.Sprintf("%s: %s(%s).annotations.summary: missing", o, rp, alert))
				}
			}
		}
	}
	return problems
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
