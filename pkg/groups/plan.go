package groups

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// Actions Apply takes on a partition (PartitionReport.Action).
const (
	// ActionCommitted: the translated offset was committed on the target.
	ActionCommitted = "committed"
	// ActionUnchanged: the target group is already at the translated offset.
	ActionUnchanged = "unchanged"
	// ActionTargetAhead: the target group is past the translated offset and was not moved back
	// (Config.Force would move it).
	ActionTargetAhead = "target ahead"
	// ActionNotTranslatable: the translation is not Exact (see Status and Reason).
	ActionNotTranslatable = "not translatable"
	// ActionGroupActive: the group has members on the target; nothing was committed for it.
	ActionGroupActive = "group active on target"
	// ActionFailed: the coordinator refused the commit for this partition (Apply's error says why).
	ActionFailed = "commit failed"
)

// Target group states in which no consumer owns the group's offsets.
const (
	StateEmpty = "Empty"
	StateDead  = "Dead" // also: the group does not exist
)

// PartitionReport is one source partition of a group: its translation and the target's position.
type PartitionReport struct {
	// Translation names the source topic/partition and offset, the target offset, the status,
	// how far behind the mirror is and why a translation is not exact.
	offsetmap.Translation
	TargetTopic string `json:"target_topic"`
	// TargetCommitted is the target group's committed offset of TargetTopic/Partition (-1: none).
	TargetCommitted int64 `json:"target_committed"`
	// Action is what Apply did (one of the Action* constants); empty in a plan.
	Action string `json:"action,omitempty"`
}

// Report is a group's plan, or once applied what was done.
type Report struct {
	Group string `json:"group"`
	// TargetState is the target group's state (Empty, Stable, Dead for a group that does not
	// exist …) as its coordinator reports it.
	TargetState string `json:"target_state"`
	// Active says whether the target group has members (or is in a state only members cause):
	// its offsets are theirs, and nothing is committed.
	Active bool `json:"target_active"`
	// CommittedByOthers says that another client commits the target group's offsets without
	// joining it: a partition's committed offset changed since kmirror last wrote it (see
	// ActionCommittedByOthers). Nothing is committed for the group, unless Config.Force.
	CommittedByOthers bool              `json:"target_committed_by_others"`
	Partitions        []PartitionReport `json:"partitions"`

	// foreign: a partition's committed offset on the target was written by another client than
	// kmirror (when it was last read).
	foreign bool
}

// Committed counts the partitions Apply committed.
func (r Report) Committed() int {
	return r.count(func(p PartitionReport) bool { return p.Action == ActionCommitted })
}

// Untranslatable counts the partitions whose translation is not Exact.
func (r Report) Untranslatable() int {
	return r.count(func(p PartitionReport) bool { return !exact(p) })
}

func (r Report) count(f func(PartitionReport) bool) int {
	n := 0
	for _, p := range r.Partitions {
		if f(p) {
			n++
		}
	}
	return n
}

func exact(p PartitionReport) bool { return p.Status == offsetmap.Exact && p.Target >= 0 }

// Plan reads group's committed offsets on the source, translates those of mirrored topics (only
// topic, a source topic name, when not empty; only Owned partitions; only partitions with a
// committed offset) and reads the target group's state and committed offsets on the target
// topics. It changes nothing. Partitions are sorted by topic and partition.
func (s *Syncer) Plan(ctx context.Context, group, topic string) (Report, error) {
	if group == s.cfg.Own {
		return Report{}, fmt.Errorf("plan group %q: %w", group, ErrOwnGroup)
	}
	if topic != "" {
		if _, ok := s.cfg.Topics(topic); !ok {
			return Report{}, fmt.Errorf("plan group %q: topic %q is not mirrored", group, topic)
		}
	}
	if err := ctx.Err(); err != nil {
		return Report{}, fmt.Errorf("plan group %q: %w", group, err)
	}
	resp, err := s.cfg.Source.ListConsumerGroupOffsets(group, nil)
	if err != nil {
		return Report{}, fmt.Errorf("read committed offsets of source group %q: %w", group, err)
	}
	r := Report{Group: group, Partitions: []PartitionReport{}}
	for t, parts := range offsetBlocks(resp, group) {
		if topic != "" && t != topic {
			continue
		}
		target, mirrored := s.cfg.Topics(t)
		if !mirrored {
			continue
		}
		for p, b := range parts {
			switch {
			case errors.Is(b.Err, sarama.ErrUnknownTopicOrPartition):
				continue // deleted since it was committed
			case b.Err != sarama.ErrNoError:
				return Report{}, fmt.Errorf("read committed offset of source group %q on %s/%d: %w", group, t, p, b.Err)
			case b.Offset < 0 || (s.cfg.Owned != nil && !s.cfg.Owned(t, p)):
				continue
			}
			tr, err := s.cfg.Translate(ctx, t, p, b.Offset)
			if err != nil {
				return Report{}, fmt.Errorf("translate offset %d of group %q on %s/%d: %w", b.Offset, group, t, p, err)
			}
			tr.Topic, tr.Partition, tr.Source = t, p, b.Offset
			r.Partitions = append(r.Partitions, PartitionReport{Translation: tr, TargetTopic: target, TargetCommitted: -1})
		}
	}
	slices.SortFunc(r.Partitions, func(a, b PartitionReport) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	if err := s.readTarget(ctx, &r); err != nil {
		return Report{}, err
	}
	return r, nil
}

// offsetBlocks returns a fetch response's offsets, whichever version answered.
func offsetBlocks(resp *sarama.OffsetFetchResponse, group string) map[string]map[int32]*sarama.OffsetFetchResponseBlock {
	if resp.Version >= 8 {
		if g := resp.GetGroup(group); g != nil {
			return g.Blocks
		}
		return nil
	}
	return resp.Blocks
}

// readTarget fills r with the target group's state and its committed offsets of r's partitions.
func (s *Syncer) readTarget(ctx context.Context, r *Report) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read target group %q: %w", r.Group, err)
	}
	state, active, err := s.targetState(ctx, r.Group)
	if err != nil {
		return err
	}
	r.TargetState, r.Active = state, active
	if len(r.Partitions) == 0 {
		return nil
	}
	want := make(map[string][]int32)
	for _, p := range r.Partitions {
		want[p.TargetTopic] = append(want[p.TargetTopic], p.Partition)
	}
	resp, err := s.fetchTargetOffsets(ctx, r.Group, want)
	if err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
		return fmt.Errorf("read committed offsets of target group %q: %w", r.Group, err)
	}
	r.CommittedByOthers, r.foreign = false, false
	for i := range r.Partitions {
		p := &r.Partitions[i]
		p.TargetCommitted = -1
		if err != nil {
			continue // no group, no offsets
		}
		b := resp.GetBlock(p.TargetTopic, p.Partition)
		switch {
		case b == nil || errors.Is(b.Err, sarama.ErrUnknownTopicOrPartition):
		case b.Err != sarama.ErrNoError:
			return fmt.Errorf("read committed offset of target group %q on %s/%d: %w", r.Group, p.TargetTopic, p.Partition, b.Err)
		case b.Offset >= 0:
			p.TargetCommitted = b.Offset
			if s.written.seen(r.Group, p.TargetTopic, p.Partition, b.Offset, b.Metadata) {
				r.CommittedByOthers = true
			}
			r.foreign = r.foreign || !writtenByKmirror(b.Metadata)
		}
	}
	return nil
}

