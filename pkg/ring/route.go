package ring

import "hash/fnv"

// Route returns the worker, in [0, workers), that owns topic/partition. The mapping depends only
// on its arguments, so a partition's records always meet the same worker and keep their order,
// in every process of a scaled-out group.
func Route(topic string, partition int32, workers int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	p := uint32(partition)
	_, _ = h.Write([]byte{byte(p >> 24), byte(p >> 16), byte(p >> 8), byte(p)})
	return int(h.Sum32() % uint32(workers))
}
