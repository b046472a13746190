package slots

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

// group is a consumer group between rebalances, as the leader sees it: its members'
// subscriptions and the user data each echoes from its last assignment.
type group struct {
	t        *testing.T
	strategy *Strategy
	gen      int32
	members  map[string]sarama.ConsumerGroupMemberMetadata
}

func newGroup(t *testing.T, slots int, topics []string, ids ...string) *group {
	t.Helper()
	s, err := NewStrategy(Config{Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	g := &group{t: t, strategy: s, members: make(map[string]sarama.ConsumerGroupMemberMetadata)}
	for _, id := range ids {
		g.join(id, topics...)
	}
	return g
}

func (g *group) join(id string, topics ...string) {
	g.members[id] = sarama.ConsumerGroupMemberMetadata{Topics: topics}
}

func (g *group) leave(id string) { delete(g.members, id) }

// rebalance plans the next generation, checks that every subscribed partition is assigned
// exactly once, and hands each member its user data as sarama does.
func (g *group) rebalance(topics map[string][]int32) sarama.BalanceStrategyPlan {
	g.t.Helper()
	g.gen++
	plan, err := g.strategy.Plan(g.members, topics)
	if err != nil {
		g.t.Fatal(err)
	}
	checkComplete(g.t, plan, g.members, topics)
	for id, meta := range g.members {
		ud, err := g.strategy.AssignmentData(id, plan[id], g.gen)
		if err != nil {
			g.t.Fatal(err)
		}
		meta.UserData = ud
		g.members[id] = meta
	}
	return plan
}

// checkComplete fails unless plan names every member and assigns each partition of a subscribed
// topic to exactly one member that subscribes to it, and nothing else.
func checkComplete(t *testing.T, plan sarama.BalanceStrategyPlan, members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) {
	t.Helper()
	subscribed := make(map[string]bool)
	for id, meta := range members {
		if _, ok := plan[id]; !ok {
			t.Errorf("plan has no entry for member %s", id)
		}
		for _, tp := range meta.Topics {
			subscribed[tp] = true
		}
	}
	seen := make(map[string]map[int32]string)
	for id, ts := range plan {
		if _, ok := members[id]; !ok {
			t.Errorf("plan assigns to %s, not a member", id)
		}
		for tp, ps := range ts {
			if !slices.Contains(members[id].Topics, tp) {
				t.Errorf("member %s is given topic %s it does not subscribe to", id, tp)
			}
			if seen[tp] == nil {
				seen[tp] = make(map[int32]string)
			}
			for _, p := range ps {
				if other, dup := seen[tp][p]; dup {
					t.Errorf("%s/%d assigned to both %s and %s", tp, p, other, id)
				}
				seen[tp][p] = id
			}
		}
	}
	for tp, ps := range topics {
		if !subscribed[tp] {
			continue
		}
		for _, p := range ps {
			if _, ok := seen[tp][p]; !ok {
				t.Errorf("%s/%d is not assigned", tp, p)
			}
		}
	}
}

// owners maps each slot a plan assigns to its member; the plan must keep slots whole.
func owners(t *testing.T, plan sarama.BalanceStrategyPlan, slots int) map[int]string {
	t.Helper()
	if err := WholeSlots(plan, slots); err != nil {
		t.Fatalf("plan splits slots: %v", err)
	}
	out := make(map[int]string)
	for id, ts := range plan {
		for tp, ps := range ts {
			for _, p := range ps {
				out[Of(tp, p, slots)] = id
			}
		}
	}
	return out
}

// slotCounts returns how many slots each member of the plan owns.
func slotCounts(owner map[int]string, plan sarama.BalanceStrategyPlan) map[string]int {
	n := make(map[string]int, len(plan))
	for id := range plan {
		n[id] = 0
	}
	for _, id := range owner {
		n[id]++
	}
	return n
}

func checkBalanced(t *testing.T, owner map[int]string, plan sarama.BalanceStrategyPlan) {
	t.Helper()
	counts := slotCounts(owner, plan)
	lo, hi := -1, -1
	for _, n := range counts {
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	if hi-lo > 1 {
		t.Errorf("slot counts per member %v differ by %d, want ≤ 1", counts, hi-lo)
	}
}

// moved returns the slots owned both before and after whose owner changed.
func moved(before, after map[int]string) []int {
	var out []int
	for sl, o := range before {
		if a, ok := after[sl]; ok && a != o {
			out = append(out, sl)
		}
	}
	slices.Sort(out)
	return out
}

func topicNames(topics map[string][]int32) []string { return slices.Sorted(maps.Keys(topics)) }

func randomTopics(rng *rand.Rand) map[string][]int32 {
	topics := make(map[string][]int32)
	for i := range 1 + rng.IntN(5) {
		n := 1 + rng.IntN(48)
		ps := make([]int32, n)
		for p := range ps {
			ps[p] = int32(p)
		}
		rng.Shuffle(len(ps), func(a, b int) { ps[a], ps[b] = ps[b], ps[a] })
		topics[fmt.Sprintf("topic-%d-%d", i, rng.IntN(1000))] = ps
	}
	return topics
}

func memberIDs(rng *rand.Rand, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("member-%04d-%d", rng.IntN(10000), i) // unique, in random order
	}
	return ids
}

// TestPlanKeepsSlotsWholeAndBalanced is a property test: random topics, slot counts, member
// counts 1..8 and histories (fresh, after another membership, with garbage user data); every
// plan assigns each partition once, keeps every slot whole, balances slot counts within one and
// is the same when planned again.
func TestPlanKeepsSlotsWholeAndBalanced(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260301, 1))
	iterations := 1000
	if testing.Short() {
		iterations = 100
	}
	for range iterations {
		slots := []int{1, 2, 3, 8, 16, 64}[rng.IntN(6)]
		topics := randomTopics(rng)
		names := topicNames(topics)
		g := newGroup(t, slots, names, memberIDs(rng, 1+rng.IntN(8))...)
		switch rng.IntN(3) {
		case 1: // a history: another membership planned first
			other := newGroup(t, slots, names, memberIDs(rng, 1+rng.IntN(8))...)
			other.rebalance(topics)
			for id, meta := range other.members {
				if _, ok := g.members[id]; ok || rng.IntN(2) == 0 {
					g.members[id] = meta
				}
			}
		case 2: // garbage user data
			for id, meta := range g.members {
				meta.UserData = make([]byte, rng.IntN(40))
				for i := range meta.UserData {
					meta.UserData[i] = byte(rng.IntN(256))
				}
				g.members[id] = meta
			}
		}
		plan, err := g.strategy.Plan(g.members, topics)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := g.strategy.Plan(g.members, topics)
		if !reflect.DeepEqual(plan, again) {
			t.Fatalf("slots=%d members=%d: two plans of the same input differ:\n%v\n%v", slots, len(g.members), plan, again)
		}
		checkComplete(t, plan, g.members, topics)
		checkBalanced(t, owners(t, plan, slots), plan)
		if t.Failed() {
			t.Fatalf("slots=%d topics=%v members=%v", slots, topics, slices.Sorted(maps.Keys(g.members)))
		}
	}
}

