package groups_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestFailoverFollowsAMovedTargetCoordinator: the target's coordinator of a group moves to
// another broker after kmirror's clients looked it up (a broker restarted, __consumer_offsets'
// leaders moved), so the broker they remember answers NOT_COORDINATOR. The failover finds the
// new coordinator and commits, instead of failing at once.
func TestFailoverFollowsAMovedTargetCoordinator(t *testing.T) {
	p := newPairOf(t, sarama.V3_6_0_0, 3)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20})
	s := p.syncer(p.config(plus1000(nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A first plan looks the coordinator up: the clients remember it.
	if _, err := s.Plan(ctx, "app-a", ""); err != nil {
		t.Fatal(err)
	}
	fake := p.us.Fake()
	was := fake.CoordinatorFor("app-a")
	for i := 0; fake.CoordinatorFor("app-a") == was; i++ {
		if i == 100 {
			t.Fatalf("the coordinator of app-a stays on broker %d", was)
		}
		fake.RehashCoordinators()
	}
	t.Logf("the coordinator of app-a moved from broker %d to %d", was, fake.CoordinatorFor("app-a"))

	reps, err := s.Failover(ctx, []string{"app-a"}, "", 0, 10*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("Failover after the coordinator moved: %v", err)
	}
	if len(reps) != 1 || reps[0].Committed() != 2 {
		t.Fatalf("Failover reports %+v, want app-a's 2 partitions committed", reps)
	}
	want := offsets{"europe.orders/0": 1010, "europe.orders/1": 1020}
	if got := committed(t, p.us, "app-a"); !equal(got, want) {
		t.Fatalf("target app-a committed %v, want %v", got, want)
	}
}
