package group

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"

	"github.com/kmirror/kmirror/pkg/offsets"
)

// Offset is a position to commit: the next offset to read of a partition, with the metadata
// string stored with it (pkg/source stores the topic id there).
type Offset struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
}

// Committed is a committed position: Offset -1 when the group has none for the partition.
type Committed struct {
	Offset   int64
	Metadata string
}

// ErrNotOwned is a partition's error in a *offsets.CommitError when the member does not own the
// partition (any more): committing it could move back the position its new owner committed.
var ErrNotOwned = errors.New("partition not owned by this member")

// commitChunk bounds the partitions of one OffsetCommit request, as pkg/offsets does: the
// coordinator writes a request as one batch, refused whole over 1 MiB.
const commitChunk = 1000

// Commit commits positions under the member's current generation, for partitions it owns (a
// Handler.Revoked may commit the partitions it revokes: they are owned until it returns). It
// returns nil or an *offsets.CommitError naming every partition not committed and why
// (ErrNotOwned, a coordinator error such as REBALANCE_IN_PROGRESS during a rebalance, or the
// request's error); the caller commits them again later. The request itself takes no context:
// ctx is checked before each request.
func (m *Member) Commit(ctx context.Context, offs []Offset) error {
	m.mu.Lock()
	gen, owned := m.gen, m.owned.set()
	m.mu.Unlock()

	var failed []offsets.PartitionError
	fail := func(o Offset, err error) {
		failed = append(failed, offsets.PartitionError{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Err: err})
	}
	var send []Offset
	for _, o := range offs {
		if !owned[tp{o.Topic, o.Partition}] || gen.ID < 0 {
			fail(o, ErrNotOwned)
			continue
		}
		send = append(send, o)
	}
	for chunk := range slices.Chunk(send, commitChunk) {
		if err := ctx.Err(); err != nil {
			for _, o := range chunk {
				fail(o, err)
			}
			continue
		}
		req := sarama.NewOffsetCommitRequest(m.cfg.Client.Config(), m.cfg.Group)
		req.ConsumerID, req.ConsumerGroupGeneration = gen.MemberID, gen.ID
		if req.Version >= 7 {
			req.GroupInstanceId = m.instanceID()
		}
		for _, o := range chunk {
			// Leader epoch -1: unknown, so no consumer validates against it.
			req.AddBlockWithLeaderEpoch(o.Topic, o.Partition, o.Offset, -1, 0, o.Metadata)
		}
		var resp *sarama.OffsetCommitResponse
		b, err := m.cfg.Client.Coordinator(m.cfg.Group)
		if err == nil {
			resp, err = b.CommitOffset(req)
		}
		if err != nil && coordinatorMoved(err) {
			_ = m.cfg.Client.RefreshCoordinator(m.cfg.Group)
		}
		for _, o := range chunk {
			perr := err
			if perr == nil {
				switch kerr, ok := resp.Errors[o.Topic][o.Partition]; {
				case !ok:
					perr = sarama.ErrIncompleteResponse
				case !errors.Is(kerr, sarama.ErrNoError):
					perr = kerr
					if coordinatorMoved(kerr) {
						_ = m.cfg.Client.RefreshCoordinator(m.cfg.Group)
					}
				}
			}
			if perr != nil {
				fail(o, perr)
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b offsets.PartitionError) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return &offsets.CommitError{Partitions: failed}
}

// Fetch returns the group's committed positions of partitions (Offset -1 where none). It retries
// while the coordinator moves or loads (with backoff, until ctx is done); any other error is
// returned, naming the partition.
func (m *Member) Fetch(ctx context.Context, partitions Partitions) (map[string]map[int32]Committed, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = m.cfg.RetryBackoff, m.cfg.RetryBackoffMax
	bo.Reset()
	for {
		out, err := m.fetchOnce(partitions)
		if err == nil {
			return out, nil
		}
		if classify(err) != kindRetry {
			return nil, err
		}
		if coordinatorMoved(err) {
			_ = m.cfg.Client.RefreshCoordinator(m.cfg.Group)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(bo.NextBackOff()):
		}
	}
}

func (m *Member) fetchOnce(partitions Partitions) (map[string]map[int32]Committed, error) {
	req := sarama.NewOffsetFetchRequest(m.version, m.cfg.Group, map[string][]int32(partitions.Clone()))
	b, err := m.cfg.Client.Coordinator(m.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("find coordinator of group %q: %w", m.cfg.Group, err)
	}
	resp, err := b.FetchOffset(req)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %q: %w", m.cfg.Group, err)
	}
	gerr := resp.Err
	if resp.Version >= 8 && len(resp.Groups) > 0 {
		gerr = resp.Groups[0].Err
	}
	if !errors.Is(gerr, sarama.ErrNoError) {
		return nil, fmt.Errorf("fetch offsets of group %q: %w", m.cfg.Group, gerr)
	}
	out := make(map[string]map[int32]Committed, len(partitions))
	for _, t := range slices.Sorted(maps.Keys(partitions)) {
		out[t] = make(map[int32]Committed, len(partitions[t]))
		for _, p := range partitions[t] {
			blk := resp.GetBlock(t, p)
			if blk == nil {
				return nil, fmt.Errorf("fetch offsets of group %q: no answer for %s/%d: %w", m.cfg.Group, t, p, sarama.ErrIncompleteResponse)
			}
			if !errors.Is(blk.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("fetch offset of group %q for %s/%d: %w", m.cfg.Group, t, p, blk.Err)
			}
			out[t][p] = Committed{Offset: blk.Offset, Metadata: blk.Metadata}
		}
	}
	return out, nil
}
