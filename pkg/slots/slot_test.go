package slots

import (
	"hash/fnv"
	"testing"
)

// TestOfGoldenTable pins Of. The expected slots were computed outside Go, from the definition in
// Of's doc comment. Never update this table to make it pass: transactional ids and stored
// positions on existing targets depend on these numbers, so a difference is a broken format.
func TestOfGoldenTable(t *testing.T) {
	golden := []struct {
		topic     string
		partition int32
		slot16    int
		slot64    int
	}{
		{"orders", 0, 9, 9},
		{"orders", 1, 10, 10},
		{"orders", 2, 11, 11},
		{"orders", 7, 0, 16},
		{"orders", 15, 8, 24},
		{"orders", 16, 9, 25},
		{"orders", 23, 0, 32},
		{"orders", 63, 8, 8},
		{"orders", 64, 9, 9},
		{"orders", 1000, 1, 49},
		{"Orders", 0, 4, 4},
		{"Orders", 5, 9, 9},
		{"payments", 0, 2, 50},
		{"payments", 1, 3, 51},
		{"payments", 15, 1, 1},
		{"payments", 16, 2, 2},
		{"payments", 255, 1, 49},
		{"clicks", 0, 9, 57},
		{"clicks", 3, 12, 60},
		{"clicks", 31, 8, 24},
		{"clicks", 32, 9, 25},
		{"europe.orders", 0, 15, 63},
		{"europe.orders", 11, 10, 10},
		{"europe.orders", 12, 11, 11},
		{"europe.orders", 47, 14, 46},
		{"__consumer_offsets", 0, 8, 56},
		{"__consumer_offsets", 49, 9, 41},
		{"a", 0, 0, 16},
		{"a", 1, 1, 17},
		{"", 0, 14, 14},
		{"orders", -1, 8, 8},
		{"orders", 2147483647, 8, 8},
	}
	for _, g := range golden {
		if got := Of(g.topic, g.partition, 16); got != g.slot16 {
			t.Errorf("Of(%q, %d, 16) = %d, golden %d", g.topic, g.partition, got, g.slot16)
		}
		if got := Of(g.topic, g.partition, 64); got != g.slot64 {
			t.Errorf("Of(%q, %d, 64) = %d, golden %d", g.topic, g.partition, got, g.slot64)
		}
	}
}

// TestTopicHashIsFNV1a64ThenFmix64 holds the inlined FNV-1a loop equal to hash/fnv's.
func TestTopicHashIsFNV1a64ThenFmix64(t *testing.T) {
	for _, topic := range []string{"", "a", "orders", "europe.orders", "__consumer_offsets", "ünïcödé"} {
		f := fnv.New64a()
		_, _ = f.Write([]byte(topic))
		h := f.Sum64()
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb93e53fe1a85
		h ^= h >> 33
		if got := topicHash(topic); got != h {
			t.Errorf("topicHash(%q) = %#x, want fmix64(fnv64a) = %#x", topic, got, h)
		}
	}
}

func TestOfSpreadsATopicEvenlyOverSlots(t *testing.T) {
	for _, tc := range []struct {
		partitions int32
		slots      int
	}{{24, 8}, {100, 16}, {7, 64}, {1000, 64}, {30, 7}} {
		count := make([]int, tc.slots)
		for p := range tc.partitions {
			count[Of("events", p, tc.slots)]++
		}
		lo, hi := int(tc.partitions)/tc.slots, (int(tc.partitions)+tc.slots-1)/tc.slots
		for sl, n := range count {
			if n < lo || n > hi {
				t.Errorf("%d partitions over %d slots: slot %d holds %d, want %d..%d", tc.partitions, tc.slots, sl, n, lo, hi)
			}
		}
	}
}

func TestOfStaysInRange(t *testing.T) {
	for _, slots := range []int{1, 2, 3, 16, 64, MaxSlots} {
		for _, p := range []int32{-2147483648, -1, 0, 1, 2147483647} {
			if got := Of("t", p, slots); got < 0 || got >= slots {
				t.Errorf("Of(t, %d, %d) = %d, out of range", p, slots, got)
			}
		}
	}
	if got := Of("t", 5, 0); got != 0 {
		t.Errorf("Of with 0 slots = %d, want 0 (one slot)", got)
	}
}

func TestOfDoesNotAllocate(t *testing.T) {
	topic := "europe.orders"
	if n := testing.AllocsPerRun(100, func() { _ = Of(topic, 3, 16) }); n != 0 {
		t.Errorf("Of allocates %v times per call, want 0", n)
	}
}

func TestTransactionalID(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		slot   int
		want   string
	}{
		{"kmirror-europe-us", 7, "kmirror-europe-us-7"},
		{"kmirror-europe-us", 0, "kmirror-europe-us-0"},
		{"m", 4095, "m-4095"},
	} {
		if got := TransactionalID(tc.prefix, tc.slot); got != tc.want {
			t.Errorf("TransactionalID(%q, %d) = %q, want %q", tc.prefix, tc.slot, got, tc.want)
		}
	}
}
