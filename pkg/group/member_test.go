package group

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/slots"
)

const partitions = 24

// checkKeeps fails unless a member that owned before kept all of it except what it revoked, and
// was never handed again something it kept.
func checkKeeps(t *testing.T, l *ledger, name string, before, after Partitions, from int) {
	t.Helper()
	evs := l.eventsOf(name)[from:]
	var revoked Partitions = Partitions{}
	for _, e := range evs {
		switch e.kind {
		case "revoked":
			revoked = union(revoked, e.parts)
		case "assigned":
			if again := diff(e.parts, diff(e.parts, before)); again.Len() > 0 {
				t.Errorf("%s was assigned %v again, which it owned already: %v", name, again, evs)
			}
		case "lost":
			t.Errorf("%s lost %v", name, e.parts)
		}
	}
	if kept := diff(before, revoked); diff(kept, after).Len() > 0 {
		t.Errorf("%s: kept %v but owns %v after", name, kept, after)
	}
	if moved := diff(before, after); !equal(moved, revoked) {
		t.Errorf("%s revoked %v, want exactly what moved away %v (events %v)", name, revoked, moved, evs)
	}
}

// TestJoiningMemberGetsOnlyWhatMovesAfterItsOwnerRevokedIt: a second member joins a group whose
// first member owns all 24 partitions (8 slots). The first member is told to revoke exactly the
// slots that move, once, and keeps the rest without a revoke; the second is handed them only
// after the first returned from Revoked (the ledger fails at once otherwise). Whole slots,
// balanced.
func TestJoiningMemberGetsOnlyWhatMovesAfterItsOwnerRevokedIt(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-two", "a", l.handler("a"), memberOpts{})
	first := waitSettled(t, l, []*running{a}, partitions)
	if first["a"].Len() != partitions {
		t.Fatalf("a alone owns %v", first)
	}
	from := len(l.eventsOf("a"))

	b := startMember(t, c.Addrs(), "g-two", "b", l.handler("b"), memberOpts{})
	second := waitSettled(t, l, []*running{a, b}, partitions)
	checkWholeBalanced(t, second, 8)
	checkKeeps(t, l, "a", first["a"], second["a"], from)
	if n := l.count("a", "revoked"); n != 1 {
		t.Errorf("a revoked %d times, want once: %s", n, describe(l, "a", "b"))
	}
	if n := l.count("b", "revoked") + l.count("b", "lost"); n != 0 {
		t.Errorf("b gave something up: %s", describe(l, "b"))
	}
	if a.m.Generation().Protocol != CooperativeProtocol(a.m.cfg.Strategy) {
		t.Errorf("protocol %q, want the cooperative one", a.m.Generation().Protocol)
	}
	t.Logf("events: %s", describe(l, "a", "b"))
}

// TestThreeMembersJoinAndOneLeaves: a third member joins two; the two revoke only what moves to
// it. Then one leaves (Close: it revokes everything, then LeaveGroup): the other two are only
// handed its partitions, never revoked anything.
func TestThreeMembersJoinAndOneLeaves(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-three", "a", l.handler("a"), memberOpts{})
	b := startMember(t, c.Addrs(), "g-three", "b", l.handler("b"), memberOpts{})
	two := waitSettled(t, l, []*running{a, b}, partitions)
	fromA, fromB := len(l.eventsOf("a")), len(l.eventsOf("b"))

	cm := startMember(t, c.Addrs(), "g-three", "c", l.handler("c"), memberOpts{})
	three := waitSettled(t, l, []*running{a, b, cm}, partitions)
	checkWholeBalanced(t, three, 8)
	checkKeeps(t, l, "a", two["a"], three["a"], fromA)
	checkKeeps(t, l, "b", two["b"], three["b"], fromB)
	if three["c"].Len() == 0 {
		t.Fatalf("c owns nothing: %v", three)
	}

	fromA, fromC := len(l.eventsOf("a")), len(l.eventsOf("c"))
	b.close(t)
	left := waitSettled(t, l, []*running{a, cm}, partitions)
	checkWholeBalanced(t, left, 8)
	for name, from := range map[string]int{"a": fromA, "c": fromC} {
		for _, e := range l.eventsOf(name)[from:] {
			if e.kind != "assigned" {
				t.Errorf("%s: %v after b left, want only assignments", name, e)
			}
		}
	}
	if got := l.eventsOf("b"); got[len(got)-1].kind != "revoked" || !equal(got[len(got)-1].parts, three["b"]) {
		t.Errorf("b's last event %v, want a revoke of everything it owned (%v)", got[len(got)-1], three["b"])
	}
	t.Logf("events: %s", describe(l, "a", "b", "c"))
}

