package group

import (
	"fmt"
	"maps"
	"slices"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/slots"
)

// tp is one topic partition.
type tp struct {
	topic     string
	partition int32
}

// set returns ps as a set.
func (ps Partitions) set() map[tp]bool {
	s := make(map[tp]bool)
	for t, parts := range ps {
		for _, p := range parts {
			s[tp{t, p}] = true
		}
	}
	return s
}

// Len returns the number of partitions.
func (ps Partitions) Len() int {
	n := 0
	for _, parts := range ps {
		n += len(parts)
	}
	return n
}

// Clone returns a deep copy.
func (ps Partitions) Clone() Partitions {
	out := make(Partitions, len(ps))
	for t, parts := range ps {
		out[t] = slices.Clone(parts)
	}
	return out
}

// fromSet returns a set as Partitions, sorted.
func fromSet(s map[tp]bool) Partitions {
	out := make(Partitions)
	for x := range s {
		out[x.topic] = append(out[x.topic], x.partition)
	}
	for _, parts := range out {
		slices.Sort(parts)
	}
	return out
}

// diff returns what is in a and not in b.
func diff(a, b Partitions) Partitions {
	bs := b.set()
	out := make(map[tp]bool)
	for x := range a.set() {
		if !bs[x] {
			out[x] = true
		}
	}
	return fromSet(out)
}

// union returns what is in a or in b.
func union(a, b Partitions) Partitions {
	s := a.set()
	maps.Copy(s, b.set())
	return fromSet(s)
}

// subscription builds the member's JoinGroup metadata for the protocol of strategy s (the slot
// strategy, or the previous release's): its topics, what it owns (KIP-429 OwnedPartitions), and
// the user data s reads back for stickiness (the slots, or sarama's sticky data, with the
// generation). A member that owns nothing announces generation -1, so its metadata does not
// change with the generation when there is nothing to claim.
func subscription(s sarama.BalanceStrategy, memberID string, topics []string, owned Partitions, gen int32) (*sarama.ConsumerGroupMemberMetadata, error) {
	if owned.Len() == 0 {
		gen = -1
	}
	ud, err := s.AssignmentData(memberID, owned, gen)
	if err != nil {
		return nil, fmt.Errorf("%s user data of %d owned partitions: %w", s.Name(), owned.Len(), err)
	}
	meta := &sarama.ConsumerGroupMemberMetadata{Version: 1, Topics: slices.Clone(topics), UserData: ud}
	for _, t := range slices.Sorted(maps.Keys(owned)) {
		if len(owned[t]) > 0 {
			meta.OwnedPartitions = append(meta.OwnedPartitions, &sarama.OwnedPartition{Topic: t, Partitions: slices.Clone(owned[t])})
		}
	}
	return meta, nil
}

// planPrevious runs the previous release's strategy (an eager generation with members of that
// release in it): sarama's own plan, so that they decode and accept it. Every member gets an
// entry.
func planPrevious(s sarama.BalanceStrategy, members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) (sarama.BalanceStrategyPlan, error) {
	p, err := s.Plan(members, topics)
	if err != nil {
		return nil, fmt.Errorf("plan %d members over %d topics with %s: %w", len(members), len(topics), s.Name(), err)
	}
	if p == nil {
		p = make(sarama.BalanceStrategyPlan, len(members))
	}
	for id := range members {
		if p[id] == nil {
			p[id] = make(map[string][]int32)
		}
	}
	return p, nil
}

// plan runs the slot strategy over the members' subscriptions and, for the cooperative
// protocol, withholds what another member still owns (see withhold). Every member gets an entry.
func plan(s *slots.Strategy, cooperative bool, members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) (sarama.BalanceStrategyPlan, error) {
	p, err := s.Plan(members, topics)
	if err != nil {
		return nil, fmt.Errorf("plan %d members over %d topics: %w", len(members), len(topics), err)
	}
	for id := range members {
		if p[id] == nil {
			p[id] = make(map[string][]int32)
		}
	}
	if cooperative {
		withhold(p, members, s.Slots())
	}
	return p, nil
}

// withhold removes from the plan, for each member m, every partition x that
//   - another member announced it owns (it must revoke x first; m gets x in a later generation),
//   - or that m does not own itself while another member owns some partition of x's slot: a
//     slot moves whole, after its old owner gave all of it up, so two members never write one
//     slot's transactional id at once.
//
// A partition two members both claim (a stale claim) is withheld from both: each one's
// assignment lacks it, so each revokes it, and it is handed out once nobody claims it.
func withhold(p sarama.BalanceStrategyPlan, members map[string]sarama.ConsumerGroupMemberMetadata, nslots int) {
	claimers := make(map[tp][]string)
	slotClaimers := make(map[int][]string)
	for _, id := range slices.Sorted(maps.Keys(members)) {
		for _, op := range members[id].OwnedPartitions {
			if op == nil {
				continue
			}
			for _, part := range op.Partitions {
				x := tp{op.Topic, part}
				if !slices.Contains(claimers[x], id) {
					claimers[x] = append(claimers[x], id)
				}
				sl := slots.Of(op.Topic, part, nslots)
				if !slices.Contains(slotClaimers[sl], id) {
					slotClaimers[sl] = append(slotClaimers[sl], id)
				}
			}
		}
	}
	others := func(ids []string, self string) bool {
		return slices.ContainsFunc(ids, func(id string) bool { return id != self })
	}
	for id, topics := range p {
		for t, parts := range topics {
			kept := parts[:0:0]
			for _, part := range parts {
				x := tp{t, part}
				mine := slices.Contains(claimers[x], id)
				if others(claimers[x], id) || (!mine && others(slotClaimers[slots.Of(t, part, nslots)], id)) {
					continue
				}
				kept = append(kept, part)
			}
			if len(kept) == 0 {
				delete(topics, t)
				continue
			}
			topics[t] = kept
		}
	}
}
