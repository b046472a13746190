//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChildrenDieWithTheTestBinary runs TestOrphanHelper, a test binary that starts a Kafka
// cluster, a kmirror and a kcat consumer the way the suite does and then ends the way
// -test.timeout ends a test binary: a panic on another goroutine, which runs no cleanup. Within a
// few seconds none of those processes may be left.
func TestChildrenDieWithTheTestBinary(t *testing.T) {
	outPath := filepath.Join(t.TempDir(), "helper.out")
	outf, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	// A file, not a pipe: a child that outlives the helper would hold a pipe open, and the wait.
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$", "-test.count=1", "-test.v", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), "E2E_ORPHAN_HELPER=1")
	cmd.Stdout, cmd.Stderr = outf, outf
	started := time.Now()
	err = runOwned(t, cmd)
	b, _ := os.ReadFile(outPath)
	out := string(b)

	type child struct {
		name  string
		pid   int
		start uint64
	}
	var children []child
	for _, l := range strings.Split(out, "\n") {
		var c child
		if _, err := fmt.Sscanf(l, "CHILD %s %d %d", &c.name, &c.pid, &c.start); err == nil {
			children = append(children, c)
		}
	}
	alive := func() []string {
		var out []string
		for _, c := range children {
			if groupAlive(c.pid, c.start) {
				out = append(out, fmt.Sprintf("%s (pid %d)", c.name, c.pid))
			}
		}
		return out
	}
	t.Cleanup(func() {
		for _, c := range children { // what the helper left, so that a failure leaves nothing
			if groupAlive(c.pid, c.start) {
				_ = syscall.Kill(c.pid, syscall.SIGKILL)
			}
		}
		_ = clusterCmd(filepath.Join(repoRoot(t), "scripts", "kafka", "cluster.sh"), "europe", "down", "europe").Run()
	})
	if err == nil || !strings.Contains(out, orphanHelperEnd) || !strings.Contains(out, "READY") {
		t.Fatalf("the helper was to start its children and then end with a panic (%v):\n%s", err, lastLines(out, 40))
	}
	var names []string
	for _, c := range children {
		names = append(names, c.name)
	}
	for _, want := range []string{"kafka", "kmirror", "kcat"} {
		if !slices.Contains(names, want) {
			t.Fatalf("the helper started no %s:\n%s", want, lastLines(out, 40))
		}
	}
	ended := time.Now()
	deadline := ended.Add(10 * time.Second)
	for len(alive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := alive(); len(left) > 0 {
		t.Fatalf("figures: %d children, %d left running 10s after their test binary ended: %s", len(children), len(left), strings.Join(left, ", "))
	}
	t.Logf("figures: %d children (%s), none left %s after their test binary ended (it ran %s)",
		len(children), strings.Join(names, ", "), time.Since(ended).Round(100*time.Millisecond), ended.Sub(started).Round(time.Second))
}

// orphanHelperEnd is the panic that ends TestOrphanHelper.
const orphanHelperEnd = "the orphan helper ends here, as -test.timeout would end it"

// TestOrphanHelper is not a test of its own: TestChildrenDieWithTheTestBinary runs it. It starts
// a one-node cluster, a kmirror (whose target does not answer: it keeps trying) and a kcat
// consumer, prints "CHILD <name> <pid> <start time>" for each and READY, and then panics on
// another goroutine, as the testing package does when -test.timeout passes (it waited for that
// timeout once, idle for a minute of the suite's time; the timeout stays as the bound of a helper
// that never gets ready).
func TestOrphanHelper(t *testing.T) {
	if os.Getenv("E2E_ORPHAN_HELPER") == "" {
		t.Skip("helper for TestChildrenDieWithTheTestBinary")
	}
	europe := startCluster(t, "europe")
	europe.createTopic(t, "orphan", 1, 1, nil)
	state := os.Getenv("KMIRROR_KAFKA_STATE")
	if state == "" {
		state = "/tmp/kmirror-kafka"
	}
	show := func(name string, pid int) {
		start, _, _ := procStat(pid)
		fmt.Printf("CHILD %s %d %d\n", name, pid, start)
	}
	b, err := os.ReadFile(filepath.Join(state, "europe", "node-1", "pid"))
	if err != nil {
		t.Fatal(err)
	}
	var broker int
	if _, err := fmt.Sscan(string(b), &broker); err != nil {
		t.Fatal(err)
	}
	show("kafka", broker)
	nowhere := &cluster{name: "us", bootstrap: []string{freeAddr(t)}}
	k := startKmirror(t, writeConfig(t, baseConfig(europe, nowhere, "orphan", "")))
	show("kmirror", k.cmd.Process.Pid)
	kcat := exec.Command("kcat", "-C", "-q", "-b", strings.Join(europe.bootstrap, ","), "-t", "orphan")
	if err := startOwned(t, kcat); err != nil {
		t.Fatal(err)
	}
	show("kcat", kcat.Process.Pid)
	fmt.Println("READY")
	go func() { panic(orphanHelperEnd) }() // ends the binary with no cleanup
	time.Sleep(time.Hour)
}

// TestLeftoversOfADeadRunAreKilled: a process group recorded by a test binary that is gone (one
// from before Pdeathsig, say) is killed before the next cluster starts; one recorded by a binary
// still running is left alone.
func TestLeftoversOfADeadRunAreKilled(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("sleep", "300")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no Pdeathsig: it would outlive us
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	orphanStart, _, _ := procStat(orphan.Process.Pid)
	if err := writeRecord(orphan.Process.Pid, orphanStart, dead.Process.Pid, 1); err != nil {
		t.Fatal(err)
	}
	ours := exec.Command("sleep", "300")
	if err := startOwned(t, ours); err != nil {
		t.Fatal(err)
	}
	oursStart, _, _ := procStat(ours.Process.Pid)

	killed, err := killLeftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(killed, orphan.Process.Pid) || slices.Contains(killed, ours.Process.Pid) {
		t.Fatalf("killed %v: want the orphan %d and not our own child %d", killed, orphan.Process.Pid, ours.Process.Pid)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	select {
	case err := <-done:
		if ws, ok := orphan.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("the orphan ended with %v, not SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the orphan of a dead run still runs")
	}
	if !groupAlive(ours.Process.Pid, oursStart) {
		t.Fatal("our own child was killed")
	}
	b, err := os.ReadFile(childrenFile())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), fmt.Sprintf("%d %d %d", orphan.Process.Pid, orphanStart, dead.Process.Pid)) ||
		!strings.Contains(string(b), fmt.Sprintf("%d %d %d", ours.Process.Pid, oursStart, os.Getpid())) {
		t.Fatalf("the record keeps the dead run's group or drops ours:\n%s", b)
	}
	t.Logf("figures: killed %d group(s) of a dead run, kept our own", len(killed))
}
