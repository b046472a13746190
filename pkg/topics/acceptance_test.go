package topics

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRefusalChecksWhatTheTargetBrokerChecks(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	strict := Topic{Target: "orders", TimestampAfterMax: time.Hour, TimestampBeforeMax: 7 * 24 * time.Hour}
	cases := []struct {
		name       string
		topic      Topic
		key        []byte
		ts         time.Time
		wantReason string
		wantText   []string
	}{
		{"within both bounds", strict, []byte("k"), now.Add(-time.Minute), "", nil},
		{"exactly at the future bound", strict, []byte("k"), now.Add(time.Hour), "", nil},
		{"one ms past the future bound", strict, []byte("k"), now.Add(time.Hour + time.Millisecond), ReasonTimestampInFuture,
			[]string{`target topic "orders"`, "1h0m0.001s in the future", "message.timestamp.after.max.ms is 3600000", "producer.refused_policy"}},
		{"two hours ahead", strict, nil, now.Add(2 * time.Hour), ReasonTimestampInFuture,
			[]string{`target topic "orders" refuses a record whose timestamp is 2h0m0s in the future (message.timestamp.after.max.ms is 3600000): raise it on the target topic, or set producer.refused_policy`}},
		{"exactly at the past bound", strict, []byte("k"), now.Add(-7 * 24 * time.Hour), "", nil},
		{"older than the past bound", strict, []byte("k"), now.Add(-8 * 24 * time.Hour), ReasonTimestampTooOld,
			[]string{"192h0m0s in the past", "message.timestamp.before.max.ms is 604800000"}},
		{"epoch against a one-day bound", Topic{Target: "t", TimestampBeforeMax: 24 * time.Hour}, nil, time.UnixMilli(0), ReasonTimestampTooOld,
			[]string{"message.timestamp.before.max.ms is 86400000"}},
		{"year 9999 against no bound", Topic{Target: "t"}, nil, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "", nil},
		{"year 9999 against a bound", strict, []byte("k"), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ReasonTimestampInFuture,
			[]string{"days in the future"}},
		{"no timestamp is never refused", strict, []byte("k"), time.Time{}, "", nil},
		{"LogAppendTime accepts any timestamp", Topic{Target: "t", LogAppendTime: true, TimestampAfterMax: time.Hour}, nil, now.Add(48 * time.Hour), "", nil},
		{"configured zero refuses any future ms", Topic{Target: "t", TimestampAfterMax: time.Nanosecond}, nil, now.Add(time.Millisecond), ReasonTimestampInFuture,
			[]string{"message.timestamp.after.max.ms is 0"}},
		{"configured zero accepts now", Topic{Target: "t", TimestampAfterMax: time.Nanosecond}, nil, now, "", nil},
		{"zero Topic refuses nothing", Topic{}, nil, now.Add(1000 * time.Hour), "", nil},
		{"keyless in a compacted topic", Topic{Target: "users", Compacted: true}, nil, now, ReasonKeylessInCompactedTopic,
			[]string{`target topic "users" refuses a record without a key`, "cleanup.policy", "producer.refused_policy"}},
		{"empty key in a compacted topic is a key", Topic{Target: "users", Compacted: true}, []byte{}, now, "", nil},
		{"keyless in a delete topic", Topic{Target: "logs"}, nil, now, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.topic.Refusal(tc.key, tc.ts, now)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Refusal = %v, want nil", err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Refusal = %v, want a *RefusedError", err)
			}
			if re.Reason != tc.wantReason || re.Topic != tc.topic.Target {
				t.Fatalf("reason %q topic %q, want %q %q", re.Reason, re.Topic, tc.wantReason, tc.topic.Target)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestReadAcceptanceInterpretsConfigsAsTheBrokerDoes(t *testing.T) {
	const long = "9223372036854775807"
	cases := []struct {
		name    string
		configs map[string]string
		want    acceptance
	}{
		{"kafka 4 defaults", map[string]string{"cleanup.policy": "delete", "message.timestamp.type": "CreateTime",
			"message.timestamp.after.max.ms": "3600000", "message.timestamp.before.max.ms": long, "max.message.bytes": "1048588"},
			acceptance{after: time.Hour, maxMessageBytes: 1048588}},
		{"compact,delete", map[string]string{"cleanup.policy": "compact,delete"}, acceptance{compacted: true}},
		{"compact", map[string]string{"cleanup.policy": "compact"}, acceptance{compacted: true}},
		{"log append time", map[string]string{"message.timestamp.type": "LogAppendTime"}, acceptance{logAppendTime: true}},
		{"kafka 3.9: difference fills unset bounds", map[string]string{"message.timestamp.difference.max.ms": "60000",
			"message.timestamp.after.max.ms": long, "message.timestamp.before.max.ms": "5000"},
			acceptance{after: time.Minute, before: 5 * time.Second}},
		{"kafka 3.9 defaults", map[string]string{"message.timestamp.difference.max.ms": long,
			"message.timestamp.after.max.ms": long, "message.timestamp.before.max.ms": long}, acceptance{}},
		{"configured zero", map[string]string{"message.timestamp.after.max.ms": "0"}, acceptance{after: time.Nanosecond}},
		{"garbage ignored", map[string]string{"message.timestamp.after.max.ms": "soon", "max.message.bytes": "-1"}, acceptance{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := readAcceptance(tc.configs); got != tc.want {
				t.Fatalf("readAcceptance = %+v, want %+v", got, tc.want)
			}
		})
	}
}
