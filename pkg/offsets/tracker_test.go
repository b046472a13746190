package offsets

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestCommittedOnlyAdvancesOverContiguousAcks(t *testing.T) {
	p := NewPartition("t", 0, 100, 8)
	offsets := []int64{100, 101, 105, 106} // gaps: compaction or transaction markers
	seqs := make([]uint64, len(offsets))
	for i, o := range offsets {
		s, err := p.Register(o)
		if err != nil {
			t.Fatal(err)
		}
		seqs[i] = s
	}
	p.Ack(seqs[1])
	p.Ack(seqs[3])
	if got := p.Committed(); got != 100 {
		t.Fatalf("committed = %d after acks of 101 and 106 only, want 100", got)
	}
	p.Ack(seqs[0])
	if got := p.Committed(); got != 102 {
		t.Fatalf("committed = %d, want 102 (100 and 101 acked)", got)
	}
	p.Ack(seqs[2])
	if got := p.Committed(); got != 107 {
		t.Fatalf("committed = %d, want 107", got)
	}
	if p.InFlight() != 0 {
		t.Fatalf("in flight = %d, want 0", p.InFlight())
	}
}

func TestFailureStopsThePartition(t *testing.T) {
	p := NewPartition("t", 3, 0, 8)
	var seqs []uint64
	for o := int64(0); o < 4; o++ {
		s, _ := p.Register(o)
		seqs = append(seqs, s)
	}
	boom := errors.New("boom")
	p.Ack(seqs[0])
	p.Fail(seqs[1], boom)
	p.Ack(seqs[2])
	p.Ack(seqs[3])
	if got := p.Committed(); got != 1 {
		t.Fatalf("committed = %d, want 1: nothing past the failed offset 1", got)
	}
	err := p.Drain(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Drain = %v, want the failure", err)
	}
	if f := p.Failed(); f == nil || f.Offset != 1 {
		t.Fatalf("Failed = %+v, want offset 1", f)
	}
}

func TestRegisterRefusesBeyondCapacityAndReusesSlots(t *testing.T) {
	p := NewPartition("t", 0, 0, 4)
	for o := int64(0); o < 4; o++ {
		if _, err := p.Register(o); err != nil {
			t.Fatalf("register %d: %v", o, err)
		}
	}
	if _, err := p.Register(4); !errors.Is(err, ErrFull) {
		t.Fatalf("register beyond capacity = %v, want ErrFull", err)
	}
	p.Ack(0)
	s, err := p.Register(4)
	if err != nil {
		t.Fatalf("register after a pop: %v", err)
	}
	for _, q := range []uint64{1, 2, 3, s} {
		p.Ack(q)
	}
	if got := p.Committed(); got != 5 {
		t.Fatalf("committed = %d, want 5", got)
	}
}

func TestUnregisterTakesBackAnUnsentRecord(t *testing.T) {
	p := NewPartition("t", 0, 10, 4)
	s0, _ := p.Register(10)
	s1, _ := p.Register(11)
	p.Unregister(s1)
	p.Ack(s0)
	if err := p.Drain(context.Background()); err != nil {
		t.Fatalf("Drain after unregister: %v", err)
	}
	if got := p.Committed(); got != 11 {
		t.Fatalf("committed = %d, want 11: the unregistered 11 was never sent", got)
	}
}

func TestDrainReportsWhatIsLeftWhenItTimesOut(t *testing.T) {
	p := NewPartition("t", 0, 0, 4)
	p.Register(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.Drain(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want a deadline error", err)
	}
}

// TestConcurrentOutOfOrderAcksNeverOvershoot acks from several goroutines in random order while
// a reader checks that committed never passes an unacknowledged record.
func TestConcurrentOutOfOrderAcksNeverOvershoot(t *testing.T) {
	const n = 50_000
	p := NewPartition("t", 0, 0, 1024)
	acked := make([]atomicBool, n)
	work := make(chan uint64, 64)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []uint64
			flush := func() {
				rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				for _, s := range batch {
					acked[s].set()
					p.Ack(s)
				}
				batch = batch[:0]
			}
			for s := range work {
				batch = append(batch, s)
				// Hold up to 16 acks to reorder them, but never wait for more while holding some:
				// the window only frees up when they are acked.
				if len(batch) == 16 || len(work) == 0 {
					flush()
				}
			}
			flush()
		}()
	}
	stop := make(chan struct{})
	var checkErr error
	var checker sync.WaitGroup
	checker.Add(1)
	go func() {
		defer checker.Done()
		verified := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := p.Committed()
			for o := verified; o < c; o++ {
				if !acked[o].get() {
					checkErr = errors.New("committed passed an unacknowledged offset")
					return
				}
			}
			verified = max(verified, c)
		}
	}()
	ctx := context.Background()
	for o := int64(0); o < n; o++ {
		s, err := p.RegisterWait(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		work <- s
	}
	close(work)
	wg.Wait()
	close(stop)
	checker.Wait()
	if checkErr != nil {
		t.Fatal(checkErr)
	}
	if got := p.Committed(); got != n {
		t.Fatalf("committed = %d, want %d", got, n)
	}
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) set()      { b.mu.Lock(); b.v = true; b.mu.Unlock() }
func (b *atomicBool) get() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.v }