// TestPlanOnJoinMovesOnlyTheJoinersShare: when a member joins, the only slots that move are
// those it takes, and it takes ⌊n/m⌋ of n slots over m members, the least a balanced plan can
// move.
func TestPlanOnJoinMovesOnlyTheJoinersShare(t *testing.T) {
	topics := map[string][]int32{"orders": partitions(24), "payments": partitions(10), "clicks": partitions(64)}
	for _, slots := range []int{8, 16, 64} {
		for m := 1; m <= 8; m++ {
			t.Run(fmt.Sprintf("slots=%d/from=%d", slots, m), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(slots), uint64(m)))
				g := newGroup(t, slots, topicNames(topics), memberIDs(rng, m)...)
				before := owners(t, g.rebalance(topics), slots)
				g.rebalance(topics) // a steady state: nothing moves
				joiner := fmt.Sprintf("member-%04d-new", rng.IntN(10000))
				g.join(joiner, topicNames(topics)...)
				plan := g.rebalance(topics)
				after := owners(t, plan, slots)
				checkBalanced(t, after, plan)
				mv := moved(before, after)
				for _, sl := range mv {
					if after[sl] != joiner {
						t.Errorf("slot %d moved from %s to %s, not to the joiner", sl, before[sl], after[sl])
					}
				}
				if want := len(after) / (m + 1); len(mv) != want {
					t.Errorf("%d slots moved, want %d (the joiner's share of %d over %d members)", len(mv), want, len(after), m+1)
				}
			})
		}
	}
}

