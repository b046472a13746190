package groups

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// ActionLastSynced: the source could not be read; the partition's offset on the target is what
// the group offset sync last committed there (or what the group's own consumers committed).
const ActionLastSynced = "last synced (source unreachable)"

// LastSynced reports what group holds on the target, for when the source cannot be read (the site
// is lost): each partition with a committed offset, at the offset the group offset sync (or the
// group's consumers on the target) last committed. Nothing is translated or committed.
func LastSynced(ctx context.Context, target sarama.ClusterAdmin, client sarama.Client, group string) (Report, error) {
	s := &Syncer{cfg: Config{Target: target, TargetClient: client}}
	r := Report{Group: group}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	var err error
	if r.TargetState, r.Active, err = s.targetState(ctx, group); err != nil {
		return r, err
	}
	resp, err := target.ListConsumerGroupOffsets(group, nil)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read committed offsets of target group %q: %w", group, err)
	}
	for topic, parts := range resp.Blocks {
		for p, b := range parts {
			if b == nil || b.Err != sarama.ErrNoError || b.Offset < 0 {
				continue
			}
			r.Partitions = append(r.Partitions, PartitionReport{
				Translation: offsetmap.Translation{Topic: topic, Partition: p, Source: -1, Target: b.Offset, Status: offsetmap.Unknown,
					Mirrored: -1, Behind: -1, Reason: "the source cannot be read: the offset on the target is the last one synced"},
				TargetTopic: topic, TargetCommitted: b.Offset, Action: ActionLastSynced,
			})
		}
	}
	sort.Slice(r.Partitions, func(i, j int) bool {
		a, b := r.Partitions[i], r.Partitions[j]
		return a.TargetTopic < b.TargetTopic || a.TargetTopic == b.TargetTopic && a.Partition < b.Partition
	})
	return r, nil
}
