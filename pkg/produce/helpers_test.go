package produce

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeTarget is a kfake cluster of brokers with topic "t".
func fakeTarget(t *testing.T, brokers int, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(partitions, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func testConfig(c *kfake.Cluster) Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	sc.Net.ReadTimeout = 5 * time.Second
	sc.Net.DialTimeout = 2 * time.Second
	sc.Metadata.Retry.Backoff = 50 * time.Millisecond
	return Config{
		Addrs: c.ListenAddrs(), Net: sc, Linger: 0, BatchBytes: 1 << 20, BatchRecords: 1000,
		MaxBatchBytes: 1 << 20, DeliveryTimeout: 30 * time.Second, RetryBackoff: 20 * time.Millisecond,
	}
}

// outcomes collects what a pipeline settled.
type outcomes struct {
	mu      sync.Mutex
	acked   map[string]int64 // value → target offset
	order   map[int32][]string
	failed  map[string]error
	settled int
	changed chan struct{}
}

func newOutcomes() *outcomes {
	return &outcomes{acked: map[string]int64{}, order: map[int32][]string{}, failed: map[string]error{}, changed: make(chan struct{}, 1)}
}

func (o *outcomes) done(msgs []*sarama.ProducerMessage, err error) {
	o.mu.Lock()
	for _, m := range msgs {
		sv, _ := m.Value.(sarama.StringEncoder) // a nil value counts as ""
		v := string(sv)
		if err != nil {
			o.failed[v] = err
		} else {
			o.acked[v] = m.Offset
			o.order[m.Partition] = append(o.order[m.Partition], v)
		}
		o.settled++
	}
	o.mu.Unlock()
	poke(o.changed)
}

// wait waits until n messages were settled.
func (o *outcomes) wait(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		o.mu.Lock()
		got := o.settled
		o.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-o.changed:
		case <-deadline:
			t.Fatalf("%d of %d messages settled after %s", got, n, within)
		}
	}
}

func msg(partition int32, v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: "t", Partition: partition, Value: sarama.StringEncoder(v)}
}

func val(partition int32, i int) string { return fmt.Sprintf("%d-%06d", partition, i) }

// readBack reads partition of topic t with an independent client (franz-go): every value and its
// offset, in log order.
func readBack(t *testing.T, c *kfake.Cluster, partition int32) (values []string, offsets []int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"t": {partition: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := c.PartitionInfo("t", partition).HighWatermark
	for int64(len(values)) < end {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read back t/%d: %v (%d of %d read)", partition, err, len(values), end)
		}
		fs.EachRecord(func(r *kgo.Record) {
			values = append(values, string(r.Value))
			offsets = append(offsets, r.Offset)
		})
	}
	return values, offsets
}

// checkLog asserts that partition holds want exactly once each, in order, at the offsets the
// pipeline reported.
func checkLog(t *testing.T, c *kfake.Cluster, o *outcomes, partition int32, want []string) {
	t.Helper()
	got, offsets := readBack(t, c, partition)
	if len(got) != len(want) {
		t.Errorf("t/%d holds %d records, want %d (lost or duplicated)", partition, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("t/%d offset %d holds %q, want %q: out of order or duplicated", partition, offsets[i], got[i], want[i])
		}
		o.mu.Lock()
		at, ok := o.acked[got[i]]
		o.mu.Unlock()
		if !ok || at != offsets[i] {
			t.Fatalf("%q is at offset %d; the pipeline reported %d (acked %v)", got[i], offsets[i], at, ok)
		}
	}
}

// firstSequence reads the first sequence of the record batch raw (its header).
func firstSequence(raw []byte) int32 {
	if len(raw) < 57 {
		return -1
	}
	return int32(binary.BigEndian.Uint32(raw[53:57]))
}

// produceSeqs lists the (partition, first sequence) of every batch in a produce request.
func produceSeqs(req kmsg.Request) map[int32]int32 {
	out := map[int32]int32{}
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return out
	}
	for _, tp := range pr.Topics {
		for _, p := range tp.Partitions {
			out[p.Partition] = firstSequence(p.Records)
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
