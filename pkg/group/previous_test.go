package group

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// startSaramaMember runs a member of the previous release: sarama's ConsumerGroup with strategy,
// reporting to the ledger as name. stop ends it (it leaves the group).
func startSaramaMember(t *testing.T, addrs []string, group, name string, l *ledger, strategy sarama.BalanceStrategy) (stop func()) {
	t.Helper()
	sc := clientConfig(name)
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cg, err := sarama.NewConsumerGroup(addrs, group, sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, &saramaMember{h: l.handler(name)}); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err := cg.Close(); err != nil {
				t.Errorf("close %s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestUpgradeFromPreviousRelease: the previous release's members joined with sarama's
// ConsumerGroup and sarama's sticky, range or roundrobin strategy, which the member offers last
// (Config.Previous). A member joins a group of two of them: the coordinator picks the previous
// release's protocol, the member gives everything up before each join (eager), and whoever leads
// plans with sarama's strategy, so every partition has exactly one owner (the ledger checks);
// once the old members have left one by one, the group turns cooperative and the member owns
// everything. Without Previous the member is refused (INCONSISTENT_GROUP_PROTOCOL).
func TestUpgradeFromPreviousRelease(t *testing.T) {
	// One strategy value per member: sarama's sticky one keeps state while it plans.
	for _, s := range []func() sarama.BalanceStrategy{sarama.NewBalanceStrategySticky, sarama.NewBalanceStrategyRange, sarama.NewBalanceStrategyRoundRobin} {
		name := s().Name()
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, partitions)
			l := newLedger(t)
			group := "g-previous-" + name
			stopOld1 := startSaramaMember(t, c.Addrs(), group, "old1", l, s())
			stopOld2 := startSaramaMember(t, c.Addrs(), group, "old2", l, s())
			waitOwned := func(what string, ok func(map[string]Partitions) bool) {
				t.Helper()
				deadline := time.Now().Add(45 * time.Second)
				for o := l.owned(); !ok(o); o = l.owned() {
					if time.Now().After(deadline) {
						t.Fatalf("%s: owned %v", what, o)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			total := func(o map[string]Partitions, names ...string) int {
				n := 0
				for _, name := range names {
					n += o[name].Len()
				}
				return n
			}
			waitOwned("the old members share the partitions", func(o map[string]Partitions) bool {
				return o["old1"].Len() > 0 && o["old2"].Len() > 0 && total(o, "old1", "old2") == partitions
			})

			a := startMember(t, c.Addrs(), group, "a", l.handler("a"), memberOpts{previous: s()})
			waitOwned("a gets a share beside the old members", func(o map[string]Partitions) bool {
				return o["a"].Len() > 0 && o["old1"].Len() > 0 && o["old2"].Len() > 0 && total(o, "a", "old1", "old2") == partitions
			})
			if p := a.m.Generation().Protocol; p != name {
				t.Errorf("with members of the previous release the group runs %q, want %q", p, name)
			}
			stopOld1()
			waitOwned("a and old2 share the partitions", func(o map[string]Partitions) bool {
				return o["a"].Len() > 0 && o["old2"].Len() > 0 && total(o, "a", "old2") == partitions
			})
			t.Logf("after old1 left: generation %+v", a.m.Generation())
			if p := a.m.Generation().Protocol; p != name {
				t.Errorf("with a member of the previous release left the group runs %q, want %q", p, name)
			}
			stopOld2()
			waitSettled(t, l, []*running{a}, partitions)
			if p := a.m.Generation().Protocol; p != CooperativeProtocol(a.m.cfg.Strategy) {
				t.Errorf("after the previous release's members left the group runs %q, want the cooperative one", p)
			}
			t.Logf("events: %s", describe(l, "old1", "old2", "a"))
		})
	}
}

// TestRefusedWithoutPrevious: without Config.Previous a member cannot join a group of the
// previous release's sticky members; Run returns INCONSISTENT_GROUP_PROTOCOL naming the group,
// the protocols offered and the fix.
func TestRefusedWithoutPrevious(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	startSaramaMember(t, c.Addrs(), "g-refused", "old", l, sarama.NewBalanceStrategySticky())
	deadline := time.Now().Add(30 * time.Second)
	for l.owned()["old"].Len() != partitions {
		if time.Now().After(deadline) {
			t.Fatalf("old member owns %v", l.owned())
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := startMember(t, c.Addrs(), "g-refused", "a", l.handler("a"), memberOpts{})
	select {
	case err := <-a.done:
		a.done = nil
		if err == nil || !errors.Is(err, sarama.ErrInconsistentGroupProtocol) {
			t.Fatalf("Run = %v, want INCONSISTENT_GROUP_PROTOCOL", err)
		}
		t.Logf("Run = %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the member was not refused within 30s")
	}
}
