package record

import (
	"bytes"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// FuzzRecordFrom converts arbitrary records and checks that key, value and headers come out
// byte-identical, null stays null, empty stays empty, the timestamp is kept (a missing one, before
// the epoch, becomes the zero time), and the size accounts for every byte.
func FuzzRecordFrom(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), []byte("h"), []byte("hv"), false, false, false, int64(0))
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, true, true, true, int64(-1))
	f.Add([]byte{0xff, 0}, []byte(nil), []byte("traceparent"), []byte("00-x"), false, true, false, int64(1<<40))
	f.Fuzz(func(t *testing.T, key, value, hk, hv []byte, nullKey, nullValue, nullHeader bool, ms int64) {
		if nullKey {
			key = nil
		}
		if nullValue {
			value = nil
		}
		if nullHeader {
			hv = nil
		}
		m := &sarama.ConsumerMessage{Topic: "t", Partition: 3, Offset: 9, Key: key, Value: value,
			Timestamp: time.UnixMilli(ms), Headers: []*sarama.RecordHeader{{Key: hk, Value: hv}}}
		r := From(m, "u", nil, 0)
		check := func(what string, enc sarama.Encoder, want []byte) {
			if want == nil {
				if enc != nil {
					t.Fatalf("%s: null became non-null", what)
				}
				return
			}
			got, err := enc.Encode()
			if err != nil || !bytes.Equal(got, want) || got == nil {
				t.Fatalf("%s: %q, want %q", what, got, want)
			}
		}
		check("key", r.Msg.Key, key)
		check("value", r.Msg.Value, value)
		h := r.Msg.Headers[0]
		if !bytes.Equal(h.Key, hk) || !bytes.Equal(h.Value, hv) || (h.Value == nil) != (hv == nil) {
			t.Fatalf("header changed: %q=%q, want %q=%q", h.Key, h.Value, hk, hv)
		}
		want := m.Timestamp
		if ms < 0 { // no timestamp (-1): sent as the zero time, which sarama stamps with its clock
			want = time.Time{}
		}
		if !r.Msg.Timestamp.Equal(want) || r.Msg.Partition != 3 || r.Offset != 9 {
			t.Fatal("position or timestamp changed")
		}
		if want := int64(overhead + len(key) + len(value) + len(hk) + len(hv) + 2); r.Size != want {
			t.Fatalf("size %d, want %d", r.Size, want)
		}
	})
}
