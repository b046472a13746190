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
	europe.createTopic(t, "frozen", 4, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "frozen", ""))

	load := startLoad(t, europe.bootstrap, "frozen", 60_000, 10_000)
	k := startKmirror(t, cfg)
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, "frozen") > 5_000 })
	thaw := us.freeze(t, 1)
	time.Sleep(3 * time.Second) // records pile up in the producers

	began := time.Now()
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("kmirror still running 60 s after SIGTERM with the target frozen\n%s", lastLines(k.log(), 30))
	}
	took := time.Since(began)
	code := k.cmd.ProcessState.ExitCode()
	t.Logf("figures: stop took %s with the target frozen, exit status %d", took.Round(100*time.Millisecond), code)
	if took > 40*time.Second {
		t.Fatalf("stop took %s: more than shutdown.timeout (30s) plus the margin", took)
	}
	if strings.Contains(k.log(), "stopped cleanly") {
		t.Fatalf("kmirror said it stopped cleanly with records stuck in a frozen target\n%s", lastLines(k.log(), 20))
	}
	if code == 0 {
		t.Fatal("exit status 0 after a stop that could not drain")
	}

	thaw()
	k2 := startKmirror(t, cfg)
	produced := load.wait(t)
	waitFor(t, "catch-up after the target thawed", 3*time.Minute, func() bool { return us.count(t, "frozen") >= int64(produced) })
	time.Sleep(2 * time.Second)
	k2.stop()
	rep := compare(t, europe, us, map[string]string{"frozen": "frozen"})
	if !rep.Complete() {
		t.Fatalf("records lost or reordered around a stop with a frozen target:\n%s", rep)
	}
}

// TestSecondSignalExitsAtOnce sends SIGTERM twice while the target is frozen: the second one
// ends the process at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "twice", 2, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "twice", ""))
	load := startLoad(t, europe.bootstrap, "twice", 20_000, 5_000)
	k := startKmirror(t, cfg)
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, "twice") > 1_000 })
	us.freeze(t, 1)
	time.Sleep(2 * time.Second)
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(time.Second)
	began := time.Now()
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		t.Fatal("kmirror did not exit within 5 s of a second SIGTERM")
	}
	t.Logf("figures: exited %s after the second SIGTERM", time.Since(began).Round(time.Millisecond))
	load.wait(t)
}
