package mirror

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// freezeMap makes the target take produce requests to the offset-map topic and never answer
// them, as the frozen leader of the map's partition does (the data partitions' leaders still
// answer), until the returned function (or the test's cleanup) lets them through.
func freezeMap(t *testing.T, p *pair, mapTopic string) (unfreeze func()) {
	release := make(chan struct{})
	var once sync.Once
	unfreeze = func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze)
	fake := p.us.Fake()
	fake.KeepControl()
	fake.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == mapTopic {
				fake.SleepControl(func() { <-release })
				break
			}
		}
		return nil, nil, false
	})
	return unfreeze
}

// TestMirrorGoesOnAndStopsInTimeWhileTheMapPartitionIsFrozen: with default settings, while the
// leader of the offset map's partition takes writes and never answers, records go on being
// mirrored and their source offsets committed (each commit waits for the map at most a commit
// interval), and a stop ends cleanly well within shutdown.timeout.
func TestMirrorGoesOnAndStopsInTimeWhileTheMapPartitionIsFrozen(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	produce(t, p.europe, numbered("orders", 2, 0, 100)...)
	cfg := p.config("orders")
	def := config.Default()
	cfg.Commit.Interval, cfg.Shutdown.Timeout = def.Commit.Interval, def.Shutdown.Timeout // 5s, 30s
	m := start(t, cfg)
	committedSum := func() int64 {
		var n int64
		for _, o := range committed(t, p.europe, cfg.Consumer.GroupID, "orders") {
			n += o
		}
		return n
	}
	waitFor(t, "the first records mirrored and committed", 30*time.Second, func() bool {
		return endOffsets(t, p.us, "orders") == 100 && committedSum() == 100
	})

	freezeMap(t, p, cfg.OffsetMapTopic())
	produce(t, p.europe, numbered("orders", 2, 100, 100)...)
	began := time.Now()
	waitFor(t, "records written while the map partition is frozen mirrored", 30*time.Second, func() bool {
		return endOffsets(t, p.us, "orders") == 200
	})
	// A commit every commit.interval, each after at most commit.interval waiting for the map.
	bound := 3 * cfg.Commit.Interval
	waitFor(t, "their source offsets committed", 60*time.Second, func() bool { return committedSum() == 200 })
	took := time.Since(began)
	t.Logf("mirrored and committed %s after the map partition froze (commit.interval %s)", took.Round(100*time.Millisecond), cfg.Commit.Interval)
	if took > bound {
		t.Errorf("committing took %s with the map partition frozen, want at most %s", took.Round(100*time.Millisecond), bound)
	}

	stopping := time.Now()
	err := m.stop(t)
	stopTook := time.Since(stopping)
	t.Logf("stopped in %s (shutdown.timeout %s): %v", stopTook.Round(100*time.Millisecond), cfg.Shutdown.Timeout, err)
	if err != nil {
		t.Errorf("stop with only the map partition frozen: %v, want a clean stop", err)
	}
	// The first write that outlives its deadline (commit.interval) marks the map partition as
	// not answering: the claims' last writes, the final commit's and the flusher's last one give
	// up at once until it returns.
	if limit := 2 * cfg.Commit.Interval; stopTook > limit || stopTook > cfg.Shutdown.Timeout {
		t.Errorf("stopping took %s, want at most %s (shutdown.timeout %s)", stopTook.Round(100*time.Millisecond), limit, cfg.Shutdown.Timeout)
	}
	if got := committedSum(); got != 200 {
		t.Errorf("committed %d after the stop, want 200", got)
	}
}

