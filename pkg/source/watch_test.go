package source

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// TestIdlePartitionsNextRecordIsNotOverdue: a partition idle for longer than the stall and
// delivery deadlines, whose next record is in flight at a watcher round, is neither reported
// stalled nor failed; the same record left unacknowledged is, once each deadline has passed
// from when it was fetched.
func TestIdlePartitionsNextRecordIsNotOverdue(t *testing.T) {
	var fatal error
	h, err := New(Config{
		Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](16, 1<<20)}, Topics: noTopics{},
		NewCommitter: func(func(string) string) offsets.Committer { return nil },
		StallAfter:   time.Minute, DeliveryTimeout: 2 * time.Minute,
		Fatal: func(err error) { fatal = err },
	})
	if err != nil {
		t.Fatal(err)
	}
	track := offsets.NewPartition("orders", 3, 0, 16)
	seq, _ := track.Register(0)
	track.Ack(seq)
	end := int64(1)
	st := &claimState{track: track, start: 0, marked: 0, hwm: func() int64 { return end }, caughtUp: time.Now()}
	st.logEnd.Store(-1)
	st.quietFrom.Store(-1)
	h.parts[topicPartition{"orders", 3}] = st

	ctx := context.Background()
	t0 := time.Now()
	h.watch(ctx, t0)
	h.watch(ctx, t0.Add(time.Hour)) // idle for an hour: nothing to mirror

	if _, err := track.Register(1); err != nil { // the next record, in flight
		t.Fatal(err)
	}
	end = 2
	fetched := t0.Add(time.Hour + time.Second)
	h.watch(ctx, fetched)
	if err := h.StalledErr(); err != nil || fatal != nil {
		t.Fatalf("a record fetched a moment ago: stalled %v, failed %v; want neither", err, fatal)
	}

	h.watch(ctx, fetched.Add(61*time.Second))
	if h.StalledErr() == nil {
		t.Errorf("the record unacknowledged for 61s (stall_after 1m): not reported stalled")
	}
	if fatal != nil {
		t.Fatalf("failed at 61s, before the 2m delivery deadline: %v", fatal)
	}
	h.watch(ctx, fetched.Add(121*time.Second))
	if fatal == nil {
		t.Errorf("the record unacknowledged for 121s (delivery_timeout 2m): the partition did not fail")
	}
}

// countingObserver counts the backlog reports.
type countingObserver struct {
	NopObserver
	reports int
	last    Backlog
}

func (o *countingObserver) Backlog(_ string, _ int32, b Backlog) { o.reports, o.last = o.reports+1, b }

// TestUnchangedBacklogIsReportedOnce: a caught-up partition's backlog is reported at the first
// watcher round and not again until it changes.
func TestUnchangedBacklogIsReportedOnce(t *testing.T) {
	obs := &countingObserver{}
	h, err := New(Config{
		Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](16, 1<<20)}, Topics: noTopics{},
		NewCommitter: func(func(string) string) offsets.Committer { return nil },
		Observer:     obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	track := offsets.NewPartition("orders", 0, 5, 16)
	end := int64(5)
	st := &claimState{track: track, start: 5, marked: 5, hwm: func() int64 { return end }, caughtUp: time.Now()}
	st.logEnd.Store(-1)
	st.quietFrom.Store(-1)
	h.parts[topicPartition{"orders", 0}] = st

	t0 := time.Now()
	for i := range 10 {
		h.watch(context.Background(), t0.Add(time.Duration(i)*time.Second))
	}
	if obs.reports != 1 {
		t.Fatalf("10 rounds of a caught-up partition: %d reports, want 1", obs.reports)
	}
	end = 8 // three records arrive on the source
	h.watch(context.Background(), t0.Add(10*time.Second))
	if obs.reports != 2 || obs.last.Records != 3 {
		t.Fatalf("after 3 records: %d reports, last %+v; want 2, 3 records", obs.reports, obs.last)
	}
}

// blockingCommitter is a commit that does not return until released: the offset map's write
// before each commit while the leader of the map topic's partition is frozen.
type blockingCommitter struct {
	offsets.Committer
	entered chan struct{}
	release chan struct{}
}

func (c *blockingCommitter) Mark(string, int32, int64) {}
func (c *blockingCommitter) Commit(context.Context) error {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-c.release
	return nil
}

// TestWatcherTicksWhileACommitHangs: while a commit waits on the target, the watcher's rounds
// go on (backlog reported, stalls detected), and the session's background stops once the commit
// returns.
func TestWatcherTicksWhileACommitHangs(t *testing.T) {
	obs := &lockedObserver{}
	bc := &blockingCommitter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, err := New(Config{
		Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](16, 1<<20)}, Topics: noTopics{},
		NewCommitter:   func(func(string) string) offsets.Committer { return bc },
		CommitInterval: 10 * time.Millisecond, StallAfter: time.Second, Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	track := offsets.NewPartition("orders", 0, 0, 16)
	if _, err := track.Register(0); err != nil { // in flight, never acknowledged
		t.Fatal(err)
	}
	start := time.Now()
	st := &claimState{track: track, start: 0, marked: 0, caughtUp: start,
		hwm: func() int64 { return 1 + int64(time.Since(start)/time.Second) }} // a record a second
	st.logEnd.Store(-1)
	st.quietFrom.Store(-1)
	h.parts[topicPartition{"orders", 0}] = st
	h.committer, h.unsent = bc, true // something to commit

	ctx, cancel := context.WithCancel(context.Background())
	done := h.background(ctx)
	<-bc.entered // the commit hangs from now on
	hung := time.Now()
	time.Sleep(3500 * time.Millisecond)
	reports := obs.count()
	stalled := h.StalledErr()
	cancel()
	close(bc.release)
	<-done
	if reports < 3 {
		t.Errorf("%d backlog reports in the %s a commit hung, want one a second", reports, time.Since(hung).Round(time.Second))
	}
	if stalled == nil {
		t.Errorf("a record unacknowledged for 3s (stall_after 1s) while a commit hung: not reported stalled")
	}
}

// lockedObserver counts backlog reports from the watcher's goroutine.
type lockedObserver struct {
	NopObserver
	mu      sync.Mutex
	reports int
}

func (o *lockedObserver) Backlog(string, int32, Backlog) {
	o.mu.Lock()
	o.reports++
	o.mu.Unlock()
}

func (o *lockedObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reports
}