// targetState returns the target group's state and whether it is active: it has members, or is
// in a state other than Empty or Dead (which only members bring about).
//
// A KIP-848 consumer group is not a classic group: DescribeGroups answers Dead for it, whatever
// its members. When the target speaks Kafka 3.7 or later, a group that looks Dead or Empty is
// described again with ConsumerGroupDescribe. (The commit would be refused anyway, UNKNOWN_MEMBER_ID,
// which Apply reports the same way; this makes Plan say so before.)
//
// Both describes go to the coordinator through Config.TargetClient, which looks it up again while
// it is moving (toCoordinator).
func (s *Syncer) targetState(ctx context.Context, group string) (string, bool, error) {
	d, err := s.describeTarget(ctx, group)
	if err != nil {
		return "", false, fmt.Errorf("describe target group %q: %w", group, err)
	}
	state := d.State
	switch {
	case errors.Is(d.Err, sarama.ErrGroupIDNotFound):
		state = StateDead
	case d.Err != sarama.ErrNoError:
		return "", false, fmt.Errorf("describe target group %q: %w", group, d.Err)
	}
	if len(d.Members) > 0 || !quiet(state) {
		return state, true, nil
	}
	if !s.cfg.TargetClient.Config().Version.IsAtLeast(sarama.V3_7_0_0) {
		return state, false, nil
	}
	return s.nextGenState(ctx, group, state)
}

// quiet reports whether a group in state has no consumer (ConsumerGroupDescribe spells states in
// lower case on some versions).
func quiet(state string) bool {
	return strings.EqualFold(state, StateEmpty) || strings.EqualFold(state, StateDead)
}

// nextGenState describes group as a KIP-848 consumer group; a group that is not one keeps the
// classic state.
func (s *Syncer) nextGenState(ctx context.Context, group, classic string) (string, bool, error) {
	req := sarama.NewConsumerGroupDescribeRequest(s.cfg.TargetClient.Config().Version)
	req.GroupIDs = []string{group}
	var resp *sarama.ConsumerGroupDescribeResponse
	err := s.toCoordinator(ctx, group, func(b *sarama.Broker) error {
		r, err := b.ConsumerGroupDescribe(req)
		if errors.Is(err, sarama.ErrUnsupportedVersion) {
			return err // the broker has no KIP-848 groups
		}
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.ID(), err)
		}
		for _, g := range r.Groups {
			if g.GroupID == group && movingCoordinator(g.ErrorCode) {
				return g.ErrorCode
			}
		}
		resp = r
		return nil
	})
	if errors.Is(err, sarama.ErrUnsupportedVersion) {
		return classic, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("describe target consumer group %q: %w", group, err)
	}
	for _, g := range resp.Groups {
		if g.GroupID != group {
			continue
		}
		switch {
		case errors.Is(g.ErrorCode, sarama.ErrGroupIDNotFound):
			return classic, false, nil // a classic group, or none
		case g.ErrorCode != sarama.ErrNoError:
			return "", false, fmt.Errorf("describe target consumer group %q: %w", group, g.ErrorCode)
		}
		state := g.GroupState
		return state, len(g.Members) > 0 || !quiet(state), nil
	}
	return classic, false, nil
}
