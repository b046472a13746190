package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Change is one key whose value differs between the configuration a process runs with and the
// one it was asked to reload.
type Change struct {
	Key string
	// Reloadable is set when a running kmirror applies the change (SIGHUP); otherwise Reason says
	// why it needs a restart.
	Reloadable bool
	Reason     string
}

func (c Change) String() string {
	if c.Reloadable {
		return c.Key
	}
	return c.Key + " (" + c.Reason + ")"
}

// reloadable are the keys a running process applies: credentials (every new connection uses
// them), the topic and group selections (applied at the next topic refresh and sync round) and
// the log level. The SASL keys are reloadable for SCRAM only (ReloadableSASL in pkg/cluster
// decides; Diff asks through saslReloadable).
var reloadable = map[string]bool{
	"tls.ca_file": true, "tls.cert_file": true, "tls.key_file": true, "tls.server_name": true,
	"tls.insecure_skip_verify": true,
	"topics.include":           true, "topics.exclude": true,
	"groups.include": true, "groups.exclude": true,
	"log.level": true,
}

// restartReasons say, by key or key prefix (the longest that matches wins), why a change needs
// a restart.
var restartReasons = map[string]string{
	"source.bootstrap":     "the source clients are connected to the brokers it names",
	"target.bootstrap":     "the target clients are connected to the brokers it names",
	"source.alias":         "it names the flow in metrics, topic names and the offset map",
	"target.alias":         "it names the flow in metrics, topic names and the offset map",
	"source.tls.enabled":   "every source client was built with or without TLS",
	"target.tls.enabled":   "every target client was built with or without TLS",
	"source.sasl":          "every source client was built with this SASL setting",
	"target.sasl":          "every target client was built with this SASL setting",
	"source":               "the source clients were built with it",
	"target":               "the target clients were built with it",
	"topics":               "the topic sync and naming were set up with it",
	"consumer":             "the source consumer group was joined with it",
	"ring":                 "the workers and their inboxes were sized by it",
	"producer":             "the target producers were built with it",
	"commit":               "the committer was started with it",
	"delivery":             "the delivery mode and its producers were set up with it",
	"offset_map":           "the offset map was opened with it",
	"groups.sync_interval": "the group offset sync was started with it",
	"heartbeats":           "the heartbeat emitter was started with it",
	"shutdown":             "the stop's deadlines were set with it",
	"log.format":           "the logger was built with it",
	"telemetry.listen":     "the endpoint is bound to it",
	"telemetry":            "telemetry was set up with it",
	"runtime":              "the Go runtime was tuned with it at start",
}

// Diff returns the keys whose values differ between running and next, sorted, each saying
// whether a running process can apply it. A change of a SASL user or password is reloadable
// only under SCRAM (mechanism unchanged): PLAIN clients send the password they were built with.
func Diff(running, next *Config) []Change {
	old := map[string]any{}
	walkLeaves("", reflect.ValueOf(*running), func(k string, v any) { old[k] = v })
	var changes []Change
	walkLeaves("", reflect.ValueOf(*next), func(k string, v any) {
		if reflect.DeepEqual(old[k], v) {
			return
		}
		c := Change{Key: k, Reloadable: isReloadable(k, running, next)}
		if !c.Reloadable {
			c.Reason = restartReason(k)
		}
		changes = append(changes, c)
	})
	sort.Slice(changes, func(i, j int) bool { return changes[i].Key < changes[j].Key })
	return changes
}

func isReloadable(key string, running, next *Config) bool {
	role, rest, _ := strings.Cut(key, ".")
	if role == "source" || role == "target" {
		if reloadable[rest] {
			return true
		}
		switch rest {
		case "sasl.username", "sasl.password", "sasl.password_file":
			r, n := running.Source.SASL, next.Source.SASL
			if role == "target" {
				r, n = running.Target.SASL, next.Target.SASL
			}
			return r.Mechanism == n.Mechanism && strings.HasPrefix(n.Mechanism, "SCRAM-")
		}
		return false
	}
	return reloadable[key]
}

func restartReason(key string) string {
	if strings.HasSuffix(key, "sasl.password") || strings.HasSuffix(key, "sasl.password_file") || strings.HasSuffix(key, "sasl.username") {
		return "SASL PLAIN clients send the user and password they were built with (SCRAM ones reload)"
	}
	for k := key; k != ""; {
		if r, ok := restartReasons[k]; ok {
			return r
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return "read once at start"
}

// RefusedError is a reload refused because some changes need a restart: nothing was applied.
type RefusedError struct{ Changes []Change }

func (e *RefusedError) Error() string {
	var keys []string
	for _, c := range e.Changes {
		if !c.Reloadable {
			keys = append(keys, fmt.Sprintf("%s: %s", c.Key, c.Reason))
		}
	}
	return fmt.Sprintf("reload refused, nothing changed: %d changed key(s) need a restart (%s); "+
		"restart kmirror to apply them, or undo them and reload again", len(keys), strings.Join(keys, "; "))
}

// Refused returns the RefusedError of changes when one of them needs a restart, else nil.
func Refused(changes []Change) error {
	for _, c := range changes {
		if !c.Reloadable {
			return &RefusedError{Changes: changes}
		}
	}
	return nil
}
