//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The produce pipeline tests break a target broker while kmirror copies fast enough that its
// produce pipelines keep several requests in flight per broker (up to five), with kmirror's
// default settings: nothing may be lost and the first copies must stay in source order, whatever
// the pipelines resend.

// pipelineStats reads what kmirror's produce pipelines logged when they closed: the most
// requests any had in flight to one broker, and how many times partitions were resent.
func pipelineStats(t *testing.T, k *kmirror) (peak, resends, pipelines int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(k.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			Peak    int    `json:"peak_in_flight"`
			Resends int    `json:"resends"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "produce pipeline closed" {
			continue
		}
		pipelines++
		peak = max(peak, line.Peak)
		resends += line.Resends
	}
	return peak, resends, pipelines
}

// checkInFlight fails unless the pipelines had several requests in flight and resent.
func checkInFlight(t *testing.T, k *kmirror) string {
	t.Helper()
	peak, resends, n := pipelineStats(t, k)
	figures := fmt.Sprintf("%d pipelines, peak %d requests in flight to one broker, %d partition resends", n, peak, resends)
	t.Logf("pipelines: %s", figures)
	if peak < 2 || resends == 0 {
		t.Fatalf("the fault did not test pipelined retries: %s", figures)
	}
	return figures
}

// TestTargetLeaderKilledWithRequestsInFlightLosesNothing kills (-9) the target broker leading
// most of the mirrored partitions (replicated three times on the target) under a load that keeps
// several produce requests in flight, and brings it back 15 s later.
func TestTargetLeaderKilledWithRequestsInFlightLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "inflightkill", 12, 1, nil, 900_000, 25_000, 50_000, "")

	node, led := us.busiestLeader(t, "inflightkill")
	before := us.count(t, "inflightkill")
	us.script(t, "stop-node", "us", fmt.Sprint(node))
	t.Logf("killed target node %d (leader of %d of 12 partitions) with %d records on the target", node, led, before)
	r.sleep(15*time.Second, "while a target leader was down")
	us.script(t, "start-node", "us", fmt.Sprint(node))
	r.finish(time.Now(), 3*time.Minute, fmt.Sprintf("target node %d down 15s", node))
	checkInFlight(t, r.k)
}

// TestFrozenTargetBrokerWithRequestsInFlightLosesNothing freezes (SIGSTOP) the target broker
// leading most of the mirrored partitions for 20 s under a load that keeps several produce
// requests in flight, then thaws it: the requests written to it stay unanswered until the read
// timeout, then are resent in order, on the same broker or a new leader.
func TestFrozenTargetBrokerWithRequestsInFlightLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "inflightfrozen", 12, 1, nil, 900_000, 25_000, 50_000, "")

	node, led := us.busiestLeader(t, "inflightfrozen")
	pid := us.nodePid(t, node)
	before := us.count(t, "inflightfrozen")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP target node %d (pid %d): %v", node, pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Logf("froze target node %d (pid %d, leader of %d of 12 partitions) with %d records on the target", node, pid, led, before)
	r.sleep(20*time.Second, "while a target broker was frozen")
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT target node %d (pid %d): %v", node, pid, err)
	}
	r.finish(time.Now(), 3*time.Minute, fmt.Sprintf("target node %d frozen 20s", node))
	checkInFlight(t, r.k)
}
