package offsets

import "sync"

// Marks are the positions marked per partition and not yet committed: the latest mark of each
// partition, kept until a commit of that very position succeeds. A commit takes a Snapshot, sends
// it, and reports each position committed with Done; a partition marked further meanwhile stays
// pending with its newer position. Safe for concurrent use.
type Marks struct {
	mu      sync.Mutex
	pending map[topicPartition]int64
}

// Mark is one partition's marked position.
type Mark struct {
	Topic     string
	Partition int32
	Next      int64
}

// Mark records that every record of topic/partition before next is on the target.
func (m *Marks) Mark(topic string, partition int32, next int64) {
	m.mu.Lock()
	if m.pending == nil {
		m.pending = make(map[topicPartition]int64)
	}
	m.pending[topicPartition{topic, partition}] = next
	m.mu.Unlock()
}

// Pending reports how many partitions are marked and not yet committed.
func (m *Marks) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

// Snapshot returns every pending mark.
func (m *Marks) Snapshot() []Mark {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Mark, 0, len(m.pending))
	for tp, next := range m.pending {
		out = append(out, Mark{Topic: tp.topic, Partition: tp.partition, Next: next})
	}
	return out
}

// Done reports marks a commit settled (committed, or dropped for good): each leaves the pending
// set unless its partition was marked further meanwhile.
func (m *Marks) Done(marks ...Mark) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mk := range marks {
		tp := topicPartition{mk.Topic, mk.Partition}
		if next, ok := m.pending[tp]; ok && next == mk.Next {
			delete(m.pending, tp)
		}
	}
}
