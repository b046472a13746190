package delivery

import (
	"context"
	"time"

	"github.com/IBM/sarama"
)

// Keeping positions fresh. The positions group has no members, so the broker expires its
// offsets offsets.retention.minutes (7 days by default) after their last commit: a partition
// idle that long would lose its position, and the next claim would have to recover it from
// elsewhere. So every producer remembers the last position of each partition it committed or
// read at the claim (keep, Keep), and Refresh commits again — in a transaction of the slot's
// producer, the only writer of its partitions' positions — those not committed for a while.
// Committing a position again never moves it: it is the one the last committed transaction
// ended at, or the one read at the claim after the slot's previous holders were fenced.

// keep notes the positions of a committed transaction. t.mu is held.
func (t *Txn) keep(offsets map[string][]*sarama.PartitionOffsetMetadata, at time.Time) {
	for topic, parts := range offsets {
		for _, pos := range parts {
			t.note(topic, *pos, at)
		}
	}
}

func (t *Txn) note(topic string, pos sarama.PartitionOffsetMetadata, at time.Time) {
	if t.last == nil {
		t.last = make(map[string]map[int32]*kept)
	}
	parts := t.last[topic]
	if parts == nil {
		parts = make(map[int32]*kept)
		t.last[topic] = parts
	}
	parts[pos.Partition] = &kept{pos: pos, at: at}
}

// Keep notes the position of partition of (target) topic read when it was claimed, as due for
// a refresh.
func (t *Txn) Keep(topic string, partition int32, offset int64, metadata string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.note(topic, sarama.PartitionOffsetMetadata{Partition: partition, Offset: offset, Metadata: &metadata}, time.Time{})
}

// Refresh commits again every position last committed before now-stale, in the open
// transaction when one is (its commit carries them), else in a transaction of its own. It
// returns how many positions it refreshed.
func (t *Txn) Refresh(ctx context.Context, now time.Time, stale time.Duration) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, nil
	}
	var due []*kept
	dueTopics := []string{}
	for topic, parts := range t.last {
		for p, k := range parts {
			if now.Sub(k.at) < stale {
				continue
			}
			if _, inTxn := t.next[topic][p]; inTxn {
				continue // the open transaction moves it
			}
			due = append(due, k)
			dueTopics = append(dueTopics, topic)
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	open := !t.began.IsZero()
	if err := t.begin(); err != nil {
		return 0, err
	}
	for i, k := range due {
		parts := t.next[dueTopics[i]]
		if parts == nil {
			parts = make(map[int32]*sarama.PartitionOffsetMetadata)
			t.next[dueTopics[i]] = parts
		}
		pos := k.pos
		parts[pos.Partition] = &pos
	}
	if open {
		return len(due), nil // the sender commits it when it is due
	}
	if _, err := t.commit(ctx, nil); err != nil {
		return 0, err
	}
	return len(due), nil
}
