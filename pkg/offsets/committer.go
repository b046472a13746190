package offsets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/IBM/sarama"
)

// Committer makes safe source positions durable. The at-least-once implementation commits them to
// the source cluster's consumer group; an exactly-once implementation would instead write them to
// the target cluster inside the producers' transaction.
type Committer interface {
	// Mark records that every record of topic/partition before offset next is on the target.
	Mark(topic string, partition int32, next int64)
	// Commit makes everything marked so far durable, and says which partitions it could not.
	// A partition that failed stays marked and is committed again by the next Commit.
	Commit(ctx context.Context) error
}

// GroupSession is the part of a consumer-group session the group committer needs
// (sarama.ConsumerGroupSession satisfies it).
type GroupSession interface {
	MemberID() string
	GenerationID() int32
	MarkOffset(topic string, partition int32, offset int64, metadata string)
}

// Coordinator sends an offset commit to the group's coordinator.
type Coordinator interface {
	CommitOffset(req *sarama.OffsetCommitRequest) (*sarama.OffsetCommitResponse, error)
}

// PartitionError is one partition a commit did not reach.
type PartitionError struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

// CommitError says which partitions a commit failed for, and why.
type CommitError struct {
	// Partitions lists every partition whose offset was not committed.
	Partitions []PartitionError
}

func (e *CommitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "commit offsets: %d partitions not committed:", len(e.Partitions))
	for i, p := range e.Partitions {
		if i == 10 {
			fmt.Fprintf(&b, " and %d more", len(e.Partitions)-i)
			break
		}
		fmt.Fprintf(&b, " %s/%d@%d (%v)", p.Topic, p.Partition, p.Offset, p.Err)
	}
	return b.String()
}

// Unwrap returns the distinct causes, so errors.Is finds a Kafka error code among them.
func (e *CommitError) Unwrap() []error {
	var out []error
	for _, p := range e.Partitions {
		if !slices.ContainsFunc(out, func(e error) bool { return errors.Is(e, p.Err) }) {
			out = append(out, p.Err)
		}
	}
	return out
}

// GroupCommitter commits to the source cluster's consumer group with OffsetCommit requests of its
// own, so that it learns, partition by partition, whether each commit succeeded (sarama's
// ConsumerGroupSession.Commit returns nothing, hides some failures and reports the others on the
// group's error channel, where they cannot be tied to a commit).
//
// Every marked offset is also marked on the sarama session: sarama flushes the session's marks
// when the session closes, and a session mark left behind (the position a claim started from)
// would otherwise be flushed then and move the group backwards.
type GroupCommitter struct {
	session     GroupSession
	coordinator Coordinator
	group       string
	conf        *sarama.Config
	metadata    func(topic string) string
	marks       Marks
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewGroupCommitter returns a committer for one session of group. conf is the consumer's sarama
// configuration (for the protocol version); metadata, when set, gives the metadata string stored
// with a topic's offsets.
func NewGroupCommitter(session GroupSession, coordinator Coordinator, group string, conf *sarama.Config, metadata func(topic string) string) *GroupCommitter {
	if metadata == nil {
		metadata = func(string) string { return "" }
	}
	return &GroupCommitter{session: session, coordinator: coordinator, group: group, conf: conf, metadata: metadata}
}

// Mark implements Committer.
func (g *GroupCommitter) Mark(topic string, partition int32, next int64) {
	g.session.MarkOffset(topic, partition, next, g.metadata(topic))
	g.marks.Mark(topic, partition, next)
}

// Pending reports how many partitions are marked and not yet committed.
func (g *GroupCommitter) Pending() int { return g.marks.Pending() }

// commitChunk bounds the partitions of one OffsetCommit request. The group coordinator writes a
// request's offsets to __consumer_offsets as one batch, and a batch over that topic's maximum
// message size (1 MiB) is refused whole: Kafka 4.3 refused 10,000 partitions in one request with
// an unknown server error, every time, so nothing was ever committed.
const commitChunk = 1000

// Commit implements Committer. It sends OffsetCommit requests (of at most commitChunk
// partitions) for every pending partition and returns a *CommitError naming the partitions the coordinator did not accept (or all of them when
// the request itself failed).
func (g *GroupCommitter) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit offsets: %w", err)
	}
	batch := g.marks.Snapshot()
	if len(batch) == 0 {
		return nil
	}
	var failed []PartitionError
	for chunk := range slices.Chunk(batch, commitChunk) {
		req := sarama.NewOffsetCommitRequest(g.conf, g.group)
		req.ConsumerID = g.session.MemberID()
		req.ConsumerGroupGeneration = g.session.GenerationID()
		for _, mk := range chunk {
			// Leader epoch -1: unknown, so no consumer validates against it.
			req.AddBlockWithLeaderEpoch(mk.Topic, mk.Partition, mk.Next, -1, 0, g.metadata(mk.Topic))
		}
		resp, err := g.coordinator.CommitOffset(req)
		var done []Mark
		for _, mk := range chunk {
			perr := err
			if perr == nil {
				switch kerr, ok := resp.Errors[mk.Topic][mk.Partition]; {
				case !ok:
					perr = sarama.ErrIncompleteResponse
				case !errors.Is(kerr, sarama.ErrNoError):
					perr = kerr
				}
			}
			if perr != nil {
				failed = append(failed, PartitionError{Topic: mk.Topic, Partition: mk.Partition, Offset: mk.Next, Err: perr})
				continue
			}
			done = append(done, mk)
		}
		g.marks.Done(done...)
	}
	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool {
		if failed[i].Topic != failed[j].Topic {
			return failed[i].Topic < failed[j].Topic
		}
		return failed[i].Partition < failed[j].Partition
	})
	return &CommitError{Partitions: failed}
}

// ClientCoordinator finds a group's coordinator through a sarama client.
type ClientCoordinator struct {
	Client sarama.Client
	Group  string
}

// CommitOffset implements Coordinator. When the request fails, or a partition answers that the
// broker is not (or no longer) the coordinator, the coordinator is looked up again for the next
// commit.
func (c ClientCoordinator) CommitOffset(req *sarama.OffsetCommitRequest) (*sarama.OffsetCommitResponse, error) {
	b, err := c.Client.Coordinator(c.Group)
	if err != nil {
		return nil, fmt.Errorf("find coordinator of group %q: %w", c.Group, err)
	}
	resp, err := b.CommitOffset(req)
	if err != nil {
		_ = c.Client.RefreshCoordinator(c.Group)
		return nil, fmt.Errorf("send offset commit to coordinator %d of group %q: %w", b.ID(), c.Group, err)
	}
	for _, parts := range resp.Errors {
		for _, kerr := range parts {
			if errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer) || errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable) {
				_ = c.Client.RefreshCoordinator(c.Group)
				return resp, nil
			}
		}
	}
	return resp, nil
}
