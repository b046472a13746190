package mirror

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/heartbeat"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

// committedRecords reads a one-partition topic read_committed until a second passes with
// nothing new (a transaction's marker at the log end is never handed out).
func committedRecords(t *testing.T, c *embedded.Cluster, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := len(out)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if len(out) == n && ctx.Err() != nil {
			return out
		}
	}
}

// heartbeatsOn reads the heartbeat topic on c, checking that every record is a heartbeat of
// the flow key.
func heartbeatsOn(t *testing.T, c *embedded.Cluster, topic, key string) []heartbeat.Heartbeat {
	t.Helper()
	var out []heartbeat.Heartbeat
	for _, r := range committedRecords(t, c, topic) {
		h, err := heartbeat.Parse(r.Key, r.Value)
		if err != nil {
			t.Fatalf("%s on %s, offset %d: %v", topic, c.Name, r.Offset, err)
		}
		if string(r.Key) != key || !r.Timestamp.Equal(h.Time()) {
			t.Fatalf("%s on %s, offset %d: key %q timestamp %v value %s; want key %q stamped with its emit time",
				topic, c.Name, r.Offset, r.Key, r.Timestamp, r.Value, key)
		}
		out = append(out, h)
	}
	return out
}

// Every business topic is idle (and topics.include does not name the heartbeat topic): the
// heartbeats still reach the target about once an interval, and the latency gauge is set, in
// both delivery modes (exactly-once: in transactions, read back read_committed).
func TestIdleFlowStillDeliversHeartbeats(t *testing.T) {
	for _, mode := range []string{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) { testIdleFlowDeliversHeartbeats(t, mode) })
	}
}

func testIdleFlowDeliversHeartbeats(t *testing.T, mode string) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 3, nil)
	cfg := p.config("orders")
	cfg.Heartbeats.Enabled, cfg.Heartbeats.Interval = true, 200*time.Millisecond
	if mode == config.ExactlyOnce {
		cfg = withExactlyOnce(t, cfg)
	}
	reg := prometheus.NewRegistry()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Options{Log: zaptest.NewLogger(t), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	started := time.Now()
	offsets := int64(10)
	if mode == config.ExactlyOnce {
		offsets = 20 // each transaction's marker takes an offset too
	}
	waitFor(t, "10 heartbeats on us", 30*time.Second, func() bool { return endOffsets(t, p.us, "kmirror.heartbeats.europe") >= offsets })
	waitFor(t, "the heartbeat gauges", 10*time.Second, func() bool { return testutil.ToFloat64(metrics.HeartbeatLast) > 0 })
	elapsed := time.Since(started)
	latency, last := testutil.ToFloat64(metrics.HeartbeatLatency), testutil.ToFloat64(metrics.HeartbeatLast)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	hs := heartbeatsOn(t, p.us, "kmirror.heartbeats.europe", "europe->us")
	if len(hs) < 10 {
		t.Fatalf("%d heartbeats on us", len(hs))
	}
	// A tick the emitter took late is followed by one on time (a ticker keeps its schedule), so
	// one gap may be short; none is long, and on average they are an interval apart.
	for i := 1; i < len(hs); i++ {
		if gap := hs[i].Time().Sub(hs[i-1].Time()); gap <= 0 || gap > 2*time.Second {
			t.Errorf("heartbeats %d and %d are %s apart, want about 200ms", i-1, i, gap)
		}
	}
	if mean := hs[len(hs)-1].Time().Sub(hs[0].Time()) / time.Duration(len(hs)-1); mean < 150*time.Millisecond || mean > time.Second {
		t.Errorf("heartbeats are %s apart on average, want about 200ms", mean)
	}
	if latency <= 0 || latency > elapsed.Seconds() {
		t.Errorf("kmirror_heartbeat_latency_seconds = %v, want in (0, %v]", latency, elapsed.Seconds())
	}
	if age := time.Since(time.UnixMilli(int64(last * 1000))); age < 0 || age > elapsed {
		t.Errorf("kmirror_heartbeat_last_timestamp_seconds is %s old, want within the test's %s", age, elapsed)
	}
	emitted := testutil.ToFloat64(metrics.HeartbeatsEmitted)
	if emitted < float64(len(hs)) || testutil.ToFloat64(metrics.HeartbeatErrors) != 0 {
		t.Errorf("%v heartbeats emitted, %v failed; %d reached us", emitted, testutil.ToFloat64(metrics.HeartbeatErrors), len(hs))
	}
	if n := endOffsets(t, p.us, "orders"); n != 0 {
		t.Errorf("the idle topic has %d records on us", n)
	}
	t.Logf("%d heartbeats on us in %s; last latency %.1f ms", len(hs), elapsed.Round(time.Millisecond), latency*1000)
}

