package mirror

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// TestGroupOnCycleAndHeartbeatTopicsFailsOverAtOnce: a group on europe reads orders, us.orders
// (a copy from us: a cycle under the prefix policy) and kmirror.heartbeats.us (heartbeats that
// originated on us). The daemon mirrors only orders, so the group sync, the translation and the
// failover must count only orders: the others are not "not yet mirrored" for ever.
func TestGroupOnCycleAndHeartbeatTopicsFailsOverAtOnce(t *testing.T) {
	p := newPair(t)
	for _, topic := range []string{"orders", "us.orders", "kmirror.heartbeats.us"} {
		createTopic(t, p.europe, topic, 1, nil)
		produce(t, p.europe, numbered(topic, 1, 0, 200)...)
	}
	commitOffsets(t, p.europe, "app", "orders", map[int32]int64{0: 150})
	commitOffsets(t, p.europe, "app", "us.orders", map[int32]int64{0: 50})
	commitOffsets(t, p.europe, "app", "kmirror.heartbeats.us", map[int32]int64{0: 20})

	cfg := p.config(".*")
	cfg.Topics.ReplicationPolicy = config.PolicyPrefix
	cfg.Heartbeats.Enabled, cfg.Heartbeats.Interval = true, 200*time.Millisecond
	cfg.OffsetMap.FlushInterval = 200 * time.Millisecond
	cfg.Groups.Include = []string{"app"}
	cfg.Groups.SyncInterval = 500 * time.Millisecond
	r := start(t, cfg)
	waitFor(t, "group app synced to the target", 30*time.Second, func() bool {
		return committed(t, p.us, "app", "europe.orders")[0] == 150
	})
	rep, err := r.m.Planner()(context.Background(), "app", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Partitions) != 1 || rep.Partitions[0].Topic != "orders" || rep.Partitions[0].Status != offsetmap.Exact {
		t.Errorf("translation served while running: %+v, want orders/0 only, exact", rep.Partitions)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"europe.us.orders", "us.orders", "europe.kmirror.heartbeats.us"} {
		if n := endOffsets(t, p.us, topic); n != 0 {
			t.Fatalf("the daemon mirrored %s (%d records): the test's premise is wrong", topic, n)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := OpenGroupTools(ctx, cfg, zaptest.NewLogger(t), false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tools.Close()
	const wait = 5 * time.Second
	began := time.Now()
	reps, err := tools.Syncer.Failover(ctx, []string{"app"}, "", wait, 200*time.Millisecond, nil)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if took > wait/2 {
		t.Errorf("failover took %s: it waited for topics the daemon never mirrors", took)
	}
	if len(reps) != 1 || len(reps[0].Partitions) != 1 || reps[0].Untranslatable() != 0 {
		t.Fatalf("failover reported %+v, want orders/0 alone, translated", reps)
	}
	if a := reps[0].Partitions[0].Action; a != "unchanged" && a != "committed" {
		t.Fatalf("failover did %q on orders/0", a)
	}
}
