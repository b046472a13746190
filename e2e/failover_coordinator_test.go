//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestFailoverRightAfterTheTargetCoordinatorMoved: the target's coordinator of a group is killed
// (-9) and `kmirror failover` runs at once, while the target still names the dead broker as the
// coordinator and then the new one loads the groups (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
// COORDINATOR_LOAD_IN_PROGRESS, refused connections). The failover waits for the new coordinator
// (bounded) and commits the group's translated positions, instead of failing at once.
func TestFailoverRightAfterTheTargetCoordinatorMoved(t *testing.T) {
	const topic, group = "fcoord", "failover-moved"
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	europe.createTopic(t, topic, 3, 1, nil)
	produced := startLoad(t, europe.bootstrap, topic, 30_000, 0).wait(t)

	cfg := writeConfig(t, baseConfig(europe, us, topic, failoverSettings("1h")))
	k := startKmirror(t, cfg)
	adm := europe.admin(t)
	waitFor(t, "kmirror to copy the topic and commit", 2*time.Minute, func() bool {
		committed, end := groupProgress(adm, topic)
		return us.count(t, topic) >= int64(produced) && committed == end
	})
	// The group read half of each partition on europe.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var at kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) { at.AddOffset(topic, o.Partition, o.Offset/2, -1) })
	if resp, err := adm.CommitOffsets(ctx, group, at); err != nil || resp.Error() != nil {
		t.Fatalf("commit %s on europe: %v %v", group, err, resp.Error())
	}
	time.Sleep(2 * time.Second) // the offset map's last flush (500ms here)
	k.stop()

	// The coordinator the group has on us (it has no state there yet; the first look-up
	// creates __consumer_offsets, answering COORDINATOR_NOT_AVAILABLE meanwhile).
	var coord kadm.FindCoordinatorResponse
	waitFor(t, "the target's coordinator of "+group, time.Minute, func() bool {
		coord = us.admin(t).FindGroupCoordinators(ctx, group)[group]
		return coord.Err == nil
	})
	node := coord.NodeID
	us.script(t, "stop-node", "us", fmt.Sprint(node))
	t.Logf("killed the target's coordinator of %s, node %d", group, node)
	started := time.Now()
	reports, code := failover(t, cfg, []string{group})
	took := time.Since(started)
	r, ok := reports[group]
	if code != 0 || !ok {
		t.Fatalf("kmirror failover right after the coordinator was killed exited %d after %s, report %+v", code, took.Round(100*time.Millisecond), r)
	}
	// The test's own client may still try the killed node first (its metadata is older than
	// the coordinator's move): read the target group's offsets once the cluster answers.
	var offs kadm.OffsetResponses
	waitFor(t, "the target group's committed offsets", time.Minute, func() bool {
		var err error
		offs, err = us.admin(t).FetchOffsets(ctx, group)
		if err != nil {
			t.Logf("fetch the target group's offsets: %v (trying again)", err)
		}
		return err == nil
	})
	moved := 0
	for _, p := range r.Partitions {
		got, ok := offs.Lookup(p.TargetTopic, p.Partition)
		switch {
		case p.Action != "committed":
			t.Errorf("%s/%d: %q, want committed", p.Topic, p.Partition, p.Action)
		case !ok || got.At != p.TargetOffset:
			t.Errorf("%s/%d: the target group is at %d, the failover committed %d", p.Topic, p.Partition, got.At, p.TargetOffset)
		default:
			moved++
		}
	}
	if moved != 3 {
		t.Errorf("%d of 3 partitions moved", moved)
	}
	t.Logf("figures: failover exited 0 after %s with the coordinator (node %d) just killed; %d of 3 partitions committed on the target",
		took.Round(100*time.Millisecond), node, moved)
	us.script(t, "start-node", "us", fmt.Sprint(node))
}