// TestPruneDeletesTheChunksOfRecordsTheSourceNoLongerHolds: three runs of the mirror leave three
// chunks of orders/0 in the map; once the source's log start passes the first two (retention,
// here DeleteRecords), the prune loop writes their tombstones, keeps the third, and positions
// the source still holds still translate to their records' copies.
func TestPruneDeletesTheChunksOfRecordsTheSourceNoLongerHolds(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	cfg := p.config("orders")
	opts := func() Options {
		return Options{Log: zaptest.NewLogger(t), OffsetMapPruneEvery: 500 * time.Millisecond}
	}
	for run := range 3 {
		produce(t, p.europe, numbered("orders", 1, 100*run, 100)...)
		m := startWith(t, cfg, opts())
		want := int64(100 * (run + 1))
		waitFor(t, "a run's records mirrored and in the map", 30*time.Second, func() bool {
			return endOffsets(t, p.us, "orders") == want && mapIndex(t, p.us, cfg.OffsetMapTopic()).Translate("orders", 0, want-1, "").Status == offsetmap.Exact
		})
		if err := m.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	before := mapIndex(t, p.us, cfg.OffsetMapTopic()).Chunks("orders", 0)
	if len(before) != 3 {
		t.Fatalf("after three runs the map holds %d chunks of orders/0, want 3: %v", len(before), before)
	}

	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 250})
	if _, err := admin(t, p.europe).DeleteRecords(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	m := startWith(t, cfg, opts())
	var after []*offsetmap.Chunk
	waitFor(t, "the chunks below the source's log start deleted", 30*time.Second, func() bool {
		after = mapIndex(t, p.us, cfg.OffsetMapTopic()).Chunks("orders", 0)
		return len(after) == 1
	})
	if c := after[0]; c.From != before[2].From || c.Target != before[2].Target || c.End() != 300 {
		t.Fatalf("kept %+v, want the third run's chunk %+v", c, before[2])
	}
	x := mapIndex(t, p.us, cfg.OffsetMapTopic())
	dst := partitionsOf(t, p.us, "orders")[0]
	for off := int64(250); off < 300; off++ {
		tr := x.Translate("orders", 0, off, "")
		if tr.Status != offsetmap.Exact || tr.Target != dst[off].Offset {
			t.Fatalf("orders/0 at %d after the prune: %+v, want exact at %d", off, tr, dst[off].Offset)
		}
	}
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestExactlyOnceMapIsAChunkPerClaimNotPerTransaction: under exactly-once every transaction's
// commit marker takes a target offset; records written in bursts, each mirrored in transactions
// of their own, still make one chunk for the claim, and every position translates to its
// record's copy.
func TestExactlyOnceMapIsAChunkPerClaimNotPerTransaction(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	cfg := withExactlyOnce(t, p.config("orders"))
	cfg.OffsetMap.FlushInterval = 200 * time.Millisecond
	m := start(t, cfg)
	const bursts, each = 20, 5
	for i := range bursts {
		produce(t, p.europe, numbered("orders", 1, i*each, each)...)
		last := int64((i+1)*each - 1)
		waitFor(t, "a burst mirrored and in the map", 30*time.Second, func() bool {
			return mapIndex(t, p.us, cfg.OffsetMapTopic()).Translate("orders", 0, last, "").Status == offsetmap.Exact
		})
	}
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	dst := committedRecords(t, p.us, "orders")
	if n := len(dst); n != bursts*each || dst[n-1].Offset < int64(bursts*each+bursts-2) {
		t.Fatalf("target holds %d records up to offset %d: want %d in at least %d transactions", n, dst[n-1].Offset, bursts*each, bursts)
	}
	x := mapIndex(t, p.us, cfg.OffsetMapTopic())
	cs := x.Chunks("orders", 0)
	t.Logf("%d records in transactions up to target offset %d: %d chunk(s)", len(dst), dst[len(dst)-1].Offset, len(cs))
	if len(cs) != 1 {
		t.Errorf("the map holds %d chunks of orders/0 after one claim, want 1", len(cs))
	}
	for i, r := range dst {
		if tr := x.Translate("orders", 0, int64(i), ""); tr.Status != offsetmap.Exact || tr.Target != r.Offset {
			t.Fatalf("orders/0 at %d: %+v, want exact at %d", i, tr, r.Offset)
		}
	}
}
