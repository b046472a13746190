package record

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestPutDropsEveryReference(t *testing.T) {
	var p Pool
	m := &sarama.ConsumerMessage{
		Topic: "src", Partition: 3, Offset: 9, Timestamp: time.Now(), Key: []byte("k"), Value: []byte("v"),
		Headers: []*sarama.RecordHeader{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}},
	}
	r := p.From(m, "dst", nil, 0)
	r.Seq, r.Sent, r.Handed = 5, time.Now(), true
	p.Put(r)

	// r now waits in the pool; it must not keep the fetched batch (keys, values, header bytes)
	// alive, nor carry any state into its next use.
	if r.key.b != nil || r.value.b != nil || r.Msg.Key != nil || r.Msg.Value != nil || r.Msg.Headers != nil {
		t.Fatalf("put record still refers to its payload: %+v", r)
	}
	for i, h := range r.headers[:cap(r.headers)] {
		if h.Key != nil || h.Value != nil {
			t.Fatalf("header %d of the kept array still refers to its bytes: %+v", i, h)
		}
	}
	if r.Seq != 0 || !r.Sent.IsZero() || r.Handed || r.Msg.Metadata != nil || r.Msg.Topic != "" || r.Offset != 0 {
		t.Fatalf("put record keeps state: %+v", r)
	}
	if cap(r.headers) < 2 {
		t.Fatalf("the headers array was not kept for reuse (cap %d)", cap(r.headers))
	}
}

func TestRecycledRecordCarriesNothingOver(t *testing.T) {
	var p Pool
	full := &sarama.ConsumerMessage{
		Topic: "src", Partition: 3, Offset: 9, Timestamp: time.UnixMilli(1), Key: []byte("k"), Value: []byte("v"),
		Headers: []*sarama.RecordHeader{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}},
	}
	r := p.From(full, "dst", nil, 0)
	p.Put(r)

	cases := []struct {
		name    string
		m       *sarama.ConsumerMessage
		headers int
	}{
		{"nulls after a full record", &sarama.ConsumerMessage{Partition: 1, Offset: 10, Timestamp: time.UnixMilli(2)}, 0},
		{"empties after nulls", &sarama.ConsumerMessage{Partition: 2, Offset: 11, Key: []byte{}, Value: []byte{},
			Headers: []*sarama.RecordHeader{{Key: []byte("x"), Value: nil}}}, 1},
		{"more headers than the kept array holds", &sarama.ConsumerMessage{Partition: 0, Offset: 12, Value: []byte("w"),
			Headers: []*sarama.RecordHeader{{Key: []byte("1")}, {Key: []byte("2")}, {Key: []byte("3")}}}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// fill the record that was put back, so the test does not depend on sync.Pool
			// handing the same one out again.
			r.fill(tc.m, "dst2", nil, 7)
			want := From(tc.m, "dst2", nil, 7)
			if (r.Msg.Key == nil) != (tc.m.Key == nil) || (r.Msg.Value == nil) != (tc.m.Value == nil) {
				t.Fatalf("null-ness: key nil %v value nil %v, source key nil %v value nil %v",
					r.Msg.Key == nil, r.Msg.Value == nil, tc.m.Key == nil, tc.m.Value == nil)
			}
			if tc.m.Value != nil {
				if b, _ := r.Msg.Value.Encode(); b == nil || string(b) != string(tc.m.Value) {
					t.Fatalf("value = %q, want %q", b, tc.m.Value)
				}
			}
			if len(r.Msg.Headers) != tc.headers || (tc.headers == 0 && r.Msg.Headers != nil) {
				t.Fatalf("headers = %+v, want %d", r.Msg.Headers, tc.headers)
			}
			for i, h := range tc.m.Headers {
				if string(r.Msg.Headers[i].Key) != string(h.Key) || (r.Msg.Headers[i].Value == nil) != (h.Value == nil) {
					t.Fatalf("header %d = %+v, want %+v", i, r.Msg.Headers[i], *h)
				}
			}
			if r.Offset != tc.m.Offset || r.Msg.Partition != tc.m.Partition || !r.Msg.Timestamp.Equal(tc.m.Timestamp) ||
				r.Msg.Topic != "dst2" || r.Limit != 7 || r.Size != want.Size || Of(&r.Msg) != r {
				t.Fatalf("recycled record differs from a new one: %+v vs %+v", r, want)
			}
			p.Put(r)
		})
	}
}

func TestPoolSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop records on purpose")
	}
	var p Pool
	m := benchMessage()
	p.Put(p.From(m, "dst", nil, 0)) // the first one is allocated
	allocs := testing.AllocsPerRun(1000, func() {
		p.Put(p.From(m, "dst", nil, 0))
	})
	if allocs != 0 {
		t.Fatalf("From+Put allocates %.1f times per record, want 0", allocs)
	}
}

func benchMessage() *sarama.ConsumerMessage {
	return &sarama.ConsumerMessage{
		Topic: "src", Partition: 1, Offset: 1, Timestamp: time.Now(), Key: []byte("customer-42"),
		Value:   make([]byte, 1024),
		Headers: []*sarama.RecordHeader{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}},
	}
}
