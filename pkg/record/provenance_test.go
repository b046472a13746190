package record

import (
	"bytes"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func hdrs(kv ...string) []*sarama.RecordHeader {
	var out []*sarama.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "<nil>" {
			v = []byte(kv[i+1])
		}
		out = append(out, &sarama.RecordHeader{Key: []byte(kv[i]), Value: v})
	}
	return out
}

func shown(hs []sarama.RecordHeader) []string {
	var out []string
	for _, h := range hs {
		v := string(h.Value)
		if h.Value == nil {
			v = "<nil>"
		}
		out = append(out, string(h.Key)+"="+v)
	}
	return out
}

// TestProvenanceStampsKeepsAndRecognises: a record without the header gets the source's alias
// after its own headers, which stay as they were (order, duplicates, case, nulls); one that has
// it keeps it as it is, wherever it stands; one whose header names the target is marked and
// left unchanged.
func TestProvenanceStampsKeepsAndRecognises(t *testing.T) {
	p := NewProvenance("kmirror.origin", "europe", "us")
	cases := []struct {
		name       string
		in         []*sarama.RecordHeader
		want       []string
		fromTarget bool
	}{
		{"no headers", nil, []string{"kmirror.origin=europe"}, false},
		{"own headers kept in front, byte for byte", hdrs("b", "2", "a", "1", "a", "1", "Trace", "<nil>"),
			[]string{"b=2", "a=1", "a=1", "Trace=<nil>", "kmirror.origin=europe"}, false},
		{"written first on a third cluster: kept", hdrs("x", "1", "kmirror.origin", "asia", "y", "2"),
			[]string{"x=1", "kmirror.origin=asia", "y=2"}, false},
		{"written first on the source, copied before: kept", hdrs("kmirror.origin", "europe"),
			[]string{"kmirror.origin=europe"}, false},
		{"came from the target", hdrs("x", "1", "kmirror.origin", "us"), []string{"x=1", "kmirror.origin=us"}, true},
		{"the first header decides", hdrs("kmirror.origin", "us", "kmirror.origin", "asia"),
			[]string{"kmirror.origin=us", "kmirror.origin=asia"}, true},
		{"another key's case is another key", hdrs("Kmirror.Origin", "us"), []string{"Kmirror.Origin=us", "kmirror.origin=europe"}, false},
		{"an alias is compared whole", hdrs("kmirror.origin", "usa"), []string{"kmirror.origin=usa"}, false},
		{"an empty origin is no alias", hdrs("kmirror.origin", ""), []string{"kmirror.origin="}, false},
	}
	var pool Pool
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &sarama.ConsumerMessage{Topic: "orders", Offset: 7, Timestamp: time.UnixMilli(1), Key: []byte("k"),
				Value: []byte("v"), Headers: tc.in}
			r := pool.From(m, "orders", nil, 0)
			before := r.Size
			p.Apply(r, m)
			got := shown(r.Msg.Headers)
			if len(got) != len(tc.want) {
				t.Fatalf("headers %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("headers %v, want %v", got, tc.want)
				}
			}
			if r.FromTarget != tc.fromTarget {
				t.Fatalf("FromTarget = %v, want %v", r.FromTarget, tc.fromTarget)
			}
			added := len(tc.want) - len(tc.in)
			if grew := r.Size - before; added == 0 && grew != 0 || added == 1 && grew != int64(len("kmirror.origin")+len("europe")+2) {
				t.Fatalf("size grew by %d for %d added header", grew, added)
			}
			// The consumed message is untouched: the copy's headers are the record's own.
			for i, h := range m.Headers {
				if !bytes.Equal(h.Key, tc.in[i].Key) {
					t.Fatalf("the consumed message's headers changed")
				}
			}
			pool.Put(r)
		})
	}
}

// TestProvenanceHeaderIsNotCarriedToTheNextRecord: a pooled record that was stamped, put back
// and filled again from a record with the header starts from that record's headers only.
func TestProvenanceHeaderIsNotCarriedToTheNextRecord(t *testing.T) {
	var pool Pool
	p := NewProvenance("kmirror.origin", "europe", "us")
	m1 := &sarama.ConsumerMessage{Value: []byte("1"), Headers: hdrs("a", "1", "b", "2")}
	r := pool.From(m1, "t", nil, 0)
	p.Apply(r, m1)
	pool.Put(r)
	if r.FromTarget || r.Msg.Headers != nil {
		t.Fatalf("put record keeps provenance state: %+v", r)
	}
	m2 := &sarama.ConsumerMessage{Value: []byte("2")}
	r.fill(m2, "t", nil, 0)
	if len(r.Msg.Headers) != 0 {
		t.Fatalf("a record without headers has %v", shown(r.Msg.Headers))
	}
	p.Apply(r, m2)
	if got := shown(r.Msg.Headers); len(got) != 1 || got[0] != "kmirror.origin=europe" {
		t.Fatalf("headers %v, want the stamp alone", got)
	}
}

func TestProvenanceSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop records on purpose")
	}
	var pool Pool
	p := NewProvenance("kmirror.origin", "europe", "us")
	m := benchMessage()
	r := pool.From(m, "dst", nil, 0)
	p.Apply(r, m)
	pool.Put(r) // the first one is allocated, with room for the stamp
	allocs := testing.AllocsPerRun(1000, func() {
		r := pool.From(m, "dst", nil, 0)
		p.Apply(r, m)
		pool.Put(r)
	})
	if allocs != 0 {
		t.Fatalf("From+Apply+Put allocates %.1f times per record, want 0", allocs)
	}
}
