package record

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestFromKeepsNullsEmptiesHeadersAndTimestamp(t *testing.T) {
	ts := time.UnixMilli(1_650_000_000_001)
	cases := []struct {
		name       string
		key, value []byte
	}{
		{"null key and value", nil, nil},
		{"empty key and value", []byte{}, []byte{}},
		{"tombstone", []byte("k"), nil},
		{"plain", []byte("k"), []byte("v")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &sarama.ConsumerMessage{
				Topic: "src", Partition: 7, Offset: 42, Timestamp: ts, Key: tc.key, Value: tc.value,
				Headers: []*sarama.RecordHeader{{Key: []byte("a"), Value: nil}, {Key: []byte("b"), Value: []byte{}}},
			}
			r := From(m, "dst", nil, 100)
			if r.Msg.Topic != "dst" || r.Msg.Partition != 7 || r.Offset != 42 || !r.Msg.Timestamp.Equal(ts) {
				t.Fatalf("routing fields changed: %+v", r.Msg)
			}
			if (r.Msg.Key == nil) != (tc.key == nil) || (r.Msg.Value == nil) != (tc.value == nil) {
				t.Fatalf("null-ness changed: key %v value %v", r.Msg.Key == nil, r.Msg.Value == nil)
			}
			if tc.key != nil {
				b, _ := r.Msg.Key.Encode()
				if string(b) != string(tc.key) || b == nil {
					t.Fatalf("key = %q", b)
				}
			}
			if len(r.Msg.Headers) != 2 || r.Msg.Headers[0].Value != nil || r.Msg.Headers[1].Value == nil {
				t.Fatalf("headers changed: %+v", r.Msg.Headers)
			}
			if Of(&r.Msg) != r {
				t.Fatal("Of does not find the record back from its message")
			}
			if want := int64(overhead + len(tc.key) + len(tc.value) + 2*3); r.Size != want {
				t.Fatalf("size = %d, want %d", r.Size, want)
			}
		})
	}
}

// TestRecordWithoutTimestampGoesOutAsTheZeroTime: sarama hands a record without a timestamp
// (-1) over as the zero time when it leads its fetched batch and as one millisecond before the
// epoch when it does not; sarama's producer cannot encode the second when it leads an outgoing
// batch ("invalid timestamp"), so both must leave as the zero time, which it stamps with its own
// clock.
func TestRecordWithoutTimestampGoesOutAsTheZeroTime(t *testing.T) {
	for name, ts := range map[string]time.Time{
		"leading its batch":       {},
		"after a timestamp":       time.UnixMilli(1_700_000_000_000).Add(-(1_700_000_000_000 + 1) * time.Millisecond),
		"one ms before the epoch": time.UnixMilli(-1),
	} {
		r := From(&sarama.ConsumerMessage{Topic: "src", Timestamp: ts}, "dst", nil, 0)
		if !r.Msg.Timestamp.IsZero() {
			t.Errorf("%s: timestamp %v, want the zero time", name, r.Msg.Timestamp)
		}
	}
	if r := From(&sarama.ConsumerMessage{Topic: "src", Timestamp: time.UnixMilli(0)}, "dst", nil, 0); !r.Msg.Timestamp.Equal(time.UnixMilli(0)) {
		t.Errorf("the epoch itself became %v", r.Msg.Timestamp)
	}
}

// BenchmarkConvert is the data path's conversion of a consumed record: from a Pool, put back
// after its acknowledgement (impl=pool, what kmirror does), against a new Record each time
// (impl=alloc, the reference). benchmarks/micro.sh puts the two side by side.
func BenchmarkConvert(b *testing.B) {
	m := benchMessage()
	b.Run("impl=pool", func(b *testing.B) {
		var p Pool
		b.ReportAllocs()
		for b.Loop() {
			p.Put(p.From(m, "dst", nil, 0))
		}
	})
	b.Run("impl=alloc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = From(m, "dst", nil, 0)
		}
	})
}
