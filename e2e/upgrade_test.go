//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// previousRelease is the commit of the release before kmirror's own group member (pkg/group):
// its members join the source group with sarama's ConsumerGroup, in at_least_once with
// consumer.rebalance_strategy (sarama's sticky by default), in exactly_once with the eager slot
// strategy.
const previousRelease = "e416087"

// previousBinary builds the previous release's kmirror (scripts/previous-release.sh, cached in
// the state directory) and returns its path.
func previousBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", "previous-release.sh"), previousRelease)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The build (git archive, go build) runs in a process group of its own that dies with the
	// test, as every child of these tests.
	if err := runOwned(t, cmd); err != nil {
		t.Fatalf("build kmirror %s: %v\n%s", previousRelease, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// groupProtocol is the protocol the source group's coordinator selected for the kmirror group.
func groupProtocol(t *testing.T, c *cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := c.admin(t).DescribeGroups(ctx, "kmirror")
	if err != nil {
		t.Fatal(err)
	}
	return groups["kmirror"].Protocol
}

// TestRollingUpgradeFromPreviousRelease: a Deployment rolls its replicas one by one. A member of
// the previous release mirrors under load (default settings, at_least_once); a member of this
// release joins the group beside it (it offers the previous release's sarama strategy last, so
// the coordinator picks that one while an old member remains, and it plans with sarama's own
// strategy when it leads), both mirror for a while, then the old one stops (SIGTERM) and the
// group goes over to the cooperative slot protocol. The independent client finds nothing lost
// and the first copies in source order.
func TestRollingUpgradeFromPreviousRelease(t *testing.T) {
	rollingUpgrade(t, "upgrade", "", "sticky")
}

// TestExactlyOnceRollingUpgradeFromPreviousRelease is TestRollingUpgradeFromPreviousRelease in
// exactly_once: the previous release's members run the eager slot strategy, which the new member
// offers second; read_committed, every source record is on the target once, in order.
func TestExactlyOnceRollingUpgradeFromPreviousRelease(t *testing.T) {
	rollingUpgrade(t, "eosupgrade", eosSettings, "kmirror-slots-v1/")
}

// rollingUpgrade runs the scenario of TestRollingUpgradeFromPreviousRelease with extra settings;
// mixedPrefix starts the protocol the group must run while both releases are in it.
func rollingUpgrade(t *testing.T, topic, extra, mixedPrefix string) {
	bin := previousBinary(t)
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, topic, 12, 1, nil)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us}
	r.load = startLoad(t, europe.bootstrap, topic, endless, 3_000)
	r.load.stopAtCleanup(t)
	r.cfg = writeConfig(t, baseConfig(europe, us, topic, extra))

	old := startKmirrorBin(t, bin, r.cfg)
	waitForMembers(t, europe, 1)
	waitFor(t, "the previous release to mirror", 2*time.Minute, func() bool { return us.count(t, topic) >= 5_000 })
	before := groupProtocol(t, europe)

	fresh := startKmirror(t, r.cfg)
	both := map[string]*kmirror{"the previous release's member": old, "the new member": fresh}
	waitFor(t, "the new member to join beside the previous release's", 90*time.Second, func() bool {
		requireRunning(t, "while the new member joins", both)
		owned := memberAssignments(t, europe, topic)
		if len(owned) != 2 {
			return false
		}
		for _, ps := range owned {
			if len(ps) == 0 {
				return false
			}
		}
		return true
	})
	mixed := groupProtocol(t, europe)
	hold(t, 10*time.Second, "with both releases in the group", both)
	t.Logf("both releases in the group (protocol %q, before %q): assignments %v, target log end %d",
		mixed, before, memberAssignments(t, europe, topic), us.count(t, topic))
	if !strings.HasPrefix(mixed, mixedPrefix) {
		t.Errorf("with a member of the previous release the group runs %q; want the previous release's %q", mixed, mixedPrefix)
	}

	old.stop()
	alone := map[string]*kmirror{"the new member": fresh}
	waitForMembers(t, europe, 1)
	hold(t, 5*time.Second, "after the previous release's member stopped", alone)
	after := groupProtocol(t, europe)
	if !strings.HasSuffix(after, "/cooperative") {
		t.Errorf("after the last member of the previous release left the group runs %q; want the cooperative slot protocol", after)
	}
	produced := r.stopLoad()
	figures := fmt.Sprintf("produced %d; group protocol %q alone, %q with both releases, %q after the upgrade", produced, before, mixed, after)
	if extra == "" {
		waitFor(t, "the new member to catch up", 3*time.Minute, func() bool {
			requireRunning(t, "while catching up", alone)
			return us.count(t, topic) >= int64(produced)
		})
		fresh.stop()
		rep := compareReport(t, europe, us, map[string]string{topic: topic})
		logFigures(t, rep, figures)
		if !rep.Complete() {
			t.Fatalf("records lost or out of order across the rolling upgrade:\n%s", rep)
		}
		return
	}
	took := waitCommitted(t, r, 3*time.Minute, func() { requireRunning(t, "while catching up", alone) })
	fresh.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("%s, caught up %s after the load", figures, took.Round(100*time.Millisecond)))
}
