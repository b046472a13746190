//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestRebalanceKeepsStayingPartitionsFlowing: a second kmirror joins the group while records
// flow (default settings). The group rebalances cooperatively (pkg/group): the partitions the
// first member keeps are never revoked, so their copies keep reaching the target through the
// rebalance; only the partitions that move pause, while the first member drains and commits
// them. The longest time a staying partition's end offset on the target stood still while the
// source had more for it is measured (beside the longest gap of the 10 s before the join, as a
// baseline) and bounded by 2 s (or that baseline plus 1 s on a slow machine); the load runs
// until the watch is over, and polls of the watch that came late are not counted. The
// independent client then finds nothing lost and the first copies in source order.
//
// Limit: with a healthy target the drains are short, so an eager rebalance (sarama's, before
// pkg/group) also stays under the bound here (measured 246 ms); the test bounds the stall, it
// does not tell the protocols apart.
func TestRebalanceKeepsStayingPartitionsFlowing(t *testing.T) {
	rebalanceKeepsFlowing(t, "", false)
}

// TestExactlyOnceRebalanceKeepsStayingPartitionsFlowing is TestRebalanceKeepsStayingPartitionsFlowing
// in exactly_once: whole slots move to the second member, and the slots the first member keeps
// go on committing transactions through the rebalance. Progress is the target's last stable
// offset (what a read_committed consumer sees), and the verdict is exactly once, in order.
func TestExactlyOnceRebalanceKeepsStayingPartitionsFlowing(t *testing.T) {
	rebalanceKeepsFlowing(t, eosSettings, true)
}

// rebalanceKeepsFlowing runs the scenario with extra settings; eos watches the last stable
// offsets and checks exactly once.
func rebalanceKeepsFlowing(t *testing.T, extra string, eos bool) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "flow", 12, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "flow", extra))
	mode := "at-least-once"
	if eos {
		mode = "exactly-once"
	}

	// The load runs until the watch is over: a target that caught up with a source that no
	// longer grows is not a gap (on a slow machine a fixed-size load ended during the watch).
	load := startLoad(t, europe.bootstrap, "flow", endless, 5_000)
	t.Cleanup(func() {
		select {
		case <-load.done:
		default:
			close(load.stop)
			<-load.done
		}
	})
	a := startKmirror(t, cfg)
	waitForMembers(t, europe, 1)
	first := memberAssignments(t, europe, "flow")
	if len(first) != 1 {
		t.Fatalf("one member expected, got %v", first)
	}
	var memberA string
	for id := range first {
		memberA = id
	}
	waitFor(t, "the first member to copy", time.Minute, func() bool { return us.count(t, "flow") >= 10_000 })
	// The gaps the flow has anyway, without a rebalance: the baseline.
	w0 := watchProgress(t, europe, us, "flow", 50*time.Millisecond, eos)
	time.Sleep(10 * time.Second)
	var baseline time.Duration
	baselineGaps := w0.stop()
	for _, g := range baselineGaps {
		baseline = max(baseline, g)
	}

	// Watch every partition's end offset on both sides every 50 ms from before the join until
	// the group is stable again and a few seconds more.
	w := watchProgress(t, europe, us, "flow", 50*time.Millisecond, eos)
	time.Sleep(2 * time.Second)
	joined := time.Now()
	b := startKmirror(t, cfg)
	waitForMembers(t, europe, 2)
	settled := time.Since(joined)
	time.Sleep(5 * time.Second)
	gaps := w.stop()

	after := memberAssignments(t, europe, "flow")
	stayed := after[memberA]
	if len(stayed) == 0 || len(stayed) == 12 {
		t.Fatalf("the first member kept %v of 12 partitions after the join; want some, not all (assignments %v)", stayed, after)
	}
	var longest time.Duration
	for _, p := range stayed {
		longest = max(longest, gaps[p])
	}
	var movedLongest time.Duration
	for p, g := range gaps {
		if !containsPartition(stayed, p) {
			movedLongest = max(movedLongest, g)
		}
	}
	t.Logf("join at %s", joined.UTC().Format("15:04:05.000"))
	t.Logf("figures: second member joined under load (%s, default settings); group stable after %s; the first member kept partitions %v; "+
		"longest gap of a staying partition %s, of a moved one %s; longest gap of any partition in the 10s before the join %s",
		mode, settled.Round(time.Millisecond), stayed, longest.Round(time.Millisecond), movedLongest.Round(time.Millisecond),
		baseline.Round(time.Millisecond))
	// A staying partition's copies arrive every few tens of milliseconds under this load (every
	// transaction, a few hundred, in exactly-once); the bound leaves room for a slow machine
	// (the flow's own longest gap before the join, plus a second, when that is more than 2s)
	// but not for a stop of the rebalance's length (the first member's drain and the join:
	// seconds, as the moved partitions show).
	bound := max(2*time.Second, baseline+time.Second)
	if longest > bound {
		t.Errorf("a partition the first member kept stood still for %s during the rebalance; want the staying partitions to keep flowing (< %s)", longest, bound)
	}

	close(load.stop)
	produced := load.wait(t)
	if eos {
		// The target's end offsets count transaction markers too: wait for the positions.
		waitCommitted(t, &faultRun{t: t, topic: "flow", europe: europe, us: us}, 3*time.Minute, func() {})
	} else {
		waitFor(t, "both members to catch up", 3*time.Minute, func() bool { return us.count(t, "flow") >= int64(produced) })
	}
	t.Logf("gaps before the join %v; during %v", baselineGaps, gaps)
	b.stop()
	a.stop()
	if eos {
		waitNoOpenTransaction(t, us, "flow")
	}
	rep := compare(t, europe, us, map[string]string{"flow": "flow"})
	if eos && !rep.Exact() {
		t.Fatalf("the target read_committed does not hold every source record exactly once, in order, across the rebalance:\n%s", rep)
	}
	if !rep.Complete() {
		t.Fatalf("records lost or out of order across the rebalance:\n%s", rep)
	}
}

