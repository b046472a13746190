package slots

import (
	"cmp"
	"maps"
	"slices"

	"github.com/IBM/sarama"
)

// plan computes Strategy.Plan. Everything it iterates is sorted first (member ids, topics,
// partitions, slots), so the same members, metadata and topics give the same plan.
//
// The steps, for the slots that hold at least one partition (an empty slot has nothing to write
// and needs no owner):
//
//  1. A slot is eligible for the members subscribed to every topic it holds partitions of. A
//     slot no member is eligible for cannot be whole; it is split last (step 5).
//  2. Its previous owner is the member whose user data names it with the highest generation
//     (ties: the lowest member id); a stale claim from a member that was cut off loses to the
//     generation that replaced it.
//  3. Targets: with n whole slots over the m members eligible for any, every member's target is
//     ⌊n/m⌋, and the n mod m members that kept the most (ties: lowest id) get one more. A member
//     keeps up to its target of its previous, still eligible slots (the lowest first).
//  4. The rest (new slots, slots of members gone, slots over a target) go, most constrained first,
//     to an eligible member still under its target, the least loaded (ties: lowest id).
//     When all members subscribe alike that fills every target exactly: slot counts differ by at
//     most one, and the slots that move are only those a balanced plan must move (a joining
//     member's share; a leaving member's slots; nothing else). With unlike subscriptions a
//     target may be out of reach; then any slot whose owner has two more than an eligible member
//     moves to that member, until none does (this terminates: every move lowers the sum of
//     squared loads).
//  5. A split slot gives each of its topics' partitions to the slot's previous owner if it
//     subscribes to the topic, else to the least loaded subscriber (ties: lowest id). The plan
//     is returned anyway; WholeSlots reports it.
func plan(slots int, members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) sarama.BalanceStrategyPlan {
	ids := slices.Sorted(maps.Keys(members))

	// Who subscribes to what, among the topics there are partitions for.
	subscribers := make(map[string][]string)
	subscribes := make(map[string]map[string]bool, len(ids))
	for _, id := range ids {
		subscribes[id] = make(map[string]bool)
		for _, t := range members[id].Topics {
			if _, ok := topics[t]; !ok || subscribes[id][t] {
				continue
			}
			subscribes[id][t] = true
			subscribers[t] = append(subscribers[t], id)
		}
	}

	// What each slot holds, topic by topic.
	type part struct {
		topic     string
		partition int32
	}
	content := make([][]part, slots)
	slotTopics := make([][]string, slots)
	for _, t := range slices.Sorted(maps.Keys(subscribers)) {
		ps := slices.Clone(topics[t])
		slices.Sort(ps)
		for _, p := range slices.Compact(ps) {
			sl := Of(t, p, slots)
			content[sl] = append(content[sl], part{t, p})
			if n := len(slotTopics[sl]); n == 0 || slotTopics[sl][n-1] != t {
				slotTopics[sl] = append(slotTopics[sl], t)
			}
		}
	}

	// Step 1: eligibility.
	eligible := make([][]string, slots)
	var whole, split []int
	for sl := range slots {
		if len(content[sl]) == 0 {
			continue
		}
		for _, id := range ids {
			if subscribesAll(subscribes[id], slotTopics[sl]) {
				eligible[sl] = append(eligible[sl], id)
			}
		}
		if len(eligible[sl]) == 0 {
			split = append(split, sl)
		} else {
			whole = append(whole, sl)
		}
	}

	// Step 2: previous owners.
	prevOwner := make([]string, slots)
	prevGen := make([]int32, slots)
	for _, id := range ids {
		gen, owned, ok := decodeUserData(members[id].UserData, slots)
		if !ok {
			continue
		}
		for _, sl := range owned {
			if prevOwner[sl] == "" || gen > prevGen[sl] {
				prevOwner[sl], prevGen[sl] = id, gen
			}
		}
	}

	owner := make([]string, slots)
	load := make(map[string]int, len(ids))
	assign := func(sl int, id string) {
		owner[sl] = id
		load[id]++
	}

	// Step 3: targets, and what each member keeps.
	var active []string
	for _, id := range ids {
		for _, sl := range whole {
			if slices.Contains(eligible[sl], id) {
				active = append(active, id)
				break
			}
		}
	}
	kept := make(map[string][]int, len(active))
	for _, sl := range whole {
		if o := prevOwner[sl]; o != "" && slices.Contains(eligible[sl], o) {
			kept[o] = append(kept[o], sl)
		}
	}
	target := make(map[string]int, len(active))
	if len(active) > 0 {
		byKept := slices.Clone(active)
		slices.SortStableFunc(byKept, func(a, b string) int { return cmp.Compare(len(kept[b]), len(kept[a])) })
		q, r := len(whole)/len(active), len(whole)%len(active)
		for i, id := range byKept {
			target[id] = q
			if i < r {
				target[id]++
			}
		}
	}
	for _, id := range active {
		k := kept[id]
		k = k[:min(len(k), target[id])]
		for _, sl := range k {
			assign(sl, id)
		}
	}

	// Step 4: the rest, most constrained first.
	var pool []int
	for _, sl := range whole {
		if owner[sl] == "" {
			pool = append(pool, sl)
		}
	}
	slices.SortStableFunc(pool, func(a, b int) int { return cmp.Compare(len(eligible[a]), len(eligible[b])) })
	for _, sl := range pool {
		best := ""
		for _, id := range eligible[sl] {
			if best == "" || better(id, best, target, load) {
				best = id
			}
		}
		assign(sl, best)
	}
	for {
		moved := false
		for _, sl := range whole {
			from := owner[sl]
			to := leastLoaded(eligible[sl], load)
			if load[from] > load[to]+1 {
				load[from]--
				assign(sl, to)
				moved = true
			}
		}
		if !moved {
			break
		}
	}

	// Step 5: slots no member can take whole.
	pieces := make(map[int]map[string]string, len(split)) // slot → topic → member
	for _, sl := range split {
		pieces[sl] = make(map[string]string, len(slotTopics[sl]))
		for _, t := range slotTopics[sl] {
			to := prevOwner[sl]
			if to == "" || !subscribes[to][t] {
				to = leastLoaded(subscribers[t], load)
			}
			pieces[sl][t] = to
			load[to]++
		}
	}

	out := make(sarama.BalanceStrategyPlan, len(ids))
	for _, id := range ids {
		out[id] = make(map[string][]int32)
	}
	for sl := range slots {
		for _, p := range content[sl] {
			to := owner[sl]
			if to == "" {
				to = pieces[sl][p.topic]
			}
			out.Add(to, p.topic, p.partition)
		}
	}
	for _, ts := range out {
		for _, ps := range ts {
			slices.Sort(ps)
		}
	}
	return out
}

// subscribesAll reports whether a member's subscriptions include every topic in ts.
func subscribesAll(subscribed map[string]bool, ts []string) bool {
	for _, t := range ts {
		if !subscribed[t] {
			return false
		}
	}
	return true
}

// better reports whether member a should take a slot before member b (step 4): a member under
// its target before one that is not, then the less loaded, then the lower id.
func better(a, b string, target, load map[string]int) bool {
	aUnder, bUnder := load[a] < target[a], load[b] < target[b]
	if aUnder != bUnder {
		return aUnder
	}
	if load[a] != load[b] {
		return load[a] < load[b]
	}
	return a < b
}

// leastLoaded returns the member of ids (sorted, non-empty) with the lowest load, the first on
// ties.
func leastLoaded(ids []string, load map[string]int) string {
	best := ids[0]
	for _, id := range ids[1:] {
		if load[id] < load[best] {
			best = id
		}
	}
	return best
}
