package ring

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestQueueFullAndEmptyByItems(t *testing.T) {
	q := NewQueue[int](4, 1<<20)
	if _, ok := q.TryPop(); ok {
		t.Fatal("pop from an empty queue succeeded")
	}
	for i := 0; i < 4; i++ {
		if !q.TryPush(i, 1) {
			t.Fatalf("push %d into a queue of 4 failed", i)
		}
	}
	if q.TryPush(4, 1) {
		t.Fatal("push into a full queue succeeded")
	}
	if q.Len() != 4 || q.Bytes() != 4 {
		t.Fatalf("len, bytes = %d, %d; want 4, 4", q.Len(), q.Bytes())
	}
	for i := 0; i < 4; i++ {
		v, ok := q.TryPop()
		if !ok || v != i {
			t.Fatalf("pop = %d, %v; want %d", v, ok, i)
		}
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("drained queue: len, bytes = %d, %d", q.Len(), q.Bytes())
	}
}

func TestQueueFullByBytesButAdmitsOneOversizedItemWhenEmpty(t *testing.T) {
	q := NewQueue[string](16, 100)
	if !q.TryPush("a", 60) {
		t.Fatal("first push failed")
	}
	if q.TryPush("b", 60) {
		t.Fatal("push past the byte budget succeeded")
	}
	if !q.TryPush("c", 40) {
		t.Fatal("push that fits the byte budget failed")
	}
	q.TryPop()
	q.TryPop()
	if !q.TryPush("huge", 1000) {
		t.Fatal("an item larger than the budget must be admitted into an empty queue")
	}
	if q.TryPush("d", 1) {
		t.Fatal("nothing fits beside an oversized item")
	}
}

func TestQueueWrapsAroundManyLaps(t *testing.T) {
	q := NewQueue[int](8, 1<<20)
	next := 0
	for i := 0; i < 10_000; i++ {
		for j := 0; j < 5; j++ {
			if !q.TryPush(i*5+j, 1) {
				t.Fatalf("push failed at lap %d", i)
			}
		}
		for j := 0; j < 5; j++ {
			v, ok := q.TryPop()
			if !ok || v != next {
				t.Fatalf("pop = %d, %v; want %d", v, ok, next)
			}
			next++
		}
	}
}

func TestPushBlocksUntilSpaceAndHonoursContext(t *testing.T) {
	q := NewQueue[int](2, 1<<20)
	ctx := context.Background()
	q.TryPush(1, 1)
	q.TryPush(2, 1)

	done := make(chan error, 1)
	go func() { done <- q.Push(ctx, 3, 1) }()
	select {
	case err := <-done:
		t.Fatalf("push into a full queue returned %v without waiting", err)
	case <-time.After(30 * time.Millisecond):
	}
	if v, _ := q.Pop(ctx); v != 1 {
		t.Fatalf("pop = %d, want 1", v)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blocked push = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked push was not released by a pop")
	}

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.Push(cctx, 4, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("push into a full queue with an ending context = %v", err)
	}
	if q.Len() != 2 {
		t.Fatalf("a cancelled push must add nothing: len = %d", q.Len())
	}
}

func TestPopHonoursContext(t *testing.T) {
	q := NewQueue[int](2, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Pop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pop from an empty queue = %v", err)
	}
}

