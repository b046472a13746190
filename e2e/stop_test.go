//go:build e2e

package e2e

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freeze stops a node of the cluster with SIGSTOP and returns the function that thaws it (once;
// the test's cleanup thaws it too).
func (c *cluster) freeze(t *testing.T, node int32) (thaw func()) {
	t.Helper()
	pid := c.nodePid(t, node)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s node %d (pid %d): %v", c.name, node, pid, err)
	}
	var once sync.Once
	thaw = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(thaw)
	return thaw
}

// TestStopWithAFrozenTargetIsBounded freezes the target broker (SIGSTOP) under load and stops
// kmirror with SIGTERM, default settings: the process must exit within shutdown.timeout (30 s)
// plus a small margin — well inside the 45 s grace of systemd and Kubernetes — say it did not
// stop cleanly, and exit non-zero. After the broker thaws, a new kmirror catches up: nothing
// lost, order kept.
func TestStopWithAFrozenTargetIsBounded(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "frozen", 4, 1, nil, 60_000, 10_000, 5_000, "")
	thaw := us.freeze(t, 1)
	time.Sleep(3 * time.Second) // records pile up in the producers

	took, code := sigterm(t, r.k, 60*time.Second)
	t.Logf("figures: stop took %s with the target frozen, exit status %d", took.Round(100*time.Millisecond), code)
	if took > 40*time.Second {
		t.Fatalf("stop took %s: more than shutdown.timeout (30s) plus the margin", took)
	}
	if strings.Contains(r.k.log(), "stopped cleanly") {
		t.Fatalf("kmirror said it stopped cleanly with records stuck in a frozen target\n%s", r.k.tail(20))
	}
	if code == 0 {
		t.Fatal("exit status 0 after a stop that could not drain")
	}

	thaw()
	thawed := time.Now()
	r.k = startKmirror(t, r.cfg)
	r.finish(thawed, 3*time.Minute, "kmirror stopped with the target frozen, restarted after it thawed")
}

// TestSecondSignalExitsAtOnce sends SIGTERM twice while the target is frozen: the second one
// ends the process at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "twice", 2, 1, nil, 20_000, 5_000, 1_000, "")
	us.freeze(t, 1)
	time.Sleep(2 * time.Second)
	_ = r.k.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(time.Second)
	took, _ := sigterm(t, r.k, 5*time.Second)
	t.Logf("figures: exited %s after the second SIGTERM", took.Round(time.Millisecond))
}

// sigterm sends SIGTERM to k and waits at most limit for it to exit; it returns how long that
// took and the exit status.
func sigterm(t *testing.T, k *kmirror, limit time.Duration) (time.Duration, int) {
	t.Helper()
	began := time.Now()
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(limit):
		t.Fatalf("kmirror still running %s after SIGTERM\n%s", limit, k.tail(30))
	}
	return time.Since(began), k.cmd.ProcessState.ExitCode()
}

// TestRebalanceDuringATargetOutageWritesNoStaleRecords freezes the target while one member
// mirrors under load and starts a second member: the rebalance revokes partitions whose records
// are stuck in the first member's producers. The first member must not give them up (and the
// second must not start them) before they are acknowledged, or a record could land after the
// new owner's copies. The freeze (40 s) outlasts shutdown.timeout (30 s), which used to bound
// that drain. After the thaw everything is on the target, in order, default settings.
func TestRebalanceDuringATargetOutageWritesNoStaleRecords(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "moved", 6, 1, nil, 60_000, 10_000, 5_000, "")
	thaw := us.freeze(t, 1)
	time.Sleep(2 * time.Second) // records pile up in the first member's producers
	second := startKmirror(t, r.cfg)
	r.sleep(40*time.Second, "while the target was frozen and the group rebalanced")
	thaw()
	thawed := time.Now()
	waitForMembers(t, europe, 2)
	r.finish(thawed, 3*time.Minute, "target frozen 40s while a second member joined")
	second.stop()
}