// memberAssignments returns each member of the kmirror group (by member id) and its partitions of
// topic.
func memberAssignments(t *testing.T, c *cluster, topic string) map[string][]int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := c.admin(t).DescribeGroups(ctx, "kmirror")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int32{}
	for _, m := range groups["kmirror"].Members {
		assigned, _ := m.Assigned.AsConsumer()
		var ps []int32
		if assigned != nil {
			for _, tp := range assigned.Topics {
				if tp.Topic == topic {
					ps = append(ps, tp.Partitions...)
				}
			}
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		out[m.MemberID] = ps
	}
	return out
}

func containsPartition(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// progress watches a topic's end offsets on the source and the target.
type progress struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	gaps  map[int32]time.Duration
	// stalled sums the time the watch itself came late (not counted in gaps).
	stalled time.Duration
}

// pollSlack is how long a poll cycle may take before the watch counts itself late.
const pollSlack = 300 * time.Millisecond

// watchProgress polls both sides every interval and, per partition, measures the longest time
// the target's end offset (its last stable offset when committed: what read_committed
// consumers see) did not move while the source held more for it.
func watchProgress(t *testing.T, src, dst *cluster, topic string, interval time.Duration, committed bool) *progress {
	t.Helper()
	sadm, dadm := src.admin(t), dst.admin(t)
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{}), gaps: map[int32]time.Duration{}}
	go func() {
		defer close(p.done)
		last := map[int32]int64{}
		since := map[int32]time.Time{} // when the target's end last moved, or last had nothing left
		var prevPoll time.Time
		srcAtMove := map[int32]int64{} // the source's end when the target's end last moved
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			se, err1 := sadm.ListEndOffsets(ctx, topic)
			list := dadm.ListEndOffsets
			if committed {
				list = dadm.ListCommittedOffsets
			}
			de, err2 := list(ctx, topic)
			cancel()
			if err1 != nil || err2 != nil {
				continue
			}
			now := time.Now()
			// A poll that came late (this machine or the brokers answering the watch slowly)
			// says nothing of kmirror for that while: the excess is not counted as a gap.
			if excess := now.Sub(prevPoll) - pollSlack; !prevPoll.IsZero() && excess > 0 {
				for q := range since {
					since[q] = since[q].Add(excess)
				}
				p.mu.Lock()
				p.stalled += excess
				p.mu.Unlock()
			}
			prevPoll = now
			srcEnd := map[int32]int64{}
			se.Each(func(o kadm.ListedOffset) { srcEnd[o.Partition] = o.Offset })
			p.mu.Lock()
			de.Each(func(o kadm.ListedOffset) {
				prev, seen := last[o.Partition]
				// The load never stops while watched, so an end that stands still is a gap. (Offsets
				// are not compared across clusters: transaction markers take offsets on the target.)
				// Nor is it a gap while the source has nothing the target lacked when it last moved.
				if !seen || o.Offset != prev || srcEnd[o.Partition] == 0 || srcEnd[o.Partition] == srcAtMove[o.Partition] {
					last[o.Partition], since[o.Partition], srcAtMove[o.Partition] = o.Offset, now, srcEnd[o.Partition]
					return
				}
				p.gaps[o.Partition] = max(p.gaps[o.Partition], now.Sub(since[o.Partition]))
			})
			p.mu.Unlock()
		}
	}()
	return p
}

// stop ends the watch and returns each partition's longest gap.
func (p *progress) stop() map[int32]time.Duration {
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled > 0 {
		fmt.Printf("progress watch: %s of late polls not counted\n", p.stalled.Round(time.Millisecond))
	}
	return p.gaps
}