// TestPlanOnLeaveMovesOnlyTheLeaversSlots: when a member leaves, its slots move and no other.
func TestPlanOnLeaveMovesOnlyTheLeaversSlots(t *testing.T) {
	topics := map[string][]int32{"orders": partitions(24), "payments": partitions(10), "clicks": partitions(64)}
	for _, slots := range []int{8, 16, 64} {
		for m := 2; m <= 8; m++ {
			for leaver := range m {
				rng := rand.New(rand.NewPCG(uint64(slots), uint64(m)))
				ids := memberIDs(rng, m)
				g := newGroup(t, slots, topicNames(topics), ids...)
				before := owners(t, g.rebalance(topics), slots)
				g.leave(ids[leaver])
				plan := g.rebalance(topics)
				after := owners(t, plan, slots)
				checkBalanced(t, after, plan)
				for _, sl := range moved(before, after) {
					if before[sl] != ids[leaver] {
						t.Errorf("slots=%d members=%d: %s left, yet slot %d moved from %s to %s", slots, m, ids[leaver], sl, before[sl], after[sl])
					}
				}
				for sl, o := range before {
					if o == ids[leaver] && after[sl] == o {
						t.Errorf("slot %d is still with %s, who left", sl, o)
					}
				}
			}
		}
	}
}

// TestPlanUnderChurnMovesNoMoreThanBalanceNeeds runs a random sequence of joins and leaves; at
// each step the plan stays whole and balanced, and the number of slots that move is the least a
// balanced plan allows: the total by which previous owners exceed their new targets.
func TestPlanUnderChurnMovesNoMoreThanBalanceNeeds(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	topics := map[string][]int32{"orders": partitions(24), "payments": partitions(7)}
	const slots = 16
	g := newGroup(t, slots, topicNames(topics), "member-a")
	before := owners(t, g.rebalance(topics), slots)
	for step := range 200 {
		if ids := slices.Sorted(maps.Keys(g.members)); len(ids) > 1 && (len(ids) == 8 || rng.IntN(2) == 0) {
			g.leave(ids[rng.IntN(len(ids))])
		} else {
			g.join(fmt.Sprintf("member-%d", step), topicNames(topics)...)
		}
		plan := g.rebalance(topics)
		after := owners(t, plan, slots)
		checkBalanced(t, after, plan)
		// The least a balanced plan can move: remaining members keep at most ⌊n/m⌋, or ⌈n/m⌉ for
		// the n mod m that owned the most.
		n, m := len(after), len(g.members)
		var kept []int
		for id, c := range slotCounts(before, plan) {
			if _, ok := g.members[id]; ok {
				kept = append(kept, c)
			}
		}
		slices.Sort(kept)
		slices.Reverse(kept)
		keepable := 0
		for i, c := range kept {
			target := n / m
			if i < n%m {
				target++
			}
			keepable += min(c, target)
		}
		if got, want := len(before)-len(moved(before, after))-lost(before, after), keepable; got != want {
			t.Fatalf("step %d: %d slots kept their owner, the most possible is %d", step, got, want)
		}
		before = after
	}
}

// lost counts slots owned before that no plan entry holds after (none here: topics do not shrink).
func lost(before, after map[int]string) int {
	n := 0
	for sl := range before {
		if _, ok := after[sl]; !ok {
			n++
		}
	}
	return n
}

