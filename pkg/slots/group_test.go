package slots

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// The tests below run real sarama consumer groups against an in-process kfake cluster: the
// plan goes through JoinGroup/SyncGroup on a broker, and the user data sarama echoes between
// generations is what makes the strategy sticky.

const groupTopic = "orders"

// session is what a member was handed in its latest session.
type session struct {
	generation int32
	claims     map[string][]int32
}

// claims records each member's latest session.
type claims struct {
	mu     sync.Mutex
	latest map[string]session
}

func (c *claims) set(member string, s session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latest[member] = s
}

// settled returns the members' sessions once all of members are in one generation above after
// and their claims cover the topic's partitions exactly once.
func (c *claims) settled(members []string, after int32, partitions int) (map[string]session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gen int32 = -1
	seen := make(map[int32]bool)
	out := make(map[string]session, len(members))
	for _, m := range members {
		s, ok := c.latest[m]
		if !ok || s.generation <= after || (gen >= 0 && s.generation != gen) {
			return nil, false
		}
		gen = s.generation
		for _, p := range s.claims[groupTopic] {
			if seen[p] {
				return nil, false
			}
			seen[p] = true
		}
		out[m] = s
	}
	return out, len(seen) == partitions
}

type handler struct {
	member string
	rec    *claims
}

func (h handler) Setup(sess sarama.ConsumerGroupSession) error {
	cl := make(map[string][]int32)
	for tp, ps := range sess.Claims() {
		cl[tp] = slices.Clone(ps)
	}
	h.rec.set(h.member, session{generation: sess.GenerationID(), claims: cl})
	return nil
}

func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-sess.Context().Done():
			return nil
		case _, ok := <-claim.Messages():
			if !ok {
				return nil
			}
		}
	}
}

// member is one running sarama consumer group member.
type member struct {
	cancel context.CancelFunc
	done   chan error
	group  sarama.ConsumerGroup
}

func groupConfig(t *testing.T, name string, slots int) *sarama.Config {
	t.Helper()
	strategy, err := NewStrategy(Config{Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "slots-test-" + name
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Metadata.RefreshFrequency = time.Second
	return sc
}

// startMember runs a member until stop; Consume's last error, if the context was not cancelled,
// comes out of done.
func startMember(t *testing.T, addrs []string, groupID, name string, slots int, rec *claims) *member {
	t.Helper()
	g, err := sarama.NewConsumerGroup(addrs, groupID, groupConfig(t, name, slots))
	if err != nil {
		t.Fatalf("new consumer group member %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{cancel: cancel, done: make(chan error, 1), group: g}
	go func() {
		for {
			err := g.Consume(ctx, []string{groupTopic}, handler{member: name, rec: rec})
			if ctx.Err() != nil {
				m.done <- nil
				return
			}
			if err != nil {
				m.done <- err
				return
			}
		}
	}()
	t.Cleanup(func() { m.stop(t) })
	return m
}

// stop leaves the group (LeaveGroup, so the others rebalance at once) and waits for Consume.
func (m *member) stop(t *testing.T) {
	t.Helper()
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Error("member did not stop within 30s")
	}
	if err := m.group.Close(); err != nil {
		t.Errorf("close member: %v", err)
	}
}

func startCluster(t *testing.T, partitions int32) *embedded.Cluster {
	t.Helper()
	c, err := embedded.Start("europe", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, groupTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", groupTopic, err)
	}
	return c
}

func waitSettled(t *testing.T, rec *claims, members []string, after int32, partitions int) map[string]session {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, ok := rec.settled(members, after, partitions); ok {
			return s
		}
		if time.Now().After(deadline) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			t.Fatalf("members %v did not settle on one generation above %d claiming all %d partitions: %v",
				members, after, partitions, rec.latest)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkWholeSlots fails unless the sessions' claims keep every slot whole and slot counts differ
// by at most one; it returns each member's slots.
func checkWholeSlots(t *testing.T, sessions map[string]session, slots int) map[string][]int {
	t.Helper()
	plan := make(sarama.BalanceStrategyPlan)
	for m, s := range sessions {
		plan[m] = s.claims
	}
	if err := WholeSlots(plan, slots); err != nil {
		t.Fatalf("claims %v: %v", plan, err)
	}
	owned := make(map[string][]int)
	lo, hi := slots, 0
	for m, s := range sessions {
		owned[m] = slotsOf(s.claims, slots)
		lo, hi = min(lo, len(owned[m])), max(hi, len(owned[m]))
	}
	if hi-lo > 1 {
		t.Errorf("slots per member %v: counts differ by %d, want ≤ 1", owned, hi-lo)
	}
	return owned
}

// TestConsumerGroupMembersClaimWholeSlots: three sarama members on a 24-partition topic with 8
// slots each claim whole slots covering all 24 partitions; after one leaves, the other two still
// claim whole slots, all 24 partitions, and keep every slot they had.
func TestConsumerGroupMembersClaimWholeSlots(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a consumer group on an embedded cluster")
	}
	const (
		slots      = 8
		partitions = 24
		groupID    = "kmirror-slots-test"
	)
	c := startCluster(t, partitions)
	rec := &claims{latest: make(map[string]session)}
	names := []string{"m0", "m1", "m2"}
	ms := make(map[string]*member)
	for _, n := range names {
		ms[n] = startMember(t, c.Addrs(), groupID, n, slots, rec)
	}

	first := waitSettled(t, rec, names, 0, partitions)
	before := checkWholeSlots(t, first, slots)
	t.Logf("generation %d: %v", first[names[0]].generation, before)

	ms["m1"].stop(t)
	rest := []string{"m0", "m2"}
	second := waitSettled(t, rec, rest, first[names[0]].generation, partitions)
	after := checkWholeSlots(t, second, slots)
	t.Logf("generation %d after m1 left: %v", second[rest[0]].generation, after)
	for _, m := range rest {
		for _, sl := range before[m] {
			if !slices.Contains(after[m], sl) {
				t.Errorf("%s lost slot %d when m1 left (had %v, has %v)", m, sl, before[m], after[m])
			}
		}
	}
}

// TestConsumerGroupRefusesAMemberWithAnotherSlotCount: the slot count is in the protocol name,
// so a member configured with another count cannot join (it would derive other transactional
// ids for the same partitions).
func TestConsumerGroupRefusesAMemberWithAnotherSlotCount(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a consumer group on an embedded cluster")
	}
	const groupID = "kmirror-slots-mismatch"
	c := startCluster(t, 8)
	rec := &claims{latest: make(map[string]session)}
	startMember(t, c.Addrs(), groupID, "eight", 8, rec)
	waitSettled(t, rec, []string{"eight"}, 0, 8)

	odd := startMember(t, c.Addrs(), groupID, "sixteen", 16, rec)
	select {
	case err := <-odd.done:
		if !errors.Is(err, sarama.ErrInconsistentGroupProtocol) {
			t.Fatalf("member with 16 slots: Consume = %v, want %v", err, sarama.ErrInconsistentGroupProtocol)
		}
		odd.done <- nil // for stop
	case <-time.After(30 * time.Second):
		t.Fatal("member with 16 slots was not refused within 30s")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if s, ok := rec.latest["sixteen"]; ok {
		t.Errorf("member with 16 slots got a session with claims %v", s.claims)
	}
}
