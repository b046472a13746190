package topics

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Target topic configs that decide whether a broker accepts a record (besides its size).
const (
	ConfigCleanupPolicy      = "cleanup.policy"
	ConfigTimestampType      = "message.timestamp.type"
	ConfigTimestampAfterMax  = "message.timestamp.after.max.ms"
	ConfigTimestampBeforeMax = "message.timestamp.before.max.ms"
	// ConfigTimestampDifference is the single bound of Kafka before 3.6, deprecated in 3.6 and
	// removed in 4.0. Kafka 3.6 to 3.9 apply it to either direction whose own config is unset.
	ConfigTimestampDifference = "message.timestamp.difference.max.ms"
	ConfigMaxMessageBytes     = "max.message.bytes"
	// ConfigMinInsyncReplicas is capped at the target topic's replication factor when synced.
	ConfigMinInsyncReplicas = "min.insync.replicas"
)

// Reasons a target topic refuses a record, as RefusedError.Reason carries them: short and
// bounded, fit for a metric label or a header.
const (
	ReasonTimestampInFuture       = "timestamp_in_future"
	ReasonTimestampTooOld         = "timestamp_too_old"
	ReasonKeylessInCompactedTopic = "keyless_in_compacted_topic"
)

// RefusedError says why a target topic would refuse a record that its source topic accepted,
// which topic config decides it and how to get past it.
type RefusedError struct {
	// Topic is the target topic.
	Topic string
	// Reason is one of the Reason* constants.
	Reason string
	// Config is the target topic config that refuses the record (cleanup.policy,
	// message.timestamp.after.max.ms or message.timestamp.before.max.ms).
	Config string
	// text is the whole message, naming the topic, the config and the fix.
	text string
}

func (e *RefusedError) Error() string { return e.text }

// Refusal returns nil when the target topic accepts a record with this key and timestamp at
// time now, and otherwise a *RefusedError saying why. It checks what a broker checks beyond the
// record's size (which is checked elsewhere, against MaxMessageBytes):
//
//   - a compacted topic (cleanup.policy includes compact) refuses a record without a key (a nil
//     key; an empty key is a key);
//   - a CreateTime topic refuses a timestamp more than TimestampAfterMax ahead of now or more
//     than TimestampBeforeMax behind it. A LogAppendTime topic replaces the timestamp and
//     accepts any; a record without a timestamp (the zero time) is sent with the producer's
//     clock and is never refused for it.
//
// The broker compares with its own clock when the record arrives: now should be the moment of
// sending, and a record within a few milliseconds of a bound may still go either way.
func (t Topic) Refusal(key []byte, ts time.Time, now time.Time) error {
	if t.Compacted && key == nil {
		return &RefusedError{Topic: t.Target, Reason: ReasonKeylessInCompactedTopic, Config: ConfigCleanupPolicy,
			text: fmt.Sprintf("target topic %q refuses a record without a key (its cleanup.policy includes compact): %s",
				t.Target, "add delete to the target topic's cleanup.policy, or set producer.refused_policy")}
	}
	if t.LogAppendTime || ts.IsZero() {
		return nil
	}
	// Milliseconds, as the broker counts: a Duration cannot span every timestamp a record may
	// carry (year 1970 to 9999).
	diff := ts.UnixMilli() - now.UnixMilli()
	if limit, ok := limitMs(t.TimestampAfterMax); ok && diff > limit {
		return &RefusedError{Topic: t.Target, Reason: ReasonTimestampInFuture, Config: ConfigTimestampAfterMax,
			text: fmt.Sprintf("target topic %q refuses a record whose timestamp is %s in the future (%s is %d): %s",
				t.Target, humanMs(diff), ConfigTimestampAfterMax, limit, refusalFix)}
	}
	if limit, ok := limitMs(t.TimestampBeforeMax); ok && -diff > limit {
		return &RefusedError{Topic: t.Target, Reason: ReasonTimestampTooOld, Config: ConfigTimestampBeforeMax,
			text: fmt.Sprintf("target topic %q refuses a record whose timestamp is %s in the past (%s is %d): %s",
				t.Target, humanMs(-diff), ConfigTimestampBeforeMax, limit, refusalFix)}
	}
	return nil
}

const refusalFix = "raise it on the target topic, or set producer.refused_policy"

// limitMs returns a timestamp bound in milliseconds and whether there is one (0 means none).
func limitMs(d time.Duration) (int64, bool) {
	if d <= 0 {
		return 0, false
	}
	return d.Milliseconds(), true // a configured 0 is held as 1ns: 0 ms here, as configured
}

// humanMs renders a millisecond difference as a Duration would ("2h0m0s"), or in days when it
// is too long for one.
func humanMs(ms int64) string {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return fmt.Sprintf("%d days", ms/(24*3600*1000))
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// acceptance is what a topic's configs say about the records it accepts.
type acceptance struct {
	compacted, logAppendTime bool
	after, before            time.Duration
	maxMessageBytes          int
}

// readAcceptance interprets a topic's configs (name → value, as DescribeConfigs reports them)
// the way a broker does. Absent or unreadable values leave the zero value: no check.
func readAcceptance(configs map[string]string) acceptance {
	var a acceptance
	for _, p := range strings.Split(configs[ConfigCleanupPolicy], ",") {
		if strings.TrimSpace(p) == "compact" {
			a.compacted = true
		}
	}
	a.logAppendTime = configs[ConfigTimestampType] == "LogAppendTime"
	diff, hasDiff := parseMs(configs[ConfigTimestampDifference])
	bound := func(key string) time.Duration {
		v, ok := parseMs(configs[key])
		// Kafka 3.6-3.9: a direction left at its default (Long.MAX_VALUE) takes the deprecated
		// difference bound instead.
		if (!ok || v == math.MaxInt64) && hasDiff {
			v, ok = diff, true
		}
		switch {
		case !ok || v >= math.MaxInt64/int64(time.Millisecond):
			return 0 // no limit, or one no Duration can hold: no timestamp reaches it
		case v == 0:
			return time.Nanosecond // configured 0: nothing may differ at all
		default:
			return time.Duration(v) * time.Millisecond
		}
	}
	a.after, a.before = bound(ConfigTimestampAfterMax), bound(ConfigTimestampBeforeMax)
	if n, err := strconv.Atoi(configs[ConfigMaxMessageBytes]); err == nil && n > 0 {
		a.maxMessageBytes = n
	}
	return a
}

// parseMs parses a non-negative millisecond count.
func parseMs(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}
