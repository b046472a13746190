package mirror

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// partitionsOf returns every record of topic on c, by partition, in offset order.
func partitionsOf(t *testing.T, c *embedded.Cluster, topic string) map[int32][]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := admin(t, c).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	out := map[int32][]*kgo.Record{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := func() bool {
		for p, end := range want {
			if n := len(out[p]); end > 0 && (n == 0 || out[p][n-1].Offset < end-1) {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s on %s: %v", topic, c.Name, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) })
	}
	return out
}

// mapIndex reads the offset-map topic on the target into an index.
func mapIndex(t *testing.T, c *embedded.Cluster, topic string) *offsetmap.Index {
	t.Helper()
	x := offsetmap.NewIndex()
	for _, recs := range partitionsOf(t, c, topic) {
		for _, r := range recs {
			if err := x.Apply(r.Key, r.Value); err != nil {
				t.Fatalf("map record at %d: %v", r.Offset, err)
			}
		}
	}
	return x
}

// TestOffsetMapTranslatesEveryPositionExactly mirrors into a target whose partitions already
// hold other records (so target offsets differ from source offsets), across a restart, and
// checks that every source position translates to the target offset of that very record.
func TestOffsetMapTranslatesEveryPositionExactly(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 3, nil)
	createTopic(t, p.us, "orders", 3, nil)
	var foreign []*kgo.Record
	for i := range 7 {
		foreign = append(foreign, &kgo.Record{Topic: "orders", Partition: int32(i % 2), Value: []byte("written on us")})
	}
	produce(t, p.us, foreign...)
	produce(t, p.europe, numbered("orders", 3, 0, 1500)...)
	cfg := p.config("orders")
	cfg.OffsetMap.FlushInterval = 200 * time.Millisecond

	first := start(t, cfg)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 1507 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	produce(t, p.europe, numbered("orders", 3, 1500, 900)...)
	second := start(t, cfg)
	waitFor(t, "second batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 2407 })
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}

	src, dst := partitionsOf(t, p.europe, "orders"), partitionsOf(t, p.us, "orders")
	x := mapIndex(t, p.us, cfg.OffsetMapTopic())
	for part, recs := range src {
		byOffset := map[int64]*kgo.Record{}
		for _, r := range dst[part] {
			byOffset[r.Offset] = r
		}
		for _, r := range recs {
			tr := x.Translate("orders", part, r.Offset, "")
			if tr.Status != offsetmap.Exact {
				t.Fatalf("orders/%d offset %d: %+v, want exact", part, r.Offset, tr)
			}
			got := byOffset[tr.Target]
			if got == nil || !bytes.Equal(got.Value, r.Value) {
				t.Fatalf("orders/%d offset %d translates to target offset %d, which does not hold its copy", part, r.Offset, tr.Target)
			}
		}
		end := recs[len(recs)-1].Offset + 1
		tr := x.Translate("orders", part, end, "")
		if tr.Status != offsetmap.NotYet || tr.Mirrored != end || tr.Behind != 0 {
			t.Fatalf("orders/%d at its end %d: %+v, want not yet mirrored, 0 behind", part, end, tr)
		}
		if tr, err := offsetmap.Resolve(context.Background(), tr, emptyProber{}); err != nil || tr.Target != dst[part][len(dst[part])-1].Offset+1 {
			t.Fatalf("orders/%d at its end, nothing more on the source: %+v (%v), want the target's end", part, tr, err)
		}
	}
}

type emptyProber struct{}

func (emptyProber) NoRecords(context.Context, string, int32, int64, int64) (bool, error) { return true, nil }
