package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	open := openWrapped(target, base, func(id string, p delivery.Producer) delivery.Producer {
		if id != stalledID {
			return p
		}
		return &stallingProducer{Producer: p, release: release}
	})
	txns := beginSlots(t, slotCount, open, client, delivery.Limits{Records: 1, Bytes: 1 << 20, Age: time.Hour}, map[string][]int32{"src": {stalled, other}})

	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	feed(t, inbox, offsets.NewPartition("src", stalled, 0, 64), 1, 1<<20, nil)
	feed(t, inbox, offsets.NewPartition("src", other, 0, 64), 5, 1<<20, nil)
	obs := &ackedBy{acked: map[int32]int{}}
	stop := runTxnWorker(t, Config{Inbox: inbox, Txns: txns, Observer: obs})
	defer func() {
		releaseCommit() // a hanging commit would hold the worker's stop
		if err := stop(); err != nil {
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

// openWrapped opens the slots' transactional producers on target (kmirror's, with the default
// producer settings) and hands each to wrap, which may put a test's producer around it.
func openWrapped(target *embedded.Cluster, base func() *sarama.Config, wrap func(id string, p delivery.Producer) delivery.Producer) delivery.Open {
	return func(id string, bound int) (delivery.Producer, error) {
		p, err := OpenTxn(target.Addrs(), config.Default().Producer, time.Minute, zap.NewNop(),
			func(string, int) *sarama.Config { return base() })(id, bound)
		if err != nil {
			return nil, err
		}
		return wrap(id, p), nil
	}
}

// beginSlots opens the exactly-once slots (count of them, producers from open) on client's
// target with limits and begins a session holding claims; closed when t ends.
func beginSlots(t *testing.T, count int, open delivery.Open, client sarama.Client, limits delivery.Limits, claims map[string][]int32) *delivery.Slots {
	t.Helper()
	txns, err := delivery.New(delivery.Config{
		Slots: count, Prefix: "kmirror", Group: "kmirror-positions", Open: open, Bound: 1 << 20,
		Limits: limits, Target: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txns.Close)
	if err := txns.Begin(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	return txns
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

// handsCounter records the records of each hand-over to a slot's producer and of each
// transaction it commits.
type handsCounter struct {
	delivery.Producer
	mu      sync.Mutex
	hands   []int // records per ProduceBatch
	open    int   // records handed since the last commit
	commits []int // records per committed transaction
}

func (p *handsCounter) ProduceBatch(msgs []*sarama.ProducerMessage) error {
	p.mu.Lock()
	p.hands = append(p.hands, len(msgs))
	p.open += len(msgs)
	p.mu.Unlock()
	return p.Producer.ProduceBatch(msgs)
}

func (p *handsCounter) Commit(ctx context.Context, pos *produce.Positions) error {
	err := p.Producer.Commit(ctx, pos)
	p.mu.Lock()
	if err == nil {
		p.commits = append(p.commits, p.open)
	}
	p.open = 0
	p.mu.Unlock()
	return err
}

func (p *handsCounter) counts() (hands, commits []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.hands), slices.Clone(p.commits)
}

// TestExactlyOnceHandsABatchToItsProducerInOneCall: exactly once, a fetched batch's records go
// to their slot's producer in one hand-over, not one call (and one channel send) per record,
// and a transaction still ends where delivery.transaction.max_records puts it: 100 records of
// one partition in one inbox batch, transactions of 40, make hand-overs of 40, 40 and 20 and
// transactions of as many, every record acknowledged once, in order on the target.
func TestExactlyOnceHandsABatchToItsProducerInOneCall(t *testing.T) {
	target, base, client := txnTarget(t, 4)
	counter := &handsCounter{}
	open := openWrapped(target, base, func(_ string, p delivery.Producer) delivery.Producer {
		counter.Producer = p
		return counter
	})
	txns := beginSlots(t, 1, open, client, delivery.Limits{Records: 40, Bytes: 1 << 20, Age: 50 * time.Millisecond}, map[string][]int32{"src": {2}})
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	feedFrom(t, inbox, offsets.NewPartition("src", 2, 0, 128), 0, 100)
	obs := &ackedBy{acked: map[int32]int{}}
	stop := runTxnWorker(t, Config{Inbox: inbox, Txns: txns, Observer: obs})
	for deadline := time.Now().Add(10 * time.Second); obs.of(2) < 100; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 records acknowledged within 10 s", obs.of(2))
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hands, commits := counter.counts()
	if want := []int{40, 40, 20}; !slices.Equal(hands, want) || !slices.Equal(commits, want) {
		t.Fatalf("records per hand-over %v and per committed transaction %v; want %v for both", hands, commits, want)
	}
	if n := obs.of(2); n != 100 {
		t.Fatalf("%d acknowledgements for 100 records", n)
	}
	got := readCommitted(t, target, "dst", 2)
	for i, v := range got {
		if want := fmt.Sprintf("src/2@%d", i); v != want {
			t.Fatalf("target record %d is %q, want %q", i, v, want)
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d records on the target, want 100", len(got))
	}
}

// readCommitted reads what read_committed consumers see of topic's partition on target: the
// values of its first 100 records at most, waiting up to 10 s for them.
func readCommitted(t *testing.T, target *embedded.Cluster, topic string, partition int32) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(target.Addrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < 100 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s/%d back: %v", topic, partition, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// runTxnWorker starts an exactly-once worker of cfg and returns stop, which cancels it and
// returns what its Run returned. The worker must not open an idempotent producer.
func runTxnWorker(t *testing.T, cfg Config) (stop func() error) {
	t.Helper()
	cfg.NewProducer = func(int, produce.Done) (Producer, error) {
		t.Error("exactly-once opened an idempotent producer")
		return nil, errors.New("exactly-once opened an idempotent producer")
	}
	_, stop = startWorker(t, cfg)
	return stop
}

// gatedCommits holds the first Commit until release is closed, and says when it began.
type gatedCommits struct {
	delivery.Producer
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *gatedCommits) Commit(ctx context.Context, pos *produce.Positions) error {
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return p.Producer.Commit(ctx, pos)
}

// ackTimes notes when each record, by source offset, was acknowledged.
type ackTimes struct {
	NopObserver
	mu sync.Mutex
	at map[int64]time.Time
}

func (o *ackTimes) Acked(_ int, r *record.Record, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.at[r.Offset] = now
}

func (o *ackTimes) of(off int64) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at, ok := o.at[off]
	return at, ok
}

// TestARecordThatWaitedForACommitWaitsNoWholeAgeMore: a record that reaches its slot while the
// slot's commit is under way goes into the next transaction, which is due by age counting from
// when the record arrived, not from when the commit let it open: with max_age 1 s and a commit
// that takes 600 ms more, the record is committed about 1 s after it arrived, not 1.6 s.
func TestARecordThatWaitedForACommitWaitsNoWholeAgeMore(t *testing.T) {
	target, base, client := txnTarget(t, 1)
	gate := &gatedCommits{entered: make(chan struct{}), release: make(chan struct{})}
	open := openWrapped(target, base, func(_ string, p delivery.Producer) delivery.Producer {
		gate.Producer = p
		return gate
	})
	txns := beginSlots(t, 1, open, client, delivery.Limits{Records: 1000, Bytes: 1 << 20, Age: time.Second}, map[string][]int32{"src": {0}})
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	obs := &ackTimes{at: map[int64]time.Time{}}
	stop := runTxnWorker(t, Config{Inbox: inbox, Txns: txns, Observer: obs})
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()

	feedFrom(t, inbox, track, 0, 1)
	select {
	case <-gate.entered: // the first transaction's commit, at its age
	case <-time.After(10 * time.Second):
		t.Fatal("the first transaction was not committed within 10 s")
	}
	arrived := time.Now()
	feedFrom(t, inbox, track, 1, 1)
	time.Sleep(600 * time.Millisecond)
	close(gate.release)
	released = true
	var acked time.Time
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if at, ok := obs.of(1); ok {
			acked = at
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second record was not acknowledged within 10 s")
		}
	}
	if d := acked.Sub(arrived); d > 1350*time.Millisecond {
		t.Fatalf("the record that waited for a commit was committed %s after it arrived, want about max_age (1s)", d)
	}
}
