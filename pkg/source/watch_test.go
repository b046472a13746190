package source

import (
	"context"
	"fmt"
	"maps"
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
// from when it was fetched. Both with its position not yet committed (the watcher visits it
// every round) and committed (it left the watched set, and the fetch of the record wakes it).
func TestIdlePartitionsNextRecordIsNotOverdue(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) { testIdleNextRecordNotOverdue(t, committed) })
	}
}

func testIdleNextRecordNotOverdue(t *testing.T, committed bool) {
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
	st := newClaimState(topicPartition{"orders", 3}, track, 0)
	st.hwm = func() int64 { return end }
	h.add(st)
	if committed {
		st.marked = 1
	}

	ctx := context.Background()
	t0 := time.Now()
	h.watch(ctx, t0)
	h.watch(ctx, t0.Add(time.Hour)) // idle for an hour: nothing to mirror
	if _, watched := h.watched[st.tp]; watched == committed {
		t.Fatalf("idle partition, position committed %v: in the watched set %v", committed, watched)
	}

	end = 2 // the next record is fetched (the fetch wakes its partition) and in flight
	h.wake(st)
	if _, err := track.Register(1); err != nil {
		t.Fatal(err)
	}
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
	st := newClaimState(topicPartition{"orders", 0}, track, 5)
	st.hwm = func() int64 { return end }
	h.add(st)

	t0 := time.Now()
	for i := range 10 {
		h.watch(context.Background(), t0.Add(time.Duration(i)*time.Second))
	}
	if obs.reports != 1 {
		t.Fatalf("10 rounds of a caught-up partition: %d reports, want 1", obs.reports)
	}
	end = 8 // three records arrive on the source: the listing or a fetch that sees them wakes it
	h.wake(st)
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
	st := newClaimState(topicPartition{"orders", 0}, track, 0)
	st.caughtUp = start
	st.hwm = func() int64 { return 1 + int64(time.Since(start)/time.Second) } // a record a second
	h.add(st)
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

// TestIdlePartitionsAreLeftOutOfRounds: once a round finds a partition idle with its position
// marked for the commit, the rounds and the commits no longer visit it; a wake brings it back,
// its backlog is reported and its new position committed.
func TestIdlePartitionsAreLeftOutOfRounds(t *testing.T) {
	obs := &countingObserver{}
	h, mc := newMarkingHandler(t, obs, nil)
	const n = 100
	var sts []*claimState
	for p := range int32(n) {
		st := newClaimState(topicPartition{"orders", p}, offsets.NewPartition("orders", p, 5, 16), 5)
		st.logEnd.Store(5)
		h.add(st)
		sts = append(sts, st)
	}
	ctx := context.Background()
	t0 := time.Now()
	h.watch(ctx, t0)
	if len(h.watched) != 0 || obs.reports != n {
		t.Fatalf("after a round of %d idle partitions: %d watched, %d reports; want 0 watched, %d reports", n, len(h.watched), obs.reports, n)
	}

	st := sts[7] // a record is fetched, mirrored and acknowledged
	st.highWatermark.Store(6)
	h.wake(st)
	seq, err := st.track.Register(5)
	if err != nil {
		t.Fatal(err)
	}
	h.watch(ctx, t0.Add(time.Second))
	if obs.last.Records != 1 || len(h.watched) != 1 {
		t.Fatalf("the woken partition with a record in flight: backlog %+v, %d watched; want 1 record, 1 watched", obs.last, len(h.watched))
	}
	st.track.Ack(seq)
	if err := h.commit(ctx); err != nil {
		t.Fatal(err)
	}
	if len(mc.marks) != 1 || mc.marks[st.tp] != 6 {
		t.Fatalf("commit after the acknowledgement marked %v, want orders/7 at 6 only", mc.marks)
	}
	h.watch(ctx, t0.Add(2*time.Second))
	if obs.last.Records != 0 || len(h.watched) != 0 {
		t.Fatalf("after the acknowledgement and its commit: backlog %+v, %d watched; want 0 records, none watched", obs.last, len(h.watched))
	}
}

// TestAWakeRacingTheRoundIsNotLost: a partition's records are fetched, registered and
// acknowledged while the rounds and commits run and let it go whenever they find it idle. After
// the last acknowledgement, one round and one commit see its final position, whatever the
// interleaving (a wake lost between a round's look and its letting go would leave it unseen).
func TestAWakeRacingTheRoundIsNotLost(t *testing.T) {
	for range 20 {
		h, mc := newMarkingHandler(t, &lockedObserver{}, nil)
		st := newClaimState(topicPartition{"orders", 0}, offsets.NewPartition("orders", 0, 0, 16), 0)
		h.mu.Lock()
		h.add(st)
		h.mu.Unlock()
		const records = 2000
		stop := make(chan struct{})
		var rounds sync.WaitGroup
		rounds.Go(func() {
			now := time.Now()
			for {
				select {
				case <-stop:
					return
				default:
				}
				now = now.Add(time.Second)
				h.watch(context.Background(), now)
				if err := h.commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
		for o := range int64(records) {
			st.highWatermark.Store(o + 1) // the fetch, as claim.Deliver does it
			h.wake(st)
			seq, err := st.track.Register(o)
			if err != nil {
				t.Fatal(err)
			}
			st.track.Ack(seq)
		}
		close(stop)
		rounds.Wait()
		h.watch(context.Background(), time.Now().Add(time.Hour))
		if err := h.commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := mc.marks[st.tp]; got != records {
			t.Fatalf("position committed after %d records acknowledged: %d, want %d", records, got, records)
		}
		h.watch(context.Background(), time.Now().Add(2*time.Hour))
		if _, watched := h.watched[st.tp]; watched {
			t.Fatalf("the partition is still watched after a round found it idle and committed")
		}
	}
}

// newMarkingHandler returns a handler whose commits mark into the returned committer, told
// what obs observes (nil: nothing) and reading the source from src (nil: none).
func newMarkingHandler(t *testing.T, obs Observer, src Cluster) (*Handler, *markingCommitter) {
	t.Helper()
	mc := &markingCommitter{marks: map[topicPartition]int64{}}
	h, err := New(Config{
		Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](16, 1<<20)}, Topics: noTopics{},
		NewCommitter: func(func(string) string) offsets.Committer { return mc },
		Observer:     obs, Source: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.committer = mc
	return h, mc
}

// markingCommitter keeps the last mark of each partition.
type markingCommitter struct {
	offsets.Committer
	mu    sync.Mutex
	marks map[topicPartition]int64
}

func (c *markingCommitter) Mark(topic string, partition int32, offset int64) {
	c.mu.Lock()
	c.marks[topicPartition{topic, partition}] = offset
	c.mu.Unlock()
}

func (c *markingCommitter) Commit(context.Context) error { return nil }

// quietCluster lists fixed log ends and counts the probes of each partition.
type quietCluster struct {
	Cluster
	mu     sync.Mutex
	ends   map[TopicPartition]int64
	probes map[TopicPartition]int
}

func (c *quietCluster) Ends(map[string][]int32) (map[TopicPartition]int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ends), nil
}

func (c *quietCluster) FirstRecord(_ context.Context, topic string, partition int32, _ int64, _ time.Duration) (int64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes[TopicPartition{topic, partition}]++
	return 0, false, nil
}

func (c *quietCluster) StableEnds(map[string][]int32) (map[TopicPartition]int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ends), nil
}

// TestOnlyAPartitionStillBehindALaterListingIsProbed: a partition behind its log end with
// nothing in flight, whose fetches have not seen the log end (written to all the time, as the
// heartbeats are, its next record not fetched yet), is not probed for where its next record is
// as long as its position moves between listings. One whose fetches saw the log end (a commit
// marker at the end of its log) is probed at once, one that stays at the same position below the
// log end a listing later, then; once each, and their backlogs are then none.
func TestOnlyAPartitionStillBehindALaterListingIsProbed(t *testing.T) {
	busy, fetched, stuck := TopicPartition{"kmirror.heartbeats", 0}, TopicPartition{"payments", 0}, TopicPartition{"payments", 1}
	src := &quietCluster{ends: map[TopicPartition]int64{busy: 1, fetched: 11, stuck: 11}, probes: map[TopicPartition]int{}}
	h, _ := newMarkingHandler(t, nil, src)
	sts := map[TopicPartition]*claimState{}
	for tp, start := range map[TopicPartition]int64{busy: 0, fetched: 10, stuck: 10} {
		sts[tp] = newClaimState(topicPartition{tp.Topic, tp.Partition}, offsets.NewPartition(tp.Topic, tp.Partition, start, 16), start)
		h.add(sts[tp])
	}
	sts[fetched].highWatermark.Store(11) // its last fetch brought the marker
	listing := func(i int) {
		h.watch(context.Background(), time.Now().Add(time.Duration(i)*listEvery))
		for h.probing.Load() {
			time.Sleep(time.Millisecond)
		}
	}
	probes := func() (int, int, int) {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.probes[busy], src.probes[fetched], src.probes[stuck]
	}
	listing(0)
	if b, f, s := probes(); b != 0 || f != 1 || s != 0 {
		t.Fatalf("probes after the first listing: busy %d, fetched to its end %d, stuck %d; want 0, 1, 0", b, f, s)
	}
	for i := 1; i < 4; i++ {
		// the busy partition's record is mirrored, and the next one written
		seq, err := sts[busy].track.Register(int64(i - 1))
		if err != nil {
			t.Fatal(err)
		}
		sts[busy].track.Ack(seq)
		src.mu.Lock()
		src.ends[busy] = int64(i) + 1
		src.mu.Unlock()
		listing(i)
	}
	if b, f, s := probes(); b != 0 || f != 1 || s != 1 {
		t.Fatalf("probes after 4 listings: busy %d, fetched to its end %d, stuck %d; want 0, 1, 1", b, f, s)
	}
	for _, tp := range []TopicPartition{fetched, stuck} {
		if b := h.backlog(sts[tp], sts[tp].end(), 10, 0, time.Now()); b.Records != 0 {
			t.Fatalf("%v's backlog after its probe: %+v, want none", tp, b)
		}
	}
}