// TestStaticMemberRestartDoesNotRebalance: a static member stops (no LeaveGroup) and a new
// process with its instance id starts within the session timeout: it gets the same partitions
// in the same generation, and the other member is told nothing.
func TestStaticMemberRestartDoesNotRebalance(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-static", "a", l.handler("a"), memberOpts{instance: "a"})
	waitSettled(t, l, []*running{a}, partitions)
	b := startMember(t, c.Addrs(), "g-static", "b", l.handler("b"), memberOpts{instance: "b"})
	before := waitSettled(t, l, []*running{a, b}, partitions)
	gen := a.m.Generation().ID
	fromA := len(l.eventsOf("a"))

	b.close(t) // static: revokes (drains) but does not leave
	b2 := startMember(t, c.Addrs(), "g-static", "b2", l.handler("b2"), memberOpts{instance: "b"})
	after := waitSettled(t, l, []*running{a, b2}, partitions)
	if !equal(after["b2"], before["b"]) {
		t.Errorf("restarted b owns %v, want b's %v", after["b2"], before["b"])
	}
	if g := b2.m.Generation().ID; g != gen {
		t.Errorf("restarted b is in generation %d, want %d (no rebalance)", g, gen)
	}
	if g := a.m.Generation().ID; g != gen {
		t.Errorf("a moved to generation %d from %d", g, gen)
	}
	if evs := l.eventsOf("a")[fromA:]; len(evs) != 0 {
		t.Errorf("a was told %v during b's restart", evs)
	}
}

// TestHeartbeatErrors: a heartbeat answered NOT_COORDINATOR (the coordinator moved) is retried
// and costs nothing; UNKNOWN_MEMBER_ID means the member was removed: it is told Lost before it
// joins again, then gets its partitions back.
func TestHeartbeatErrors(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-hb", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, partitions)

	answer := func(code int16, times int) chan struct{} {
		done := make(chan struct{})
		n := 0
		c.Fake().ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			n++
			c.Fake().KeepControl()
			if n == times {
				c.Fake().DropControl() // a kept control stays kept until dropped
				close(done)
			}
			resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = code
			return resp, nil, true
		})
		return done
	}
	select {
	case <-answer(kerr.NotCoordinator.Code, 5):
	case <-time.After(10 * time.Second):
		t.Fatal("heartbeats not seen")
	}
	time.Sleep(500 * time.Millisecond)
	if evs := l.eventsOf("a"); len(evs) != 1 {
		t.Fatalf("after NOT_COORDINATOR heartbeats a was told %v, want nothing more", evs[1:])
	}

	gen := a.m.Generation().ID
	<-answer(kerr.UnknownMemberID.Code, 1)
	waitSettled(t, l, []*running{a}, partitions)
	evs := l.eventsOf("a")
	if len(evs) != 3 || evs[1].kind != "lost" || evs[1].parts.Len() != partitions || evs[2].kind != "assigned" {
		t.Fatalf("after UNKNOWN_MEMBER_ID: %v, want lost(all) then assigned(all)", evs)
	}
	if g := a.m.Generation().ID; g <= gen {
		t.Errorf("generation %d after rejoining, want > %d", g, gen)
	}
}

