package owned

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play a harness: with OWNED_HARNESS set it starts a child
// through a Spawner, prints the child's pid and waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv("OWNED_HARNESS") == "1" {
		s := NewSpawner()
		cmd := exec.Command("sleep", "300")
		if err := s.Start(cmd); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		select {}
	}
	os.Exit(m.Run())
}

// TestChildDiesWithTheHarness kills a harness with SIGKILL, which runs no cleanup of its own,
// and expects its child gone, and the child to have led a process group of its own.
func TestChildDiesWithTheHarness(t *testing.T) {
	harness := exec.Command(os.Args[0], "-test.run=^$")
	harness.Env = append(os.Environ(), "OWNED_HARNESS=1")
	out, err := harness.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the harness printed %q, want its child's pid", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(-child, syscall.SIGKILL) })
	if pgid, err := syscall.Getpgid(child); err != nil || pgid != child {
		t.Fatalf("child %d in process group %d (%v), want a group of its own", child, pgid, err)
	}
	_ = harness.Process.Kill()
	_ = harness.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs 10 s after its harness was killed", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie, reaped by init soon, counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
