package mirror

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/config"
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
