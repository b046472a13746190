package slots

import (
	"strconv"
)

// MaxSlots is the largest slot count Config accepts. Every slot is one transactional id, so one
// transactional producer on the target for whichever member owns it, and its id travels in the
// owner's group metadata on every rebalance (4 bytes a slot): thousands are already more than a
// mirror can use.
const MaxSlots = 4096

// FNV-1a 64-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/). topicHash inlines the
// loop rather than use hash/fnv, whose Hash64 escapes to the heap on every call;
// TestTopicHashIsFNV1a64ThenFmix64 holds the two equal.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Of returns the slot, in [0, slots), of a source partition.
//
// The function is part of kmirror's durable format and must never change across kmirror
// versions: a slot names a transactional id on the target (TransactionalID) and the source
// positions stored there are kept per slot, so a mirror upgraded to a build that hashed
// differently would resume partitions from another slot's positions and fence nobody.
// TestOfGoldenTable pins it; a change there is a break of the format, not a test to update.
//
// The definition: h is FNV-1a 64 over the topic's bytes, then MurmurHash3's 64-bit finaliser
// (fmix64: without it h mod 2^k would depend on only the low k bits of each byte, so "Orders"
// and "orders" would always share a slot); the slot is
// (h mod slots + uint32(partition) mod slots) mod slots. The topic's hash picks where its
// partitions start and the partition number walks on from there, so consecutive partitions of one
// topic sit in consecutive slots: a topic's partitions spread over the slots as evenly as they
// can (each slot holds ⌊P/slots⌋ or ⌈P/slots⌉ of a P-partition topic), and different topics start
// at different slots. A partition added to a topic lands in a slot by the same rule, which
// existing partitions never change.
//
// slots must be at least 1 (Config.Validate checks it); Of treats anything smaller as one slot
// and returns 0, the one answer that keeps every slot whole.
func Of(topic string, partition int32, slots int) int {
	if slots < 1 {
		return 0
	}
	n := uint64(slots)
	return int((topicHash(topic)%n + uint64(uint32(partition))%n) % n)
}

// topicHash is fmix64(FNV-1a 64(topic)).
func topicHash(topic string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(topic); i++ {
		h ^= uint64(topic[i])
		h *= fnvPrime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb93e53fe1a85
	h ^= h >> 33
	return h
}

// TransactionalID returns the transactional id of a slot: "<prefix>-<slot>", e.g.
// TransactionalID("kmirror-europe-us", 7) is "kmirror-europe-us-7". The prefix names the mirror
// (one per source → target pair); the slot's owner opens its producer with this id, and so fences
// whichever producer used it before (see the package doc).
func TransactionalID(prefix string, slot int) string {
	return prefix + "-" + strconv.Itoa(slot)
}
