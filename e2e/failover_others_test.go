//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestGroupSyncLeavesAReaderThatCommitsWithoutJoining: a reader on us that assigns the
// partitions itself and commits the group's offsets without joining it (as Flink and Spark do)
// leaves the group without members, "Empty" to its coordinator. kmirror's group sync (every
// second here) must not take it for idle and move its offsets forward round after round: it
// leaves the group alone once its offsets changed since kmirror wrote them, logs it once and
// counts it; `kmirror failover` reports it and commits nothing, and `--force` still moves it.
func TestGroupSyncLeavesAReaderThatCommitsWithoutJoining(t *testing.T) {
	const group = "failover-flink"
	europe, us := startCluster(t, "europe"), startCluster(t, "us")
	europe.createTopic(t, "orders", 3, 1, nil)
	startLoad(t, europe.bootstrap, "orders", 3_000, 3_000).wait(t)
	commitOn(t, europe, group, "orders", map[int32]int64{0: 600, 1: 600, 2: 600})
	listen := telemetryAddr()
	cfg := writeConfig(t, strings.Replace(baseConfig(europe, us, "orders", failoverSettings("1s")),
		`listen: ""`, fmt.Sprintf("listen: %q", listen), 1))
	k := startKmirror(t, cfg)
	synced := func() bool {
		pos := committedPositions(t, us, group)["orders"]
		return len(pos) == 3 && pos[0] == 600 && pos[1] == 600 && pos[2] == 600
	}
	waitFor(t, "the group sync to commit the group on us", 2*time.Minute, synced)

	// The reader commits where it is every 200 ms for 20 s, and counts the times it finds its
	// committed offsets moved by someone else.
	moved, commits := 0, 0
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		at := int64(100 + commits)
		commitOn(t, us, group, "orders", map[int32]int64{0: at, 1: at, 2: at})
		commits++
		time.Sleep(200 * time.Millisecond)
		for p, o := range committedPositions(t, us, group)["orders"] {
			if o != at {
				moved++
				t.Logf("the reader's offset of orders/%d moved from %d to %d", p, at, o)
			}
		}
	}
	t.Logf("figures: a reader committing without joining, %d commits in 20 s: its offsets moved %d times by the group sync", commits, moved)
	// One move is possible: a commit of the reader between kmirror's last read and its commit (one
	// round trip), before kmirror has seen the reader at all.
	if moved > 1 {
		t.Errorf("the group sync moved the reader's offsets %d times in 20 s, want at most once", moved)
	}
	const line = "another client commits the target group's offsets: the group offset sync leaves it alone"
	if n := strings.Count(k.log(), line); n != 1 {
		t.Errorf("kmirror logged %q %d times, want once", line, n)
	}
	const metric = "kmirror_group_sync_committed_by_others_total"
	if body := scrape(t, "http://"+listen+"/metrics"); !strings.Contains(body, metric+" ") {
		t.Errorf("/metrics lacks %s", metric)
	} else if v := metricValue(t, body, metric); v != 1 {
		t.Errorf("%s = %v, want 1", metric, v)
	}

	// The failover, with the reader still committing: reported, nothing committed, exit 1.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		adm := us.admin(t)
		for at := int64(200); ; at++ { // behind the translation (600): not "target ahead"
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			offs := kadm.Offsets{}
			for p := int32(0); p < 3; p++ {
				offs.Add(kadm.Offset{Topic: "orders", Partition: p, At: at, LeaderEpoch: -1})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = adm.CommitOffsets(ctx, group, offs)
			cancel()
		}
	}()
	reports, code := failover(t, cfg, []string{group})
	close(stop)
	wg.Wait()
	r := reports[group]
	if !r.CommittedByOthers || code != 1 {
		t.Errorf("failover with the reader committing: committed by others %v, exit %d; want true, 1 (report %+v)", r.CommittedByOthers, code, r)
	}
	for _, p := range r.Partitions {
		if p.Action != "target committed by another client" {
			t.Errorf("failover did %q on orders/%d, want \"target committed by another client\"", p.Action, p.Partition)
		}
	}
	for p, o := range committedPositions(t, us, group)["orders"] {
		if o == 600 {
			t.Errorf("failover moved the reader's offset of orders/%d to the translation", p)
		}
	}
	k.stop()

	// --force moves it all the same.
	reports, code = failover(t, cfg, []string{group}, "--force")
	if code != 0 || !synced() {
		t.Errorf("failover --force: exit %d, us at %v; want 0 and every partition at 600 (report %+v)", code,
			committedPositions(t, us, group)["orders"], reports[group])
	}
}
