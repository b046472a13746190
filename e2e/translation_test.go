//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// How a consumer group fares when it moves from the source to the target: it reads the target
// from the offsets a mirror committed for it, and what it reads is held against what it had
// read on the source. Everything here uses franz-go only, none of kmirror's code.

// translationFigures says, for one group and topic, how the records a group read on the target
// stand against its source position.
type translationFigures struct {
	// Pending is how many source records lay at or after the group's source position.
	Pending int
	// Skipped: records at or after the source position the group never read on the target.
	Skipped int
	// Reread: copies of records before the source position (the group had read them) it read
	// again on the target.
	Reread int
	// Duplicates: further copies of records at or after the position (a mirror's at-least-once
	// re-copies), read more than once.
	Duplicates int
	// Foreign: records read that the source does not hold (aborted records, say), or holds in
	// another partition.
	Foreign int
}

func (f translationFigures) String() string {
	return fmt.Sprintf("%d skipped, %d re-read, %d duplicates (of %d pending), %d foreign",
		f.Skipped, f.Reread, f.Duplicates, f.Pending, f.Foreign)
}

func (f *translationFigures) add(g translationFigures) {
	f.Pending += g.Pending
	f.Skipped += g.Skipped
	f.Reread += g.Reread
	f.Duplicates += g.Duplicates
	f.Foreign += g.Foreign
}

// countTranslation compares the ids a group read on the target (by partition, in order) with the
// source: position holds the group's committed source offset per partition; a partition without
// one was never committed and the group, with an earliest reset, had read none of it.
func countTranslation(source sourceIndex, position map[int32]int64, read map[int32][]string) translationFigures {
	var f translationFigures
	times := map[string]int{}
	for p, ids := range read {
		for _, id := range ids {
			r, ok := source[id]
			switch {
			case !ok || r.partition != p:
				f.Foreign++
			case r.offset < startOf(position, p):
				f.Reread++
			default:
				times[id]++
			}
		}
	}
	for id, r := range source {
		if r.offset < startOf(position, r.partition) {
			continue
		}
		f.Pending++
		switch n := times[id]; {
		case n == 0:
			f.Skipped++
		case n > 1:
			f.Duplicates += n - 1
		}
	}
	return f
}

func startOf(position map[int32]int64, p int32) int64 {
	if o, ok := position[p]; ok {
		return o
	}
	return -1
}

// readAsGroup joins group on c with a franz-go consumer (read_committed; the earliest offset
// where the group has no committed one), reads topics from the group's committed offsets to
// their ends as of the start, and returns the ids read, by topic and partition. It commits
// nothing and leaves the group when done.
func readAsGroup(t *testing.T, c *cluster, group string, topics []string) map[string]map[int32][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := c.admin(t)
	ends, err := adm.ListCommittedOffsets(ctx, topics...) // the last stable offsets
	if err != nil {
		t.Fatalf("list end offsets on %s: %v", c.name, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("list start offsets on %s: %v", c.name, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.KeepControlRecords(), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poll := func() kgo.Fetches {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		fetches := cl.PollFetches(pctx)
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("group %s on %s: fetch %s/%d: %v", group, c.name, topic, p, err)
			}
		})
		return fetches
	}
	// Join first, keeping what the first polls return: once the group has a member, no mirror
	// changes its offsets, so those read now are where the consumer started.
	var early []*kgo.Record
	for !groupJoined(cl) {
		if ctx.Err() != nil {
			t.Fatalf("group %s did not join on %s", group, c.name)
		}
		early = append(early, poll().Records()...)
	}
	committed := committedPositions(t, c, group)
	// pos is the next offset to read per partition; reading ends when every one reaches its end.
	pos := map[string]map[int32]int64{}
	end := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d on %s: %v", o.Topic, o.Partition, c.name, o.Err)
		}
		if pos[o.Topic] == nil {
			pos[o.Topic], end[o.Topic] = map[int32]int64{}, map[int32]int64{}
		}
		start, _ := starts.Lookup(o.Topic, o.Partition)
		at, ok := committed[o.Topic][o.Partition]
		if !ok || at < start.Offset {
			at = start.Offset
		}
		pos[o.Topic][o.Partition], end[o.Topic][o.Partition] = at, o.Offset
	})
	remaining := func() []string {
		var left []string
		for topic, ps := range pos {
			for p, at := range ps {
				if at < end[topic][p] {
					left = append(left, fmt.Sprintf("%s/%d at %d of %d", topic, p, at, end[topic][p]))
				}
			}
		}
		sort.Strings(left)
		return left
	}
	out := map[string]map[int32][]string{}
	for _, topic := range topics {
		out[topic] = map[int32][]string{}
	}
	take := func(r *kgo.Record) {
		if r.Offset >= end[r.Topic][r.Partition] {
			return
		}
		pos[r.Topic][r.Partition] = r.Offset + 1
		if !r.Attrs.IsControl() {
			out[r.Topic][r.Partition] = append(out[r.Topic][r.Partition], recordID(r.Value))
		}
	}
	for _, r := range early {
		take(r)
	}
	for len(remaining()) > 0 {
		fetches := poll()
		if ctx.Err() != nil {
			t.Fatalf("group %s on %s did not read to the end: %s", group, c.name, strings.Join(remaining(), ", "))
		}
		fetches.EachRecord(take)
	}
	return out
}

// groupJoined reports whether the consumer has an assignment (the group's generation is known).
func groupJoined(cl *kgo.Client) bool {
	_, gen := cl.GroupMetadata()
	return gen >= 0
}