func TestPlanIsDeterministic(t *testing.T) {
	topics := map[string][]int32{"orders": partitions(24), "payments": partitions(10), "clicks": partitions(5)}
	g := newGroup(t, 16, topicNames(topics), "c", "a", "b")
	g.rebalance(topics)
	g.join("d", topicNames(topics)...)
	first, _ := g.strategy.Plan(g.members, topics)
	for i := range 50 {
		// Same content, other map and slice orders.
		shuffled := make(map[string][]int32)
		for _, tp := range slices.Backward(topicNames(topics)) {
			ps := slices.Clone(topics[tp])
			slices.Reverse(ps)
			shuffled[tp] = ps
		}
		members := make(map[string]sarama.ConsumerGroupMemberMetadata)
		for id, meta := range g.members {
			meta.Topics = slices.Clone(meta.Topics)
			slices.Reverse(meta.Topics)
			members[id] = meta
		}
		again, _ := g.strategy.Plan(members, shuffled)
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("plan %d differs:\n%v\n%v", i, first, again)
		}
	}
}

// TestPlanGivesNewPartitionsToTheirSlotsOwner: partitions added to a topic join their slot,
// held by the member that held it, and nothing else moves.
func TestPlanGivesNewPartitionsToTheirSlotsOwner(t *testing.T) {
	const slots = 8
	g := newGroup(t, slots, []string{"orders", "payments"}, "a", "b", "c")
	before := g.rebalance(map[string][]int32{"orders": partitions(24), "payments": partitions(8)})
	slotOwner := owners(t, before, slots)
	grown := map[string][]int32{"orders": partitions(40), "payments": partitions(13)}
	after := g.rebalance(grown)
	owners(t, after, slots)
	for id, ts := range after {
		for tp, ps := range ts {
			for _, p := range ps {
				if want := slotOwner[Of(tp, p, slots)]; want != id {
					t.Errorf("%s/%d (slot %d) went to %s, want its slot's owner %s", tp, p, Of(tp, p, slots), id, want)
				}
			}
		}
	}
	for id, ts := range before {
		for tp, ps := range ts {
			if !containsAll(after[id][tp], ps) {
				t.Errorf("member %s lost partitions of %s: had %v, has %v", id, tp, ps, after[id][tp])
			}
		}
	}
}

func containsAll(have, want []int32) bool {
	for _, p := range want {
		if !slices.Contains(have, p) {
			return false
		}
	}
	return true
}

// TestPlanLetsTheNewerGenerationWinAConflictingClaim: a member cut off in an old generation
// still claims a slot that a later generation gave to another; the later claim wins.
func TestPlanLetsTheNewerGenerationWinAConflictingClaim(t *testing.T) {
	const slots = 4
	topics := map[string][]int32{"orders": partitions(4)}
	s, _ := NewStrategy(Config{Slots: slots})
	// Both orders of member ids, so neither "first claim wins" nor "last claim wins" passes.
	for _, ids := range [][2]string{{"a", "z"}, {"z", "a"}} {
		stale, fresh := ids[0], ids[1]
		members := map[string]sarama.ConsumerGroupMemberMetadata{
			// stale (generation 3) and fresh (generation 9) both claim slots 0 and 1; fresh
			// also owns 2.
			stale: {Topics: []string{"orders"}, UserData: encodeUserData(slots, 3, []int{0, 1})},
			fresh: {Topics: []string{"orders"}, UserData: encodeUserData(slots, 9, []int{0, 1, 2})},
		}
		plan, _ := s.Plan(members, topics)
		owner := owners(t, plan, slots)
		// fresh keeps 2 of its 3 (its target), the lowest; stale, with no valid claim, gets the
		// other two.
		if got := slotCounts(owner, plan); got[stale] != 2 || got[fresh] != 2 {
			t.Fatalf("slot counts %v, want 2 each", got)
		}
		if owner[0] != fresh || owner[1] != fresh {
			t.Errorf("slots 0 and 1 went to %s and %s, want %s (generation 9) to keep both", owner[0], owner[1], fresh)
		}
	}
}