// TestConcurrentPushersKeepTheirOrderAndNothingIsLost runs several pushers and poppers through a
// small queue (so it is full and empty often) and checks every item arrives exactly once and each
// pusher's items arrive in the order pushed.
func TestConcurrentPushersKeepTheirOrderAndNothingIsLost(t *testing.T) {
	const pushers, poppers, perPusher = 4, 3, 20_000
	q := NewQueue[[2]int](64, 1<<30)
	ctx := context.Background()

	var wg sync.WaitGroup
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perPusher; i++ {
				if err := q.Push(ctx, [2]int{p, i}, 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}

	type seen struct{ items [][2]int }
	results := make([]seen, poppers)
	total := pushers * perPusher
	var popped sync.WaitGroup
	remaining := make(chan struct{}, total)
	for i := 0; i < total; i++ {
		remaining <- struct{}{}
	}
	close(remaining)
	for c := 0; c < poppers; c++ {
		popped.Add(1)
		go func() {
			defer popped.Done()
			for range remaining {
				v, err := q.Pop(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				results[c].items = append(results[c].items, v)
			}
		}()
	}
	wg.Wait()
	popped.Wait()

	count := make([]int, pushers)
	for _, r := range results {
		last := make([]int, pushers)
		for i := range last {
			last[i] = -1
		}
		for _, it := range r.items {
			if it[1] <= last[it[0]] {
				t.Fatalf("pusher %d: item %d popped after %d by the same popper", it[0], it[1], last[it[0]])
			}
			last[it[0]] = it[1]
			count[it[0]]++
		}
	}
	for p, n := range count {
		if n != perPusher {
			t.Fatalf("pusher %d: %d items popped, want %d", p, n, perPusher)
		}
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("queue not empty after the run: len %d bytes %d", q.Len(), q.Bytes())
	}
}

func TestRouteIsStableAndSpreads(t *testing.T) {
	const workers = 8
	used := make(map[int]bool)
	for p := int32(0); p < 64; p++ {
		w := Route("orders", p, workers)
		if w < 0 || w >= workers {
			t.Fatalf("Route = %d, outside [0, %d)", w, workers)
		}
		if Route("orders", p, workers) != w {
			t.Fatal("Route is not deterministic")
		}
		used[w] = true
	}
	if len(used) < workers/2 {
		t.Fatalf("64 partitions used only %d of %d workers", len(used), workers)
	}
}

// TestWaitRoomHearsOfAPop: a goroutine that announced itself with WaitRoom, found the queue full
// and waits, hears of the next pop.
func TestWaitRoomHearsOfAPop(t *testing.T) {
	q := NewQueue[int](2, 1<<20)
	q.TryPush(1, 1)
	q.TryPush(2, 1)
	room, done := q.WaitRoom()
	defer done()
	if q.TryPush(3, 1) {
		t.Fatal("pushed into a full queue")
	}
	go q.TryPop()
	select {
	case <-room:
	case <-time.After(5 * time.Second):
		t.Fatal("no word of the pop")
	}
	if !q.TryPush(3, 1) {
		t.Fatal("no room after the pop")
	}
}

// TestCountSumsThePushersCounts: Count is the sum of the counts of the items queued.
func TestCountSumsThePushersCounts(t *testing.T) {
	q := NewQueue[string](4, 1<<20)
	q.TryPushN("three", 10, 3)
	q.TryPush("one", 10)
	if q.Count() != 4 || q.Len() != 2 {
		t.Fatalf("count %d len %d, want 4 and 2", q.Count(), q.Len())
	}
	q.TryPop()
	if q.Count() != 1 {
		t.Fatalf("count %d after popping the item of 3, want 1", q.Count())
	}
}

// TestIdlePopperWakesAtOnce: a popper that has slept long enough for its park timeout to grow
// still takes a push at once (the push wakes it), not at its next timeout.
func TestIdlePopperWakesAtOnce(t *testing.T) {
	q := NewQueue[int](4, 1<<20)
	got := make(chan time.Time, 1)
	go func() {
		if _, err := q.Pop(context.Background()); err == nil {
			got <- time.Now()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the popper's sleeps have grown to idleParkTimeout
	for range 5 {
		pushed := time.Now()
		q.TryPush(1, 1)
		at := <-got
		if d := at.Sub(pushed); d > idleParkTimeout/2 {
			t.Fatalf("an idle popper took the push after %s", d)
		}
		go func() {
			if _, err := q.Pop(context.Background()); err == nil {
				got <- time.Now()
			}
		}()
		time.Sleep(300 * time.Millisecond)
	}
	q.TryPush(1, 1)
	<-got
}
