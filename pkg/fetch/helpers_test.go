package fetch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// startCluster starts an in-process cluster of n brokers, closed with the test.
func startCluster(t testing.TB, n int, opts ...kfake.Opt) *embedded.Cluster {
	t.Helper()
	c, err := embedded.Start("src", n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// client is a sarama client of c, closed with the test.
func client(t testing.TB, c *embedded.Cluster, tune ...func(*sarama.Config)) sarama.Client {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.Metadata.Retry.Backoff = 50 * time.Millisecond
	for _, fn := range tune {
		fn(sc)
	}
	cl, err := sarama.NewClient(c.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// kclient is a franz-go client of c (the independent producer and checker), closed with the test.
func kclient(t testing.TB, c *embedded.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t testing.TB, cl *kgo.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produce writes rs synchronously (records keep their Partition: the manual partitioner).
func produce(t testing.TB, cl *kgo.Client, rs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func newFetcher(t testing.TB, cfg Config) *Fetcher {
	t.Helper()
	f, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// collector is a Sink that keeps every batch; full (if set) decides its answer.
type collector struct {
	mu      sync.Mutex
	batches []*Batch
	records []Record
	next    int64
	full    func(c *collector) bool
	group   int // its group for MaxHeldBytes (Grouped)
	stopped chan error
	changed chan struct{}
}

// addCollectors adds partitions 0 to n-1 of topic to f at offset 0, each with a collector of
// its own, and returns the collectors by partition.
func addCollectors(t testing.TB, f *Fetcher, topic string, n int) []*collector {
	t.Helper()
	sinks := make([]*collector, n)
	for p := range sinks {
		sinks[p] = newCollector()
		if err := f.Add(topic, int32(p), 0, sinks[p]); err != nil {
			t.Fatal(err)
		}
	}
	return sinks
}

func newCollector() *collector {
	return &collector{stopped: make(chan error, 1), changed: make(chan struct{}, 1)}
}

func (c *collector) Deliver(b *Batch) bool {
	c.mu.Lock()
	c.batches = append(c.batches, b)
	c.records = append(c.records, b.Records...)
	c.next = b.Next
	full := c.full != nil && c.full(c)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return full
}

func (c *collector) Stopped(err error) { c.stopped <- err }

func (c *collector) Group() int { return c.group }

func (c *collector) snapshot() ([]Record, int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Record(nil), c.records...), c.next, len(c.batches)
}

// waitRecords waits until c holds n records or fails the test after d.
func (c *collector) waitRecords(t testing.TB, n int, d time.Duration) []Record {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		rs, _, _ := c.snapshot()
		if len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records after %s, want %d", len(rs), d, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNext waits until c's position reached next.
func (c *collector) waitNext(t testing.TB, next int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, got, _ := c.snapshot()
		if got >= next {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %d after %s, want %d", got, d, next)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkSequence asserts that rs are exactly the values "p<part>-<i>" for i in [0, n), in order,
// at offsets first+i: nothing lost, repeated or reordered.
func checkSequence(t testing.TB, part int32, rs []Record, n int, first int64) {
	t.Helper()
	if len(rs) != n {
		t.Fatalf("partition %d: %d records, want %d", part, len(rs), n)
	}
	for i, r := range rs {
		if want := fmt.Sprintf("p%d-%d", part, i); string(r.Value) != want || r.Offset != first+int64(i) {
			t.Fatalf("partition %d record %d: offset %d value %q, want offset %d value %q", part, i, r.Offset, r.Value, first+int64(i), want)
		}
	}
}
