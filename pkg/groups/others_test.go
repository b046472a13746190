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

// TestFailoverReportsATargetGroupAnotherClientCommits: the failover command, a process that has
// never written the group, watches a target group whose offsets carry another client's commit
// for one poll before it commits: a reader committing meanwhile is reported, not overwritten.
func TestFailoverReportsATargetGroupAnotherClientCommits(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10})
	commit(t, p.us, "app-a", offsets{"europe.orders/0": 500})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the reader on the target, committing as it reads
		defer close(done)
		for at := int64(501); ; at++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			commit(t, p.us, "app-a", offsets{"europe.orders/0": at})
		}
	}()
	s := p.syncer(p.config(plus1000(nil)))
	reps, err := s.Failover(context.Background(), []string{"app-a"}, "", 2*time.Second, 200*time.Millisecond, nil)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || !reps[0].CommittedByOthers || reps[0].Partitions[0].Action != groups.ActionCommittedByOthers {
		t.Fatalf("failover reported %+v, want app-a committed by another client", reps)
	}
	if got := committed(t, p.us, "app-a")["europe.orders/0"]; got == 1010 {
		t.Errorf("failover moved the reader's offset to %d", got)
	}

	// A target group whose old offsets nobody moves (a failback: the applications' last commits
	// there) is failed over.
	commit(t, p.us, "app-b", offsets{"europe.orders/0": 3})
	commit(t, p.europe, "app-b", offsets{"orders/0": 20})
	if reps, err = s.Failover(context.Background(), []string{"app-b"}, "", 2*time.Second, 200*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Committed() != 1 || committed(t, p.us, "app-b")["europe.orders/0"] != 1020 {
		t.Fatalf("failover of a group with stale offsets on the target: %+v, want committed at 1020", reps)
	}
}
