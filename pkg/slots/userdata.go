package slots

import (
	"encoding/binary"
	"slices"
)

// The assignment user data a member is handed with its assignment, and that sarama echoes back
// as the member's subscription user data on its next join, is how the leader of the next
// generation learns who owned which slot. Its layout (big endian):
//
//	"KMSL"        4 bytes, magic
//	version       1 byte, userDataVersion
//	slots         uint32, the slot count the owner's assignment was planned with
//	generation    int32, the group generation of the assignment
//	count         uint32, number of slot ids that follow
//	slot × count  uint32 each, strictly ascending, each < slots
//
// decodeUserData accepts nothing else: a member whose user data is empty, someone else's
// (another strategy's, the static Consumer.Group.Member.UserData), of another version or of
// another slot count, truncated or padded, is read as owning no slots. That costs stickiness for
// one rebalance, never correctness: the plan is whole and balanced whatever the user data says.
const (
	userDataMagic   = "KMSL"
	userDataVersion = 1
	userDataHeader  = len(userDataMagic) + 1 + 4 + 4 + 4
)

// encodeUserData serialises the slots owned (ascending, unique) in a generation.
func encodeUserData(slots int, generation int32, owned []int) []byte {
	b := make([]byte, 0, userDataHeader+4*len(owned))
	b = append(b, userDataMagic...)
	b = append(b, userDataVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(slots))
	b = binary.BigEndian.AppendUint32(b, uint32(generation))
	b = binary.BigEndian.AppendUint32(b, uint32(len(owned)))
	for _, s := range owned {
		b = binary.BigEndian.AppendUint32(b, uint32(s))
	}
	return b
}

// decodeUserData returns the generation and slots recorded in b, or ok=false when b is not user
// data this strategy wrote for the same slot count.
func decodeUserData(b []byte, slots int) (generation int32, owned []int, ok bool) {
	if len(b) < userDataHeader || string(b[:4]) != userDataMagic || b[4] != userDataVersion {
		return 0, nil, false
	}
	if binary.BigEndian.Uint32(b[5:9]) != uint32(slots) {
		return 0, nil, false
	}
	generation = int32(binary.BigEndian.Uint32(b[9:13]))
	count := uint64(binary.BigEndian.Uint32(b[13:17]))
	body := b[userDataHeader:]
	if uint64(len(body)) != 4*count {
		return 0, nil, false
	}
	owned = make([]int, 0, count)
	for i := 0; i < len(body); i += 4 {
		s := uint64(binary.BigEndian.Uint32(body[i:]))
		if s >= uint64(slots) || (len(owned) > 0 && int(s) <= owned[len(owned)-1]) {
			return 0, nil, false
		}
		owned = append(owned, int(s))
	}
	return generation, owned, true
}

// slotsOf returns the slots (ascending, unique) that an assignment's partitions belong to.
func slotsOf(topics map[string][]int32, slots int) []int {
	var owned []int
	for topic, partitions := range topics {
		for _, p := range partitions {
			owned = append(owned, Of(topic, p, slots))
		}
	}
	slices.Sort(owned)
	return slices.Compact(owned)
}
