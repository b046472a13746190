package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

type countingObserver struct {
	NopObserver
	mu                     sync.Mutex
	acked, skipped, failed int
}

func (c *countingObserver) Acked(int, *record.Record, time.Time) {
	c.mu.Lock()
	c.acked++
	c.mu.Unlock()
}

func (c *countingObserver) Skipped(int, *record.Record, error) {
	c.mu.Lock()
	c.skipped++
	c.mu.Unlock()
}

func (c *countingObserver) Failed(int, *record.Record, error) {
	c.mu.Lock()
	c.failed++
	c.mu.Unlock()
}

// feed registers n records of one partition, pushes them into inbox and returns them; sizes[i]
// overrides the size of record i.
func feed(t *testing.T, inbox *ring.Queue[*record.Record], track *offsets.Partition, n int, limit int, sizes map[int]int) []*record.Record {
	t.Helper()
	var fed []*record.Record
	for i := 0; i < n; i++ {
		value := make([]byte, 10)
		if s, ok := sizes[i]; ok {
			value = make([]byte, s)
		}
		m := &sarama.ConsumerMessage{Topic: "src", Partition: 0, Offset: int64(i), Value: value}
		r := record.From(m, "dst", track, limit)
		seq, err := track.Register(m.Offset)
		if err != nil {
			t.Fatal(err)
		}
		r.Seq = seq
		if !inbox.TryPush(r, r.Size) {
			t.Fatal("inbox full")
		}
		fed = append(fed, r)
	}
	return fed
}

func runWorker(t *testing.T, cfg Config, until func() bool) error {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !until() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	return <-done
}

func TestWorkerAcksOnlyWhatTheTargetAcknowledged(t *testing.T) {
	cfg := mocks.NewTestConfig()
	cfg.Producer.Return.Successes = true
	p := mocks.NewAsyncProducer(t, cfg)
	for i := 0; i < 5; i++ {
		p.ExpectInputAndSucceed()
	}
	p.ExpectInputAndFail(sarama.ErrNotEnoughReplicas) // offset 5: retries exhausted
	for i := 0; i < 4; i++ {
		p.ExpectInputAndSucceed()
	}
	inbox := ring.NewQueue[*record.Record](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	feed(t, inbox, track, 10, 0, nil)

	obs := &countingObserver{}
	var fatal error
	var mu sync.Mutex
	err := runWorker(t, Config{
		Inbox: inbox, Producer: p, OversizePolicy: config.OversizeFail, Observer: obs,
		Fatal: func(err error) { mu.Lock(); fatal = err; mu.Unlock() },
	}, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.acked+obs.failed == 10 })
	if err != nil {
		t.Fatal(err)
	}
	if got := track.Committed(); got != 5 {
		t.Fatalf("committed = %d, want 5: nothing at or after the failed offset 5", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fatal == nil || !errors.Is(fatal, sarama.ErrNotEnoughReplicas) {
		t.Fatalf("fatal = %v, want the producer error", fatal)
	}
	if f := track.Failed(); f == nil || f.Offset != 5 {
		t.Fatalf("tracker failure = %+v, want offset 5", f)
	}
}

func TestOversizedRecordIsSkippedOrFailsBeforeItIsSent(t *testing.T) {
	for _, policy := range []string{config.OversizeSkip, config.OversizeFail} {
		t.Run(policy, func(t *testing.T) {
			cfg := mocks.NewTestConfig()
			cfg.Producer.Return.Successes = true
			p := mocks.NewAsyncProducer(t, cfg)
			for i := 0; i < 3; i++ { // the oversized record never reaches the producer
				p.ExpectInputAndSucceed()
			}
			inbox := ring.NewQueue[*record.Record](64, 1<<20)
			track := offsets.NewPartition("src", 0, 0, 64)
			feed(t, inbox, track, 4, 1000, map[int]int{1: 5000})
			obs := &countingObserver{}
			var fatals int
			var mu sync.Mutex
			if err := runWorker(t, Config{
				Inbox: inbox, Producer: p, OversizePolicy: policy, Observer: obs,
				Fatal: func(error) { mu.Lock(); fatals++; mu.Unlock() },
			}, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.acked+obs.skipped+obs.failed == 4 }); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch policy {
			case config.OversizeSkip:
				if obs.skipped != 1 || fatals != 0 || track.Committed() != 4 {
					t.Fatalf("skip: skipped %d fatals %d committed %d; want 1, 0, 4", obs.skipped, fatals, track.Committed())
				}
			case config.OversizeFail:
				if obs.failed != 1 || fatals != 1 || track.Committed() != 1 {
					t.Fatalf("fail: failed %d fatals %d committed %d; want 1, 1, 1", obs.failed, fatals, track.Committed())
				}
			}
		})
	}
}

func TestWorkerRecyclesOnlyRecordsWhoseFateIsFinal(t *testing.T) {
	cfg := mocks.NewTestConfig()
	cfg.Producer.Return.Successes = true
	p := mocks.NewAsyncProducer(t, cfg)
	p.ExpectInputAndSucceed()                         // offset 0
	p.ExpectInputAndSucceed()                         // offset 2 (1 is oversized: skipped before sending)
	p.ExpectInputAndSucceed()                         // offset 3
	p.ExpectInputAndFail(sarama.ErrNotEnoughReplicas) // offset 4: retries exhausted
	inbox := ring.NewQueue[*record.Record](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	fed := feed(t, inbox, track, 5, 1000, map[int]int{1: 5000})
	obs := &countingObserver{}
	if err := runWorker(t, Config{
		Inbox: inbox, Records: &record.Pool{}, Producer: p, OversizePolicy: config.OversizeSkip, Observer: obs,
	}, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.acked+obs.skipped+obs.failed == 5 }); err != nil {
		t.Fatal(err)
	}
	// A record put back is reset: it no longer names its message or its tracker.
	for i, r := range fed[:4] {
		if r.Track != nil || r.Msg.Metadata != nil {
			t.Errorf("offset %d (acknowledged or skipped) was not put back", i)
		}
	}
	if r := fed[4]; r.Track != track || record.Of(&r.Msg) != r || r.Offset != 4 {
		t.Errorf("offset 4 failed, yet it was put back and reset: %+v", r)
	}
}
