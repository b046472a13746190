// Package owned starts the benchmark harnesses' child processes (kmirror, the bare mirrors,
// MirrorMaker 2) so that none outlives the harness, however the harness ends: finished, failed,
// interrupted or killed.
//
// Invariant: a child a Spawner started is the leader of a process group of its own, and the
// kernel sends it SIGKILL when the harness ends (Pdeathsig). The kernel sends that signal when
// the OS thread that forked the child ends, not the process, so every child is forked by one
// goroutine locked to its thread for the life of the process; no thread exit of the Go runtime
// kills a child early. Kafka brokers are not started here: scripts/kafka/cluster.sh kills each
// node once the process named by KAFKA_OWNER_PID is gone.
package owned

import (
	"bytes"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
)

// Spawner forks children from its one locked thread. Make one per process, at its start.
type Spawner struct{ reqs chan spawn }

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

// NewSpawner starts the goroutine that forks every child. It locks its OS thread and never
// unlocks it, so that the thread ends with the process, not before.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawn)}
	go func() {
		runtime.LockOSThread() // never unlocked: see the package doc
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

// Start starts cmd as exec.Cmd.Start does, in a process group of its own and killed when this
// process ends. The caller waits for it (cmd.Wait).
func (s *Spawner) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	s.reqs <- spawn{cmd: cmd, done: done}
	if err := <-done; err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

// Kill kills the process group of cmd, started by Start and not yet waited for.
func Kill(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// CombinedOutput runs cmd as exec.Cmd.CombinedOutput does, started by Start.
func (s *Spawner) CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := s.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return b.Bytes(), err
}