// TestPlanGivesASlotOnlyToMembersSubscribedToAllItsTopics: with unlike subscriptions, a slot
// goes whole to a member subscribed to every topic it holds partitions of.
func TestPlanGivesASlotOnlyToMembersSubscribedToAllItsTopics(t *testing.T) {
	const slots = 8
	topics := map[string][]int32{"orders": partitions(16), "payments": partitions(4)}
	s, _ := NewStrategy(Config{Slots: slots})
	members := map[string]sarama.ConsumerGroupMemberMetadata{
		"both-1":      {Topics: []string{"orders", "payments"}},
		"both-2":      {Topics: []string{"payments", "orders"}},
		"orders-only": {Topics: []string{"orders"}},
	}
	plan, _ := s.Plan(members, topics)
	checkComplete(t, plan, members, topics)
	owner := owners(t, plan, slots)
	paymentSlots := make(map[int]bool)
	for _, p := range topics["payments"] {
		paymentSlots[Of("payments", p, slots)] = true
	}
	for sl := range paymentSlots {
		if owner[sl] == "orders-only" {
			t.Errorf("slot %d holds payments partitions but went to orders-only", sl)
		}
	}
	if got := slotCounts(owner, plan)["orders-only"]; got == 0 {
		t.Errorf("orders-only got no slots, want the orders-only slots shared with it")
	}
}

// TestPlanSplitsASlotNoMemberCanTakeWhole: when no member subscribes to all of a slot's topics,
// the plan still assigns every partition and WholeSlots reports the split.
func TestPlanSplitsASlotNoMemberCanTakeWhole(t *testing.T) {
	const slots = 1 // one slot: it holds both topics
	topics := map[string][]int32{"orders": partitions(3), "payments": partitions(2)}
	s, _ := NewStrategy(Config{Slots: slots})
	members := map[string]sarama.ConsumerGroupMemberMetadata{
		"a": {Topics: []string{"orders"}},
		"b": {Topics: []string{"payments"}},
	}
	plan, err := s.Plan(members, topics)
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, plan, members, topics)
	err = WholeSlots(plan, slots)
	var split *SplitSlotError
	if !errors.As(err, &split) {
		t.Fatalf("WholeSlots = %v, want a *SplitSlotError", err)
	}
	if split.Slot != 0 || !slices.Equal(split.Members, []string{"a", "b"}) {
		t.Errorf("split = %+v, want slot 0 between a and b", split)
	}
}

// TestPlanWithUnlikeSubscriptionsSplitsOnlySlotsNoMemberCanTakeWhole is a property test over
// random subscriptions: every subscribed partition is assigned once, to a subscriber, and a slot
// is split only when no member subscribes to all of its topics.
func TestPlanWithUnlikeSubscriptionsSplitsOnlySlotsNoMemberCanTakeWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260301, 2))
	for range 500 {
		slots := []int{1, 2, 8, 16}[rng.IntN(4)]
		topics := randomTopics(rng)
		names := topicNames(topics)
		g := newGroup(t, slots, nil)
		for _, id := range memberIDs(rng, 1+rng.IntN(8)) {
			var subs []string
			for _, tp := range names {
				if rng.IntN(3) > 0 {
					subs = append(subs, tp)
				}
			}
			g.join(id, subs...)
		}
		g.rebalance(topics) // a history, then a plan on it
		plan := g.rebalance(topics)
		canSplit := make(map[int]bool)
		slotTopics := make(map[int]map[string]bool)
		subscribed := make(map[string]bool)
		for _, meta := range g.members {
			for _, tp := range meta.Topics {
				subscribed[tp] = true
			}
		}
		for tp, ps := range topics {
			if !subscribed[tp] {
				continue // nobody's: left out of the plan
			}
			for _, p := range ps {
				sl := Of(tp, p, slots)
				if slotTopics[sl] == nil {
					slotTopics[sl] = make(map[string]bool)
				}
				slotTopics[sl][tp] = true
			}
		}
		for sl, ts := range slotTopics {
			canSplit[sl] = true
			for _, meta := range g.members {
				if all(ts, meta.Topics) {
					canSplit[sl] = false
				}
			}
		}
		var split *SplitSlotError
		for _, e := range unwrapAll(WholeSlots(plan, slots)) {
			if errors.As(e, &split) && !canSplit[split.Slot] {
				t.Fatalf("slot %d is split (%v), yet some member subscribes to all its topics %v",
					split.Slot, split.Members, slices.Sorted(maps.Keys(slotTopics[split.Slot])))
			}
		}
	}
}

// all reports whether every topic of ts is in subs.
func all(ts map[string]bool, subs []string) bool {
	for tp := range ts {
		if !slices.Contains(subs, tp) {
			return false
		}
	}
	return true
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func partitions(n int32) []int32 {
	ps := make([]int32, n)
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps
}
