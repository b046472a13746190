//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmirror/kmirror/benchmarks/owned"
)

// The processes the suite starts must not outlive it. A test binary that times out panics and
// exits without running t.Cleanup, and a kmirror left running joins the next run's fresh clusters
// on the same ports (a producer id from the previous cluster, a heartbeat topic written by a flow
// no test started). Three things hold:
//
//   - every child started through startOwned (kmirror, MirrorMaker 2, kcat, the helper binaries)
//     is the leader of a process group of its own, killed as a whole when its test ends;
//   - it gets SIGKILL from the kernel when the test binary ends, however it ends (Pdeathsig). The
//     kernel sends it when the OS thread that forked the child ends, not the process: every child
//     is forked by one goroutine locked to its thread for the life of the binary, so that no
//     thread exit of the Go runtime kills a child early;
//   - each group is recorded (with its leader's start time, and the test binary's) in
//     <KMIRROR_KAFKA_STATE>/e2e-children, and startCluster kills the groups of a test binary that
//     is gone before it starts a cluster: a child that escaped both the above (a binary from
//     before this harness) is gone by the next run.
//
// Kafka brokers are started by scripts/kafka/cluster.sh, detached from it; clusterCmd gives the
// script KAFKA_OWNER_PID, and the script kills each node within a second of that process's end.

// spawnerOf is the test binary's one spawner (benchmarks/owned): its locked thread is the
// binary's, as long as it lives.
var spawnerOf = sync.OnceValue(owned.NewSpawner)

// startOwned starts cmd as an owned child: in a process group of its own, killed when the test
// ends and when the test binary does, and recorded for the next run. The caller waits for it
// (cmd.Wait) as with cmd.Start.
func startOwned(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	if err := spawnerOf().Start(cmd); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	start, _, _ := procStat(pid)
	if err := recordChild(pid, start); err != nil {
		t.Logf("record child %d for the next run: %v", pid, err)
	}
	t.Cleanup(func() { killGroup(pid, start) })
	return nil
}

// runOwned runs cmd as an owned child and waits for it (exec.Cmd.Run).
func runOwned(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	if err := startOwned(t, cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// combinedOwned runs cmd as an owned child and returns its standard output and error together
// (exec.Cmd.CombinedOutput).
func combinedOwned(t *testing.T, cmd *exec.Cmd) ([]byte, error) {
	t.Helper()
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := runOwned(t, cmd)
	return b.Bytes(), err
}

// killGroup kills the process group led by pid, if pid is still the process that started at
// start (alive, or dead and not yet reaped): with pid_max as low as 32768 a pid comes round
// again within a long run, and another group must never be hit.
func killGroup(pid int, start uint64) {
	if groupAlive(pid, start) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// procStat reads a process's start time (clock ticks since boot) and process group from
// /proc/<pid>/stat; ok is false when there is no such process.
func procStat(pid int) (start uint64, pgrp int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, 0, false
	}
	pgrp, err1 := strconv.Atoi(f[2])                // field 5
	start, err2 := strconv.ParseUint(f[19], 10, 64) // field 22
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return start, pgrp, true
}

// childrenMu serialises this binary's writes to the record of children.
var childrenMu sync.Mutex

// childrenFile is where the groups are recorded: beside the clusters' state (KMIRROR_KAFKA_STATE,
// as cluster.sh reads it), which a run's clusters share and a parallel run does not.
func childrenFile() string {
	root := os.Getenv("KMIRROR_KAFKA_STATE")
	if root == "" {
		root = "/tmp/kmirror-kafka"
	}
	return filepath.Join(root, "e2e-children")
}

// recordChild records the group pid, led by the process that started at start, as this test
// binary's.
func recordChild(pid int, start uint64) error {
	self := os.Getpid()
	selfStart, _, _ := procStat(self)
	return writeRecord(pid, start, self, selfStart)
}

// writeRecord appends "<pgid> <start> <owner pid> <owner start>" to the record.
func writeRecord(pgid int, start uint64, owner int, ownerStart uint64) error {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	p := childrenFile()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d %d %d\n", pgid, start, owner, ownerStart)
	return errors.Join(err, f.Close())
}

// killLeftovers kills every recorded group whose test binary is gone, and keeps only the records
// of binaries still running. It returns the groups it killed.
func killLeftovers() ([]int, error) {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	p := childrenFile()
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keep []string
	var killed []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var pgid, owner int
		var start, ownerStart uint64
		if _, err := fmt.Sscan(sc.Text(), &pgid, &start, &owner, &ownerStart); err != nil {
			continue
		}
		if now, _, ok := procStat(owner); ok && now == ownerStart {
			keep = append(keep, sc.Text())
			continue
		}
		if groupAlive(pgid, start) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killed = append(killed, pgid)
		}
	}
	body := strings.Join(keep, "\n")
	if body != "" {
		body += "\n"
	}
	return killed, os.WriteFile(p, []byte(body), 0o644)
}

// groupAlive reports whether the group pgid still has its leader, the process that started at
// start. (The children recorded here do not fork: a group whose leader is gone is empty.)
func groupAlive(pgid int, start uint64) bool {
	now, _, ok := procStat(pgid)
	return ok && now == start
}

// TestStartReturnsAKmirrorThatStoppedAtOnce: a kmirror that starts and refuses within
// milliseconds (the same cluster as source and target, told by cluster IDs) is handed to its
// test, which reads the exit; the harness used to fail such a test as "exited at start" when
// the process ended between two looks at its log (it failed TestActiveActivePrefix in CI).
// Here a stand-in binary logs the start line and exits 1 after 10 ms, inside the harness's
// 20 ms between looks.
func TestStartReturnsAKmirrorThatStoppedAtOnce(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kmirror")
	script := "#!/bin/sh\nsleep 0.01\necho '{\"msg\":\"starting kmirror\"}'\necho 'refused' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		k := startKmirrorBin(t, bin, "unused.yaml")
		if code := k.waitExit(10 * time.Second); code != 1 {
			t.Fatalf("run %d: exit %d, want 1", i, code)
		}
	}
}