// TestSessionLostWhenHeartbeatsFailForASessionTimeout: a coordinator that answers no heartbeat
// for a session timeout has removed the member: the member tells Lost on its own, rather than
// write on while another member may have been handed its partitions.
func TestSessionLostWhenHeartbeatsFailForASessionTimeout(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-session", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, partitions)

	start := time.Now()
	var failing = true
	c.Fake().ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !failing {
			c.Fake().DropControl()
			return nil, nil, false
		}
		c.Fake().KeepControl()
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil, true
	})
	deadline := time.Now().Add(20 * time.Second)
	for l.count("a", "lost") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no Lost 20s into failing heartbeats: %v", l.eventsOf("a"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < 5500*time.Millisecond || took > 9*time.Second {
		t.Errorf("Lost after %v, want after the 6s session timeout less one heartbeat interval (the last beat that got through), and soon after", took)
	}
	c.Fake().ControlKey(kmsg.Heartbeat.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		failing = false
		return nil, nil, false
	})
}

// TestJoinRetriesCoordinatorErrors: JoinGroup answered NOT_COORDINATOR, then
// COORDINATOR_NOT_AVAILABLE, then its connection closed: the member retries with backoff and
// joins.
func TestJoinRetriesCoordinatorErrors(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	for _, code := range []int16{kerr.NotCoordinator.Code, kerr.CoordinatorNotAvailable.Code, -1} {
		c.Fake().ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if code < 0 {
				return nil, errors.New("connection cut"), true
			}
			resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode = code
			return resp, nil, true
		})
	}
	a := startMember(t, c.Addrs(), "g-join", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, partitions)
}