// Two flows, europe→us and us→europe, each its own mirror, each with topics.include matching
// every heartbeat topic: each cluster ends with its own heartbeats and a copy of the other's,
// and nothing went back where it came from (no doubled origin, no heartbeat twice).
func TestActiveActiveHeartbeatsDoNotLoop(t *testing.T) {
	for _, policy := range []string{config.PolicyIdentity, config.PolicyPrefix} {
		t.Run(policy, func(t *testing.T) {
			p := newPair(t)
			flow := func(from, to *embedded.Cluster) *config.Config {
				cfg := p.config(".*heartbeats.*")
				cfg.Source.Alias, cfg.Source.Bootstrap = from.Name, from.Addrs()
				cfg.Target.Alias, cfg.Target.Bootstrap = to.Name, to.Addrs()
				cfg.Consumer.GroupID = "kmirror-" + from.Name
				cfg.Topics.ReplicationPolicy = policy
				cfg.Heartbeats.Enabled, cfg.Heartbeats.Interval = true, 200*time.Millisecond
				// An identity pair without the provenance header is refused at run when a flow
				// sees the other's offset map (user records would loop); this pair runs one on
				// purpose, to show that heartbeats alone never loop, so the maps are off.
				cfg.OffsetMap.Enabled = policy != config.PolicyIdentity
				if err := cfg.Validate(); err != nil {
					t.Fatal(err)
				}
				return cfg
			}
			toUS, toEU := start(t, flow(p.europe, p.us)), start(t, flow(p.us, p.europe))
			copyName := func(origin string) string { // origin's heartbeat topic on the other cluster
				if policy == config.PolicyPrefix {
					return origin + ".kmirror.heartbeats." + origin
				}
				return "kmirror.heartbeats." + origin
			}
			waitFor(t, "10 heartbeats copied each way", 30*time.Second, func() bool {
				return endOffsets(t, p.us, copyName("europe")) >= 10 && endOffsets(t, p.europe, copyName("us")) >= 10
			})
			time.Sleep(time.Second) // time for a loop to show, were there one
			for _, r := range []*running{toUS, toEU} {
				if err := r.stop(t); err != nil {
					t.Fatal(err)
				}
			}

			for _, c := range []struct {
				home, away *embedded.Cluster
				key        string
			}{{p.europe, p.us, "europe->us"}, {p.us, p.europe, "us->europe"}} {
				own := heartbeatsOn(t, c.home, "kmirror.heartbeats."+c.home.Name, c.key)
				copies := heartbeatsOn(t, c.away, copyName(c.home.Name), c.key)
				seen := map[int64]bool{}
				for _, h := range own {
					if seen[h.EmittedMs] {
						t.Errorf("%s holds heartbeat %s twice: it came back", c.home.Name, h.Emitted)
					}
					seen[h.EmittedMs] = true
				}
				// The copies are the heartbeats written at home, in order, up to where the mirror
				// stopped (a last few may not have been fetched).
				if len(copies) > len(own) || len(copies) < len(own)-5 {
					t.Errorf("%d of %s's %d heartbeats were copied to %s", len(copies), c.home.Name, len(own), c.away.Name)
				}
				for i := range min(len(copies), len(own)) {
					if copies[i] != own[i] {
						t.Fatalf("copy %d on %s is %+v, the original %+v", i, c.away.Name, copies[i], own[i])
					}
				}
				t.Logf("%s: %d own heartbeats, %d copied to %s", c.home.Name, len(own), len(copies), c.away.Name)
			}
			for _, c := range []*embedded.Cluster{p.europe, p.us} {
				names, err := admin(t, c).ListTopics(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range names.Names() {
					if strings.Contains(name, "heartbeats") && name != "kmirror.heartbeats."+c.Name &&
						name != copyName(map[string]string{"europe": "us", "us": "europe"}[c.Name]) {
						t.Errorf("%s holds heartbeat topic %q: heartbeats went around", c.Name, name)
					}
				}
			}
		})
	}
}

// The heartbeat topic alone is mirrored, but it is not a topic of topics.include: /readyz still
// says that no source topic matches.
func TestHeartbeatsAloneDoNotMakeTheMirrorReady(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	cfg := p.config("payments\\..*")
	cfg.Heartbeats.Enabled, cfg.Heartbeats.Interval = true, 200*time.Millisecond
	m := start(t, cfg)
	waitFor(t, "heartbeats on us", 30*time.Second, func() bool { return endOffsets(t, p.us, "kmirror.heartbeats.europe") >= 3 })
	if err := m.m.Ready(); err == nil || !strings.Contains(err.Error(), "no source topic matches") {
		t.Errorf("Ready() = %v, want it to say that no source topic matches topics.include", err)
	}
}
