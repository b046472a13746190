package group

import (
	"context"
	"errors"

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
	marks    offsets.Marks
}

var _ offsets.Committer = (*Committer)(nil)

// NewCommitter returns a committer for the member; metadata, when set, gives the metadata
// string stored with a topic's positions.
func (m *Member) NewCommitter(metadata func(topic string) string) *Committer {
	if metadata == nil {
		metadata = func(string) string { return "" }
	}
	return &Committer{m: m, metadata: metadata}
}

// Mark implements offsets.Committer.
func (c *Committer) Mark(topic string, partition int32, next int64) {
	c.marks.Mark(topic, partition, next)
}

// Pending reports how many partitions are marked and not yet committed.
func (c *Committer) Pending() int { return c.marks.Pending() }

// Commit implements offsets.Committer: it commits every pending position and returns nil or an
// *offsets.CommitError naming the partitions not committed. Those stay pending, except the ones
// not owned, which are dropped.
func (c *Committer) Commit(ctx context.Context) error {
	marks := c.marks.Snapshot()
	if len(marks) == 0 {
		return nil
	}
	offs := make([]Offset, len(marks))
	for i, mk := range marks {
		offs[i] = Offset{Topic: mk.Topic, Partition: mk.Partition, Offset: mk.Next, Metadata: c.metadata(mk.Topic)}
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
	done := marks[:0]
	for _, mk := range marks {
		if ferr, bad := failed[tp{mk.Topic, mk.Partition}]; !bad || errors.Is(ferr, ErrNotOwned) {
			done = append(done, mk)
		}
	}
	c.marks.Done(done...)
	return err
}
