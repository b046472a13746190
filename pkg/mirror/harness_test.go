package mirror

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/verify"
)

// pair is a source and a target embedded cluster for one test.
type pair struct {
	t      *testing.T
	europe *embedded.Cluster
	us     *embedded.Cluster
}

func newPair(t *testing.T) *pair {
	t.Helper()
	europe, err := embedded.Start("europe", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(europe.Close)
	us, err := embedded.Start("us", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(us.Close)
	return &pair{t: t, europe: europe, us: us}
}

func (p *pair) config(include ...string) *config.Config {
	cfg := config.Default()
	cfg.Source.Bootstrap = p.europe.Addrs()
	cfg.Target.Bootstrap = p.us.Addrs()
	cfg.Topics.Include = include
	cfg.Topics.RefreshInterval = time.Second
	cfg.Commit.Interval = 200 * time.Millisecond
	cfg.Ring.Workers = 4
	cfg.Shutdown.Timeout = 10 * time.Second
	cfg.Consumer.SessionTimeout = 6 * time.Second
	cfg.Consumer.HeartbeatInterval = 500 * time.Millisecond
	cfg.Consumer.RebalanceTimeout = 30 * time.Second
	cfg.Producer.DeliveryTimeout = 10 * time.Second
	cfg.Source.MetadataRefresh = time.Second
	cfg.Telemetry.Listen = ""
	// Tests count records, partitions, spans and transactions exactly; heartbeat_test.go turns
	// heartbeats on.
	cfg.Heartbeats.Enabled = false
	if err := cfg.Validate(); err != nil {
		p.t.Fatal(err)
	}
	return &cfg
}

func admin(t *testing.T, c *embedded.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func createTopic(t *testing.T, c *embedded.Cluster, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := admin(t, c).CreateTopic(context.Background(), partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s on %s: %v", topic, c.Name, err)
	}
}

func produce(t *testing.T, c *embedded.Cluster, records ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", c.Name, err)
	}
}

// numbered makes n records for topic spread over partitions, each with a key, value, header
// and timestamp that identify it.
func numbered(topic string, partitions int32, from, n int) []*kgo.Record {
	base := time.UnixMilli(1_700_000_000_000)
	out := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		s := strconv.Itoa(i)
		out = append(out, &kgo.Record{
			Topic: topic, Partition: int32(i) % partitions,
			Key: []byte("k" + s), Value: []byte("value-" + s),
			Headers:   []kgo.RecordHeader{{Key: "n", Value: []byte(s)}},
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
		})
	}
	return out
}

// running is a mirror running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	m      *Mirror
}

func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	return startWith(t, cfg, Options{Log: zaptest.NewLogger(t).Named(cfg.Consumer.GroupID)})
}

// startWith is start with the mirror's options.
func startWith(t *testing.T, cfg *config.Config, opts Options) *running {
	t.Helper()
	m, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), m: m}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the mirror gracefully and returns what Run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	if r.done == nil {
		return nil
	}
	r.cancel()
	select {
	case err := <-r.done:
		r.done = nil
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("mirror did not stop within 60s")
		return nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// endOffsets sums a topic's end offsets on a cluster (0 while the topic does not exist).
func endOffsets(t *testing.T, c *embedded.Cluster, topic string) int64 {
	n, _ := verify.EndOffsets(context.Background(), admin(t, c), topic)
	return n
}

func compare(t *testing.T, p *pair, topics map[string]string) verify.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := verify.Compare(ctx, p.europe.Addrs(), p.us.Addrs(), topics)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// committed returns the group's committed offset per partition of topic on the source.
func committed(t *testing.T, c *embedded.Cluster, group, topic string) map[int32]int64 {
	t.Helper()
	offs, err := admin(t, c).FetchOffsets(context.Background(), group)
	if err != nil {
		var ae *kadm.AuthError
		if errors.As(err, &ae) {
			t.Fatal(err)
		}
		return nil
	}
	out := make(map[int32]int64)
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}
