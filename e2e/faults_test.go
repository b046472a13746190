//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestCrashLosesNothing kills kmirror with SIGKILL mid-stream under load, restarts it, and
// expects every record on the target (duplicates allowed and counted: at-least-once).
func TestCrashLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "crash", 6, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "crash", ""))

	load := startLoad(t, europe.bootstrap, "crash", 150_000, 25_000)
	k := startKmirror(t, cfg)
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, "crash") > 20_000 })
	k.kill()
	t.Logf("killed kmirror -9 with %d records on the target, %d produced", us.count(t, "crash"), load.count())
	time.Sleep(2 * time.Second)

	k2 := startKmirror(t, cfg)
	produced := load.wait(t)
	waitFor(t, "catch-up after the crash", 3*time.Minute, func() bool { return us.count(t, "crash") >= int64(produced) })
	time.Sleep(2 * time.Second) // let any redelivery land before counting
	k2.stop()
	rep := compare(t, europe, us, map[string]string{"crash": "crash"})
	if !rep.Complete() {
		t.Fatalf("records lost or reordered after kill -9:\n%s", rep)
	}
}

// TestBrokerLossLosesNothing stops one of three target brokers mid-stream and brings it back,
// with kmirror's default producer settings.
func TestBrokerLossLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "loss", 6, 1, nil, 100_000, 20_000, 10_000, "")
	before := us.count(t, "loss")
	us.script(t, "stop-node", "us", "2")
	t.Logf("stopped target broker 2 with %d records on the target", before)
	r.sleep(10*time.Second, "while target broker 2 was down")
	us.script(t, "start-node", "us", "2")
	rep := r.finish(time.Now(), 3*time.Minute, "target node 2 down 10s")
	if _, _, _, dups, _ := rep.Totals(); dups != 0 {
		t.Logf("%d duplicates (an idempotent producer should have none; a retry after a lost ack can make some)", dups)
	}
}

// TestScaleOut runs two and then three kmirror processes in one group, checks they split the
// partitions, stops one mid-stream and expects nothing lost.
func TestScaleOut(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "scale", 12, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "scale", ""))

	load := startLoad(t, europe.bootstrap, "scale", 120_000, 15_000)
	a := startKmirror(t, cfg)
	b := startKmirror(t, cfg)
	waitForMembers(t, europe, 2)
	c := startKmirror(t, cfg)
	waitForMembers(t, europe, 3)
	b.stop()
	t.Logf("stopped one of three members with %d records on the target", us.count(t, "scale"))
	waitForMembers(t, europe, 2)
	produced := load.wait(t)
	waitFor(t, "the remaining members to catch up", 3*time.Minute, func() bool { return us.count(t, "scale") >= int64(produced) })
	a.stop()
	c.stop()
	rep := compare(t, europe, us, map[string]string{"scale": "scale"})
	if !rep.Complete() {
		t.Fatalf("records lost when a member left:\n%s", rep)
	}
}

// waitForMembers waits until the kmirror group has n members, each owning partitions.
func waitForMembers(t *testing.T, c *cluster, n int) {
	t.Helper()
	adm := c.admin(t)
	waitFor(t, "the group to settle", 90*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		groups, err := adm.DescribeGroups(ctx, "kmirror")
		if err != nil {
			return false
		}
		g := groups["kmirror"]
		if g.State != "Stable" || len(g.Members) != n {
			return false
		}
		counts := []int{}
		for _, m := range g.Members {
			assigned, _ := m.Assigned.AsConsumer()
			k := 0
			if assigned != nil {
				for _, tp := range assigned.Topics {
					k += len(tp.Partitions)
				}
			}
			if k == 0 {
				return false
			}
			counts = append(counts, k)
		}
		t.Logf("group stable with %d members owning %v partitions", n, counts)
		return true
	})
	_ = kadm.GroupMemberAssignment{}
}
