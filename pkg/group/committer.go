package group

import (
	"context"
	"errors"
	"sync"

	"github.com/kmirror/kmirror/pkg/offsets"
)

// Committer is the offsets.Committer of a member: it keeps the latest position marked per
// partition and commits them with Member.Commit, under the member's current generation. It is
// what pkg/source's GroupCommitter is to a sarama session, without the session.
//
// A position marked for a partition the member no longer owns is dropped at the next Commit
// (reported with ErrNotOwned, never retried): the partition's new owner commits it now, and a
// late commit from here would move its position back.
type Committer struct {
	m        *Member
	metadata func(topic string) string

	mu      sync.Mutex
	pending map[tp]int64
}

var _ offsets.Committer = (*Committer)(nil)

// NewCommitter returns a committer for the member; metadata, when set, gives the metadata
// string stored with a topic's positions.
func (m *Member) NewCommitter(metadata func(topic string) string) *Committer {
	if metadata == nil {
		metadata = func(string) string { return "" }
	}
	return &Committer{m: m, metadata: metadata, pending: make(map[tp]int64)}
}

// Mark implements offsets.Committer.
func (c *Committer) Mark(topic string, partition int32, next int64) {
	c.mu.Lock()
	c.pending[tp{topic, partition}] = next
	c.mu.Unlock()
}

// Pending reports how many partitions are marked and not yet committed.
func (c *Committer) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Commit implements offsets.Committer: it commits every pending position and returns nil or an
// *offsets.CommitError naming the partitions not committed. Those stay pending, except the ones
// not owned, which are dropped.
func (c *Committer) Commit(ctx context.Context) error {
	c.mu.Lock()
	offs := make([]Offset, 0, len(c.pending))
	for x, next := range c.pending {
		offs = append(offs, Offset{Topic: x.topic, Partition: x.partition, Offset: next, Metadata: c.metadata(x.topic)})
	}
	c.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	err := c.m.Commit(ctx, offs)
	failed := make(map[tp]error)
	var ce *offsets.CommitError
	if errors.As(err, &ce) {
		for _, p := range ce.Partitions {
			failed[tp{p.Topic, p.Partition}] = p.Err
		}
	} else if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range offs {
		x := tp{o.Topic, o.Partition}
		ferr, bad := failed[x]
		if (!bad || errors.Is(ferr, ErrNotOwned)) && c.pending[x] == o.Offset { // not marked further meanwhile
			delete(c.pending, x)
		}
	}
	return err
}
