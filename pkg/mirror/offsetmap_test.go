package mirror

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"go.uber.org/zap/zaptest"

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

func (emptyProber) NoRecords(context.Context, string, int32, int64, int64) (bool, error) {
	return true, nil
}

// commitOffsets commits group's offsets of topic on c, as an application would.
func commitOffsets(t *testing.T, c *embedded.Cluster, group, topic string, at map[int32]int64) {
	t.Helper()
	offs := kadm.Offsets{}
	for p, o := range at {
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	resp, err := admin(t, c).CommitOffsets(context.Background(), group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit %s offsets on %s: %v", group, c.Name, err)
	}
}

// TestGroupOffsetsAreSyncedAndFailedOverExactly runs the daemon's group sync, then the failover
// tools, on a target whose offsets differ from the source's.
func TestGroupOffsetsAreSyncedAndFailedOverExactly(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	createTopic(t, p.us, "orders", 2, nil)
	produce(t, p.us, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("a")}, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("b")},
		&kgo.Record{Topic: "orders", Partition: 0, Value: []byte("c")})
	produce(t, p.europe, numbered("orders", 2, 0, 1000)...)
	commitOffsets(t, p.europe, "app", "orders", map[int32]int64{0: 100, 1: 250})
	commitOffsets(t, p.europe, "app-excluded", "orders", map[int32]int64{0: 10})
	cfg := p.config("orders")
	cfg.OffsetMap.FlushInterval = 200 * time.Millisecond
	cfg.Groups.Include = []string{"app.*"}
	cfg.Groups.Exclude = []string{".*-excluded"}
	cfg.Groups.SyncInterval = time.Second

	r := start(t, cfg)
	want := map[int32]int64{0: 103, 1: 250} // partition 0 of the target had 3 records first
	waitFor(t, "group app synced to the target", 30*time.Second, func() bool {
		got := committed(t, p.us, "app", "orders")
		return got[0] == want[0] && got[1] == want[1]
	})
	if got := committed(t, p.us, "app-excluded", "orders"); len(got) != 0 {
		t.Fatalf("an excluded group was synced: %v", got)
	}
	if got := committed(t, p.us, "kmirror", "orders"); len(got) != 0 {
		t.Fatalf("kmirror's own group was synced: %v", got)
	}
	rep, err := r.m.Planner()(context.Background(), "app", "")
	if err != nil || len(rep.Partitions) != 2 || rep.Partitions[0].Target != 103 || rep.Partitions[0].Status != offsetmap.Exact {
		t.Fatalf("translation served while running: %+v, %v", rep, err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// The failover: the group read further on the source; the tools translate and commit it.
	commitOffsets(t, p.europe, "app", "orders", map[int32]int64{0: 500, 1: 500})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := OpenGroupTools(ctx, cfg, zaptest.NewLogger(t), false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tools.Close()
	reps, err := tools.Syncer.Failover(ctx, []string{"app"}, "", 5*time.Second, 200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Committed() != 2 {
		t.Fatalf("failover: %+v", reps)
	}
	if got := committed(t, p.us, "app", "orders"); got[0] != 503 || got[1] != 500 {
		t.Fatalf("after the failover the target group is at %v, want partition 0 at 503 and 1 at 500", got)
	}
	// A position past everything mirrored is not committed, and says how far behind.
	commitOffsets(t, p.europe, "late", "orders", map[int32]int64{0: 400})
	produce(t, p.europe, numbered("orders", 2, 1000, 10)...)
	commitOffsets(t, p.europe, "late", "orders", map[int32]int64{1: 505})
	rep, err = tools.Syncer.Plan(ctx, "late", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range rep.Partitions {
		if pr.Partition == 1 && (pr.Status != offsetmap.NotYet || pr.Behind != 5) {
			t.Fatalf("a position 5 records past the mirror: %+v, want not yet mirrored, 5 behind", pr)
		}
	}
}
