package groups_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/groups"
)

// othersCounter is a recorder that also counts the groups found committed by another client.
type othersCounter struct {
	*recorder
	mu     sync.Mutex
	others map[string]int
}

func (o *othersCounter) CommittedByOthers(group string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.others[group]++
}

// TestTargetGroupCommittedByAnotherClientIsLeftAlone: a reader on the target commits app-a's
// offsets without joining the group (assign mode, as Flink and Spark do), so the group has no
// member and looks idle. Once its offsets differ from what the sync last wrote there, the sync
// leaves the group alone: it does not move the reader's offsets forward round after round, it
// says so once (a log line, the observer) and the report says why.
func TestTargetGroupCommittedByAnotherClientIsLeftAlone(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10})
	core, logs := observer.New(zap.InfoLevel)
	rounds := make(chan struct{}, 1)
	obs := &othersCounter{recorder: newObserver(), others: make(map[string]int)}
	cfg := p.config(plus1000(nil))
	cfg.Log = zap.New(core)
	cfg.Observer = roundCounter{obs, rounds}
	s := p.syncer(cfg)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 10*time.Millisecond) }()
	waitRounds := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-rounds:
			case <-time.After(10 * time.Second):
				t.Fatal("no round ended in 10 s")
			}
		}
	}
	waitRounds(2)
	if got := committed(t, p.us, "app-a")["europe.orders/0"]; got != 1010 {
		t.Fatalf("before the reader: target app-a at %d, want 1010 (synced)", got)
	}

	// The reader commits its own position every 20 ms for 2 s, and counts the times it finds
	// its committed offset moved by someone else.
	moved := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		commit(t, p.us, "app-a", offsets{"europe.orders/0": 500})
		time.Sleep(20 * time.Millisecond)
		if committed(t, p.us, "app-a")["europe.orders/0"] != 500 {
			moved++
		}
	}
	waitRounds(5)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if moved > 0 {
		t.Errorf("the group sync moved the reader's committed offset %d times in 2 s, want 0", moved)
	}
	if got := committed(t, p.us, "app-a")["europe.orders/0"]; got != 500 {
		t.Errorf("target app-a at %d after the reader stopped, want 500 (the reader's)", got)
	}
	if got := obs.synced["app-a"]; got != 1 {
		t.Errorf("the sync committed app-a %d times, want 1 (before the reader came)", got)
	}
	if got := obs.others["app-a"]; got != 1 {
		t.Errorf("observer told %d times that app-a is committed by another client, want 1", got)
	}
	if got := logs.FilterMessage("another client commits the target group's offsets: the group offset sync leaves it alone").Len(); got != 1 {
		t.Errorf("logged %d times that another client commits app-a, want 1; logs: %v", got, logs.All())
	}

	// The report (what failover prints) says why nothing was committed.
	r, err := s.Plan(context.Background(), "app-a", "")
	if err == nil {
		r, err = s.Apply(context.Background(), r)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !r.CommittedByOthers || r.Partitions[0].Action != groups.ActionCommittedByOthers {
		t.Errorf("report: committed by others %v, action %q; want true, %q", r.CommittedByOthers, r.Partitions[0].Action, groups.ActionCommittedByOthers)
	}

	// --force moves it all the same.
	cfg.Force = true
	forced := p.syncer(cfg)
	if r, err = forced.Plan(context.Background(), "app-a", ""); err == nil {
		r, err = forced.Apply(context.Background(), r)
	}
	if err != nil || r.Committed() != 1 || committed(t, p.us, "app-a")["europe.orders/0"] != 1010 {
		t.Errorf("forced: %+v, %v; want app-a committed at 1010", r, err)
	}
}
