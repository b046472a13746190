package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/produce"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/slots"
)

// stallingProducer holds every Commit until release is closed: a commit the target is slow
// to answer.
type stallingProducer struct {
	delivery.Producer
	release <-chan struct{}
}

func (p *stallingProducer) Commit(ctx context.Context, pos *produce.Positions) error {
	<-p.release
	return p.Producer.Commit(ctx, pos)
}

// ackedBy counts acknowledgements per source partition.
type ackedBy struct {
	NopObserver
	mu    sync.Mutex
	acked map[int32]int
}

func (o *ackedBy) Acked(_ int, r *record.Record, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.acked[r.Track.Partition()]++
}

func (o *ackedBy) of(p int32) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.acked[p]
}

// TestOneSlotsCommitDoesNotStallTheWorkersOtherSlots: one worker carries two partitions of two
// slots. The first slot's commit hangs (its producer's Commit waits); the other slot's records,
// behind it in the inbox, are committed and acknowledged meanwhile, and the first slot's once its
// commit returns.
func TestOneSlotsCommitDoesNotStallTheWorkersOtherSlots(t *testing.T) {
	target, base, client := txnTarget(t, 16)

	const slotCount = 4
	stalled, other := int32(-1), int32(-1)
	for p := int32(0); p < 16 && other < 0; p++ {
		switch {
		case stalled < 0:
			stalled = p
		case slots.Of("src", p, slotCount) != slots.Of("src", stalled, slotCount):
			other = p
		}
	}
	stalledID := slots.TransactionalID("kmirror", slots.Of("src", stalled, slotCount))
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseCommit := func() { releaseOnce.Do(func() { close(release) }) }
	open := func(id string, bound int) (delivery.Producer, error) {
		p, err := OpenTxn(target.Addrs(), config.Default().Producer, time.Minute, zap.NewNop(),
			func(string, int) *sarama.Config { return base() })(id, bound)
		if err != nil || id != stalledID {
			return p, err
		}
		return &stallingProducer{Producer: p, release: release}, nil
	}
	txns, err := delivery.New(delivery.Config{
		Slots: slotCount, Prefix: "kmirror", Group: "kmirror-positions", Open: open, Bound: 1 << 20,
		Limits: delivery.Limits{Records: 1, Bytes: 1 << 20, Age: time.Hour}, Target: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer txns.Close()
	if err := txns.Begin(context.Background(), map[string][]int32{"src": {stalled, other}}); err != nil {
		t.Fatal(err)
	}

	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	feed(t, inbox, offsets.NewPartition("src", stalled, 0, 64), 1, 1<<20, nil)
	feed(t, inbox, offsets.NewPartition("src", other, 0, 64), 5, 1<<20, nil)
	obs := &ackedBy{acked: map[int32]int{}}
	w, err := New(Config{
		Inbox: inbox, Txns: txns, Observer: obs,
		NewProducer: func(int, produce.Done) (Producer, error) {
			t.Fatal("exactly-once opened an idempotent producer")
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		releaseCommit() // a hanging commit would hold the worker's stop
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s (acknowledged: partition %d %d, partition %d %d)",
					what, stalled, obs.of(stalled), other, obs.of(other))
			}
		}
	}
	waitUntil("the other slot's 5 records acknowledged while the first slot's commit hangs",
		func() bool { return obs.of(other) == 5 })
	if n := obs.of(stalled); n != 0 {
		t.Fatalf("%d records of the hanging slot acknowledged before its commit returned", n)
	}
	releaseCommit()
	waitUntil("the first slot's record acknowledged once its commit returns", func() bool { return obs.of(stalled) == 1 })
}

// txnTarget starts a one-broker target with partitions of topic "dst" and returns it, the sarama
// configuration the tests build producers from, and a client of it; all closed when t ends.
func txnTarget(t *testing.T, partitions int32) (*embedded.Cluster, func() *sarama.Config, sarama.Client) {
	t.Helper()
	target, err := embedded.Start("us", 1, kfake.SeedTopics(partitions, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	base := func() *sarama.Config {
		c := sarama.NewConfig()
		c.Version = sarama.V3_6_0_0
		return c
	}
	client, err := sarama.NewClient(target.Addrs(), base())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return target, base, client
}