// TestFencedInstanceIDIsFatal: a second process with the same instance id takes the member's
// place; the first is told FENCED_INSTANCE_ID, loses its partitions and Run returns the error.
func TestFencedInstanceIDIsFatal(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-fenced", "a", l.handler("a"), memberOpts{instance: "same"})
	waitSettled(t, l, []*running{a}, partitions)
	c.Fake().ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.FencedInstanceID.Code
		return resp, nil, true
	})
	select {
	case err := <-a.done:
		a.done = nil
		if !errors.Is(err, sarama.ErrFencedInstancedId) {
			t.Fatalf("Run = %v, want FENCED_INSTANCE_ID", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after FENCED_INSTANCE_ID")
	}
	if evs := l.eventsOf("a"); evs[len(evs)-1].kind != "lost" {
		t.Errorf("events %v, want lost last", evs)
	}
	_ = a.cl.Close()
}

// TestCommitAndFetchOwnedPartitions: commits carry the generation and the metadata string, and
// read back; a partition the member does not own is refused (its new owner's position wins).
func TestCommitAndFetchOwnedPartitions(t *testing.T) {
	c := startCluster(t, 4)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-commit", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, 4)
	ctx := context.Background()
	err := a.m.Commit(ctx, []Offset{
		{Topic: topic, Partition: 0, Offset: 42, Metadata: "id-1"},
		{Topic: topic, Partition: 3, Offset: 7, Metadata: "id-1"},
		{Topic: topic, Partition: 9, Offset: 1},
	})
	var ce *offsets.CommitError
	if !errors.As(err, &ce) || len(ce.Partitions) != 1 || ce.Partitions[0].Partition != 9 || !errors.Is(ce.Partitions[0].Err, ErrNotOwned) {
		t.Fatalf("Commit = %v, want only %s/9 refused as not owned", err, topic)
	}
	got, err := a.m.Fetch(ctx, Partitions{topic: {0, 1, 3}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]Committed{0: {42, "id-1"}, 1: {-1, ""}, 3: {7, "id-1"}}
	for p, w := range want {
		if g := got[topic][p]; g != w {
			t.Errorf("partition %d: fetched %+v, want %+v", p, g, w)
		}
	}
}

// saramaMember is a member on sarama's ConsumerGroup with the eager slot strategy (what kmirror
// runs today), reporting to the ledger: Setup assigns the session's claims, Cleanup revokes them.
type saramaMember struct {
	h      *recorder
	gen    int32
	claims Partitions
}

func (s *saramaMember) Setup(sess sarama.ConsumerGroupSession) error {
	s.gen, s.claims = sess.GenerationID(), Partitions(sess.Claims()).Clone()
	s.h.Assigned(context.Background(), Generation{ID: s.gen}, s.claims)
	return nil
}

func (s *saramaMember) Cleanup(sarama.ConsumerGroupSession) error {
	s.h.Revoked(context.Background(), Generation{ID: s.gen}, s.claims)
	return nil
}

func (s *saramaMember) ConsumeClaim(sess sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-sess.Context().Done()
	return nil
}

// TestUpgradeFromEagerMembers: a member joins a group of sarama's eager slot members: the group
// stays eager (the member gives everything up before each join, nobody owns a partition twice);
// once the eager member left, the group turns cooperative and the member owns everything.
func TestUpgradeFromEagerMembers(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	strategy, err := slots.NewStrategy(slots.Config{Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	sc := clientConfig("old")
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	old, err := sarama.NewConsumerGroup(c.Addrs(), "g-upgrade", sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	oldDone := make(chan struct{})
	go func() {
		defer close(oldDone)
		for ctx.Err() == nil {
			if err := old.Consume(ctx, []string{topic}, &saramaMember{h: l.handler("old")}); err != nil && ctx.Err() == nil {
				t.Errorf("old member: %v", err)
				return
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for l.owned()["old"].Len() != partitions {
		if time.Now().After(deadline) {
			t.Fatalf("old member owns %v", l.owned())
		}
		time.Sleep(50 * time.Millisecond)
	}

	a := startMember(t, c.Addrs(), "g-upgrade", "a", l.handler("a"), memberOpts{})
	deadline = time.Now().Add(30 * time.Second)
	for o := l.owned(); o["a"].Len() == 0 || o["a"].Len()+o["old"].Len() != partitions; o = l.owned() {
		if time.Now().After(deadline) {
			t.Fatalf("a did not get a share: %v", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := a.m.Generation().Protocol; p != strategy.Name() {
		t.Errorf("with an eager member the group runs %q, want %q", p, strategy.Name())
	}

	cancel()
	<-oldDone
	if err := old.Close(); err != nil {
		t.Errorf("close old member: %v", err)
	}
	waitSettled(t, l, []*running{a}, partitions)
	if p := a.m.Generation().Protocol; p != CooperativeProtocol(strategy) {
		t.Errorf("after the eager member left the group runs %q, want the cooperative one", p)
	}
	t.Logf("events: %s", describe(l, "old", "a"))
}

// TestPartitionsAddedAreAssignedWithoutRevoking: partitions added to a subscribed topic are
// noticed by the leader (MetadataInterval) and handed out in a rebalance that revokes nothing.
func TestPartitionsAddedAreAssignedWithoutRevoking(t *testing.T) {
	c := startCluster(t, 8)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-grow", "a", l.handler("a"), memberOpts{})
	b := startMember(t, c.Addrs(), "g-grow", "b", l.handler("b"), memberOpts{})
	waitSettled(t, l, []*running{a, b}, 8)
	revokes := l.count("a", "revoked") + l.count("b", "revoked")

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx, 8, topic); err != nil {
		t.Fatal(err)
	}
	grown := waitSettled(t, l, []*running{a, b}, 16)
	checkWholeBalanced(t, grown, 8)
	if n := l.count("a", "revoked") + l.count("b", "revoked"); n != revokes {
		t.Errorf("growing the topic revoked something: %s", describe(l, "a", "b"))
	}
}

// TestRunOnce: a member runs once; Close before or after Run is harmless.
func TestRunOnce(t *testing.T) {
	c := startCluster(t, 4)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-once", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, 4)
	if err := a.m.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	a.close(t)
	a.m.Close()
	if o := a.m.Owned(); o.Len() != 0 {
		t.Errorf("after Close the member owns %v", o)
	}
}

// TestSubscribeRejoinsWithTheNewTopics: a member that subscribes to one more topic rejoins and
// is assigned its partitions; what it had stays.
func TestSubscribeRejoinsWithTheNewTopics(t *testing.T) {
	c := startCluster(t, 8)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-subscribe", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, 8)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 4, 1, nil, "invoices"); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Subscribe([]string{topic, "invoices"}); err != nil {
		t.Fatal(err)
	}
	after := waitSettled(t, l, []*running{a}, 12)
	if len(after["a"]["invoices"]) != 4 || l.count("a", "revoked") != 0 {
		t.Errorf("after subscribing: %s", describe(l, "a"))
	}
	if err := a.m.Subscribe(nil); !errors.Is(err, ErrConfig) {
		t.Errorf("Subscribe(nil) = %v, want ErrConfig", err)
	}
}

// TestSyncErrors: a SyncGroup answered REBALANCE_IN_PROGRESS makes the member rejoin at once
// (nothing lost, it still owns nothing it was not given); one answered ILLEGAL_GENERATION means
// its generation is gone: it is told Lost for what it owned, rejoins and gets it back.
func TestSyncErrors(t *testing.T) {
	c := startCluster(t, partitions)
	l := newLedger(t)
	c.Fake().ControlKey(kmsg.SyncGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp, nil, true
	})
	a := startMember(t, c.Addrs(), "g-sync", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, partitions)
	if evs := l.eventsOf("a"); len(evs) != 1 || evs[0].kind != "assigned" {
		t.Fatalf("after REBALANCE_IN_PROGRESS on sync: %v, want one assignment", evs)
	}

	// The next sync (b joining) answers a ILLEGAL_GENERATION.
	c.Fake().ControlKey(kmsg.SyncGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.SyncGroupRequest).MemberID != a.m.Generation().MemberID {
			c.Fake().KeepControl()
			return nil, nil, false
		}
		c.Fake().DropControl() // the KeepControl above sticks until dropped
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = kerr.IllegalGeneration.Code
		return resp, nil, true
	})
	b := startMember(t, c.Addrs(), "g-sync", "b", l.handler("b"), memberOpts{})
	waitSettled(t, l, []*running{a, b}, partitions)
	if n := l.count("a", "lost"); n != 1 {
		t.Errorf("a was told Lost %d times after ILLEGAL_GENERATION on sync, want once: %s", n, describe(l, "a", "b"))
	}
}

// TestCommitterCommitsMarkedPositions: the member's offsets.Committer commits what was marked,
// with the topic's metadata, keeps nothing pending after success, and drops (reporting it) a
// partition the member does not own.
func TestCommitterCommitsMarkedPositions(t *testing.T) {
	c := startCluster(t, 4)
	l := newLedger(t)
	a := startMember(t, c.Addrs(), "g-committer", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, 4)
	cm := a.m.NewCommitter(func(topic string) string { return "meta-" + topic })
	cm.Mark(topic, 1, 10)
	cm.Mark(topic, 1, 11)
	cm.Mark(topic, 2, 5)
	ctx := context.Background()
	if err := cm.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := cm.Pending(); n != 0 {
		t.Errorf("%d pending after a commit that succeeded", n)
	}
	got, err := a.m.Fetch(ctx, Partitions{topic: {1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got[topic][1] != (Committed{11, "meta-" + topic}) || got[topic][2] != (Committed{5, "meta-" + topic}) {
		t.Errorf("committed %v", got)
	}
	cm.Mark("elsewhere", 0, 3)
	var ce *offsets.CommitError
	if err := cm.Commit(ctx); !errors.As(err, &ce) || !errors.Is(err, ErrNotOwned) {
		t.Errorf("commit of a partition not owned = %v, want ErrNotOwned", err)
	}
	if n := cm.Pending(); n != 0 {
		t.Errorf("%d pending after a partition not owned was refused, want it dropped", n)
	}
}
