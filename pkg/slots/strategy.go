package slots

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
)

// StrategyName is the name of the assignment algorithm. The group protocol name a Strategy
// announces is StrategyName + "/" + the slot count (Strategy.Name).
const StrategyName = "kmirror-slots-v1"

// ErrSlotsOutOfRange is wrapped by Config.Validate when Config.Slots is outside 1..MaxSlots.
var ErrSlotsOutOfRange = errors.New("slot count out of range")

// Config configures a Strategy.
type Config struct {
	// Slots is the number of slots the source partitions are hashed into (see Of), and so the
	// number of transactional ids on the target. Required, 1..MaxSlots; no default, because it
	// is fixed for the life of a mirror: every member must use the same value (the group refuses
	// a member with another one, see Strategy.Name), and changing it re-homes partitions to
	// other transactional ids and other stored positions. More slots than members lets the
	// group spread evenly; a few per expected member is plenty (e.g. 8 to 64).
	Slots int
}

// Validate reports a slot count Of and the strategy cannot use.
func (c Config) Validate() error {
	if c.Slots < 1 || c.Slots > MaxSlots {
		return fmt.Errorf("slots: Slots = %d, want 1..%d (the number of transactional ids; fixed for a mirror's life): %w",
			c.Slots, MaxSlots, ErrSlotsOutOfRange)
	}
	return nil
}

// Strategy is a sarama.BalanceStrategy that assigns partitions to a consumer group's members by
// slot: every slot goes whole to one member (when some member subscribes to all of its topics),
// members' slot counts differ by at most one (when they subscribe alike), and a member keeps the
// slots it owned as far as balance allows. It uses the eager rebalance protocol (every member gives up everything before
// a new plan). See the package doc for the rules and why they matter.
//
// A Strategy holds no state between calls: the previous owners come from the members' user data
// in each Plan. It is safe for concurrent use and may be shared by several consumer groups.
type Strategy struct {
	slots int
	name  string
}

var _ sarama.BalanceStrategy = (*Strategy)(nil)

// NewStrategy returns the strategy for cfg.Slots slots.
func NewStrategy(cfg Config) (*Strategy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new slot strategy: %w", err)
	}
	return &Strategy{slots: cfg.Slots, name: StrategyName + "/" + strconv.Itoa(cfg.Slots)}, nil
}

// Slots returns the strategy's slot count.
func (s *Strategy) Slots() int { return s.slots }

// Name returns the group protocol name, e.g. "kmirror-slots-v1/8". It carries the slot count
// because the coordinator only forms a group whose members share a protocol name: a member
// started with another slot count (which would derive other slots, so other transactional ids,
// for the same partitions) is refused with INCONSISTENT_GROUP_PROTOCOL instead of joining a
// group whose fencing it would silently break.
func (s *Strategy) Name() string { return s.name }

// Plan implements sarama.BalanceStrategy: it assigns every partition of every topic that some
// member subscribes to, by slot. Partitions of topics no member subscribes to are left out, as
// sarama's own strategies do. The plan holds an entry (maybe empty) for every member, so every
// member is handed user data (AssignmentData) saying it owns what it was given.
func (s *Strategy) Plan(members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) (sarama.BalanceStrategyPlan, error) {
	return plan(s.slots, members, topics), nil
}

// AssignmentData implements sarama.BalanceStrategy: it records the slots of the member's
// assignment and the generation, for the leader of the next generation to read back from the
// member's subscription (sarama echoes assignment user data there).
func (s *Strategy) AssignmentData(_ string, topics map[string][]int32, generationID int32) ([]byte, error) {
	return encodeUserData(s.slots, generationID, slotsOf(topics, s.slots)), nil
}

// SplitSlotError reports a slot whose partitions a plan gives to more than one member.
type SplitSlotError struct {
	Slot    int
	Members []string // sorted
}

func (e *SplitSlotError) Error() string {
	return fmt.Sprintf("slot %d is split between members %s", e.Slot, strings.Join(e.Members, ", "))
}

// WholeSlots returns nil when plan gives every slot's partitions to one member, and otherwise a
// *SplitSlotError for each split slot (joined, lowest slot first; errors.As finds the lowest).
// A plan from Strategy.Plan is split only when no member subscribes to all the topics of a slot;
// a caller that relies on slot fencing (transactional writes) must not run on such a plan.
func WholeSlots(plan sarama.BalanceStrategyPlan, slots int) error {
	if slots < 1 {
		return fmt.Errorf("check plan for whole slots: slots = %d, want ≥ 1: %w", slots, ErrSlotsOutOfRange)
	}
	holders := make(map[int][]string)
	for member, topics := range plan {
		for topic, partitions := range topics {
			for _, p := range partitions {
				sl := Of(topic, p, slots)
				if !slices.Contains(holders[sl], member) {
					holders[sl] = append(holders[sl], member)
				}
			}
		}
	}
	var split []int
	for sl, ms := range holders {
		if len(ms) > 1 {
			split = append(split, sl)
		}
	}
	slices.Sort(split)
	errs := make([]error, 0, len(split))
	for _, sl := range split {
		ms := holders[sl]
		slices.Sort(ms)
		errs = append(errs, &SplitSlotError{Slot: sl, Members: ms})
	}
	return errors.Join(errs...)
}
