package slots

import (
	"reflect"
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

// TestPlanReadsGarbageUserDataAsNoSlots: user data the strategy did not write for this slot
// count is read as owning nothing, so the plan is the one of a group without history.
func TestPlanReadsGarbageUserDataAsNoSlots(t *testing.T) {
	sticky, err := sarama.NewBalanceStrategySticky().AssignmentData("a", map[string][]int32{"orders": {0, 1, 2}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	valid := encodeUserData(8, 5, []int{1, 2, 5})
	garbage := map[string][]byte{
		"nil":                     nil,
		"empty":                   {},
		"sarama sticky":           sticky,
		"text":                    []byte("hello, kafka"),
		"truncated header":        valid[:10],
		"truncated slots":         valid[:len(valid)-2],
		"trailing bytes":          append(slices.Clone(valid), 0),
		"other slot count":        encodeUserData(16, 5, []int{1, 2, 5}),
		"older version":           append([]byte("KMSL\x00"), valid[5:]...),
		"slot out of range":       encodeUserData(8, 5, []int{1, 8}),
		"slots not ascending":     encodeUserData(8, 5, []int{5, 1}),
		"slot listed twice":       encodeUserData(8, 5, []int{1, 1}),
		"count beyond the buffer": append(valid[:13:13], 0xff, 0xff, 0xff, 0xff),
	}
	if _, owned, ok := decodeUserData(valid, 8); !ok || !slices.Equal(owned, []int{1, 2, 5}) {
		t.Fatalf("valid user data decodes to %v, %v", owned, ok)
	}
	topics := map[string][]int32{"orders": partitions(24)}
	s, _ := NewStrategy(Config{Slots: 8})
	fresh, _ := s.Plan(map[string]sarama.ConsumerGroupMemberMetadata{
		"a": {Topics: []string{"orders"}}, "b": {Topics: []string{"orders"}},
	}, topics)
	for name, ud := range garbage {
		if _, owned, ok := decodeUserData(ud, 8); ok {
			t.Errorf("%s: decodes as owning %v, want no slots", name, owned)
		}
		// b's garbage must not make it keep anything; a keeps what a fresh plan gives it.
		plan, err := s.Plan(map[string]sarama.ConsumerGroupMemberMetadata{
			"a": {Topics: []string{"orders"}}, "b": {Topics: []string{"orders"}, UserData: ud},
		}, topics)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(plan, fresh) {
			t.Errorf("%s: plan %v, want the fresh plan %v", name, plan, fresh)
		}
	}
}

// FuzzDecodeUserData: any bytes decode without panicking, and what decodes re-encodes to the
// same bytes.
func FuzzDecodeUserData(f *testing.F) {
	f.Add(encodeUserData(8, 1, []int{0, 3, 7}), 8)
	f.Add([]byte("KMSL\x01"), 8)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, b []byte, slots int) {
		if slots < 1 || slots > MaxSlots {
			return
		}
		gen, owned, ok := decodeUserData(b, slots)
		if !ok {
			return
		}
		if re := encodeUserData(slots, gen, owned); !slices.Equal(re, b) {
			t.Errorf("decoded %d %v from %x, re-encodes to %x", gen, owned, b, re)
		}
	})
}