// TestTwoAckersAndRegisterDoNotRace acknowledges from two goroutines at once (the producer's
// ack path and the worker's skip path) while the claim goroutine keeps registering into slots
// the advancers just freed. Under -race a plain slot offset was reported as a data race: an
// advancer that loses the pop to the other reads the offset of a slot Register is reusing.
func TestTwoAckersAndRegisterDoNotRace(t *testing.T) {
	const n = 200_000
	p := NewPartition("t", 0, 0, 4)
	seqs := make(chan uint64, 4)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range seqs {
				p.Ack(s)
			}
		}()
	}
	for off := int64(0); off < n; off++ {
		seq, err := p.RegisterWait(context.Background(), off)
		if err != nil {
			t.Fatal(err)
		}
		seqs <- seq
	}
	close(seqs)
	wg.Wait()
	if got := p.Committed(); got != n {
		t.Fatalf("committed = %d, want %d", got, n)
	}
}

func TestStoppedAfterFailOrFenceAndSettledFollowsTheHead(t *testing.T) {
	p := NewPartition("t", 0, 10, 8)
	a, _ := p.Register(10)
	b, _ := p.Register(11)
	if p.Stopped() || p.Settled(b) {
		t.Fatal("a fresh partition with an unacknowledged record is neither stopped nor settled past it")
	}
	p.Ack(a)
	if !p.Settled(b) || p.Settled(b+1) {
		t.Fatal("after acknowledging the first record, everything before the second is settled, not the second")
	}
	if f := p.Expire(errors.New("no ack for 2m")); f == nil || f.Offset != 11 {
		t.Fatalf("Expire failed %+v, want the oldest unacknowledged offset 11", f)
	}
	if !p.Stopped() {
		t.Fatal("a failed partition must be stopped")
	}
	q := NewPartition("t", 1, 0, 8)
	q.Fence()
	if !q.Stopped() || q.Failed() != nil {
		t.Fatal("a fenced partition is stopped without a failure")
	}
	if f := NewPartition("t", 2, 0, 8).Expire(errors.New("x")); f != nil {
		t.Fatalf("Expire with nothing in flight failed %+v", f)
	}
}

func TestSettledBeforeWaitsForEveryEarlierRecord(t *testing.T) {
	p := NewPartition("t", 0, 0, 8)
	seqs := map[int64]uint64{}
	for _, off := range []int64{0, 1, 5, 6} { // 2 to 4 hold no record
		s, err := p.Register(off)
		if err != nil {
			t.Fatal(err)
		}
		seqs[off] = s
	}
	if !p.SettledBefore(0) || p.SettledBefore(1) {
		t.Fatal("before any ack: settled before 0 only")
	}
	p.Ack(seqs[5]) // a later record acknowledged first: 1 is still out
	if p.SettledBefore(5) || p.SettledBefore(6) {
		t.Fatal("record 1 is not acknowledged: nothing after it is settled before")
	}
	p.Ack(seqs[0])
	p.Ack(seqs[1])
	if !p.SettledBefore(5) || !p.SettledBefore(6) {
		t.Fatal("0, 1 and 5 acknowledged: every record before 6 is settled")
	}
	p.Ack(seqs[6])
	if !p.SettledBefore(100) {
		t.Fatal("nothing in flight: settled before any offset")
	}
}

// TestRegisterBatchIsAllOrNothingAndCommitsInOrder: a batch registers only when the window holds
// all of it, its records take consecutive sequence numbers across a page boundary, taking it back
// leaves the window as it was, and committed moves past it only once every record is acked.
func TestRegisterBatchIsAllOrNothingAndCommitsInOrder(t *testing.T) {
	p := NewPartition("t", 0, 100, 256)
	offs := make([]int64, 300)
	for i := range offs {
		offs[i] = 100 + 2*int64(i) // a compacted log: gaps between offsets
	}
	if _, err := p.RegisterBatch(257, func(i int) int64 { return offs[i] }); !errors.Is(err, ErrFull) {
		t.Fatalf("a batch larger than the window: %v, want ErrFull", err)
	}
	first, err := p.RegisterBatch(120, func(i int) int64 { return offs[i] })
	if err != nil || first != 0 || p.Room() != 136 {
		t.Fatalf("first batch: seq %d err %v room %d", first, err, p.Room())
	}
	second, err := p.RegisterBatch(20, func(i int) int64 { return offs[120+i] }) // crosses a page
	if err != nil || second != 120 {
		t.Fatalf("second batch: seq %d err %v", second, err)
	}
	p.UnregisterBatch(second, 20)
	if p.InFlight() != 120 {
		t.Fatalf("after taking the second batch back: %d in flight, want 120", p.InFlight())
	}
	second, _ = p.RegisterBatch(20, func(i int) int64 { return offs[120+i] })
	for seq := uint64(139); seq >= 1; seq-- {
		p.Ack(seq)
		if p.Committed() != 100 {
			t.Fatalf("committed %d before the first record was acked", p.Committed())
		}
	}
	p.Ack(0)
	if want := offs[139] + 1; p.Committed() != want || p.InFlight() != 0 {
		t.Fatalf("committed %d in flight %d, want %d and 0", p.Committed(), p.InFlight(), want)
	}
}

// TestOnRoomCallsOnceTheWindowIsHalfEmpty: after WantRoom, acknowledgements call OnRoom once,
// when the records in flight are down to half the capacity, and not again without WantRoom.
func TestOnRoomCallsOnceTheWindowIsHalfEmpty(t *testing.T) {
	p := NewPartition("t", 0, 0, 8)
	var calls int
	p.OnRoom(func() { calls++ })
	first, _ := p.RegisterBatch(8, func(i int) int64 { return int64(i) })
	p.WantRoom()
	for i := range uint64(8) {
		p.Ack(first + i)
		want := 0
		if i >= 3 { // 4 in flight after the fourth ack
			want = 1
		}
		if calls != want {
			t.Fatalf("after %d acks: OnRoom called %d times, want %d", i+1, calls, want)
		}
	}
}
