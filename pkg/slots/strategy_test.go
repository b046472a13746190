package slots

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

func TestWholeSlotsReportsEverySplitSlot(t *testing.T) {
	const slots = 8
	whole := sarama.BalanceStrategyPlan{}
	split := sarama.BalanceStrategyPlan{}
	for p := range int32(16) {
		whole.Add(fmt.Sprintf("m%d", Of("t", p, slots)%3), "t", p)
		split.Add(fmt.Sprintf("m%d", p%3), "t", p)
	}
	if err := WholeSlots(whole, slots); err != nil {
		t.Errorf("whole plan: %v", err)
	}
	var got []int
	for _, e := range unwrapAll(WholeSlots(split, slots)) {
		var s *SplitSlotError
		if errors.As(e, &s) {
			got = append(got, s.Slot)
		}
	}
	if len(got) != slots || !slices.IsSorted(got) {
		t.Errorf("split slots reported %v, want all %d in order", got, slots)
	}
	if err := WholeSlots(whole, 0); !errors.Is(err, ErrSlotsOutOfRange) {
		t.Errorf("WholeSlots with 0 slots = %v, want ErrSlotsOutOfRange", err)
	}
}

func TestNewStrategyRejectsSlotCountsOutOfRange(t *testing.T) {
	for _, n := range []int{-1, 0, MaxSlots + 1} {
		if _, err := NewStrategy(Config{Slots: n}); !errors.Is(err, ErrSlotsOutOfRange) {
			t.Errorf("NewStrategy(Slots: %d) = %v, want ErrSlotsOutOfRange", n, err)
		}
	}
	for _, n := range []int{1, 8, MaxSlots} {
		if _, err := NewStrategy(Config{Slots: n}); err != nil {
			t.Errorf("NewStrategy(Slots: %d) = %v", n, err)
		}
	}
}

func TestNameCarriesTheSlotCount(t *testing.T) {
	s, _ := NewStrategy(Config{Slots: 8})
	if s.Name() != "kmirror-slots-v1/8" {
		t.Errorf("Name() = %q, want kmirror-slots-v1/8", s.Name())
	}
}
