package heartbeat

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TopicName returns the heartbeat topic of origin: "<base>.<origin>".
func TopicName(base, origin string) string { return base + "." + origin }

// Origin returns the alias of the cluster where the heartbeats of topic originated, and whether
// topic is a heartbeat topic at all: topic is "<base>.<origin>", possibly behind replication
// prefixes ("us.<base>.<origin>"), and origin is an alias (no "."; aliases are letters, digits,
// '-' and '_').
func Origin(base, topic string) (string, bool) {
	i := strings.LastIndex(topic, base+".")
	if i < 0 || (i > 0 && topic[i-1] != '.') {
		return "", false
	}
	origin := topic[i+len(base)+1:]
	if origin == "" || strings.ContainsRune(origin, '.') {
		return "", false
	}
	return origin, true
}

// Rule is the topic decision of the flow from Source to Target about heartbeat topics.
type Rule struct {
	Base           string // heartbeats.topic
	Source, Target string // the flow's aliases
}

// Decide reports, for a source topic, whether it is mirrored, and whether Rule decides at all
// (otherwise topics.include/exclude do): the flow's own heartbeat topic always is, and a heartbeat
// topic whose heartbeats originated on the target never is, so they never go back where they
// came from.
func (r Rule) Decide(topic string) (mirrored, decided bool) {
	if topic == TopicName(r.Base, r.Source) {
		return true, true
	}
	if origin, ok := Origin(r.Base, topic); ok && origin == r.Target {
		return false, true
	}
	return false, false
}

// Heartbeat is one heartbeat record's value.
type Heartbeat struct {
	// Origin is the alias of the cluster the heartbeat was written to (the flow's source).
	Origin string `json:"origin"`
	// Target is the alias of the flow's target cluster.
	Target string `json:"target"`
	// Emitted is when kmirror wrote it, in RFC 3339 UTC with milliseconds.
	Emitted string `json:"emitted"`
	// EmittedMs is the same instant in Unix milliseconds.
	EmittedMs int64 `json:"emitted_ms"`
}

// New returns the heartbeat of the flow origin → target emitted at t.
func New(origin, target string, t time.Time) Heartbeat {
	t = t.UTC().Truncate(time.Millisecond)
	return Heartbeat{Origin: origin, Target: target, Emitted: t.Format("2006-01-02T15:04:05.000Z07:00"), EmittedMs: t.UnixMilli()}
}

// Key is the record key of the flow's heartbeats: "<origin>-><target>".
func (h Heartbeat) Key() []byte { return []byte(h.Origin + "->" + h.Target) }

// Time is the emit time.
func (h Heartbeat) Time() time.Time { return time.UnixMilli(h.EmittedMs) }

// Value encodes the record value.
func (h Heartbeat) Value() []byte {
	b, _ := json.Marshal(h) // strings and an int64: cannot fail
	return b
}

// Parse decodes a heartbeat record; the key must name the same flow as the value.
func Parse(key, value []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := json.Unmarshal(value, &h); err != nil {
		return Heartbeat{}, fmt.Errorf("heartbeat value %q: %w", value, err)
	}
	if h.Origin == "" || h.Target == "" || h.EmittedMs <= 0 {
		return Heartbeat{}, fmt.Errorf("heartbeat value %q: origin, target and emitted_ms are required", value)
	}
	if string(key) != string(h.Key()) {
		return Heartbeat{}, fmt.Errorf("heartbeat key %q does not name the flow of its value (%q)", key, h.Key())
	}
	return h, nil
}
