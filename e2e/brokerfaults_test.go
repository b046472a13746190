//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kmirror/kmirror/pkg/verify"
)

// The broker-fault tests break one broker of the source or the target while kmirror copies
// under load, with kmirror's default settings, and hold it to its promise: no record lost, the
// first copies in source order (duplicates only as whole re-runs), and kmirror still running.

// faultRun is one mirrored topic under load with kmirror running.
type faultRun struct {
	t          *testing.T
	topic      string
	europe, us *cluster
	k          *kmirror
	cfg        string // kmirror's configuration file
	load       *loadProducer
	// exited is set the first time kmirror is found to have stopped when it should run.
	exited string
}

// startFaultRun creates topic on europe (partitions, replication factor rf, configs), starts a
// load of records at rate per second and kmirror with baseConfig plus extra (empty: default
// settings), and waits until the target holds warm records.
func startFaultRun(t *testing.T, europe, us *cluster, topic string, partitions int32, rf int16,
	configs map[string]*string, records, rate int, warm int64, extra string) *faultRun {
	t.Helper()
	europe.createTopic(t, topic, partitions, rf, configs)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us}
	r.load = startLoad(t, europe.bootstrap, topic, records, rate)
	r.load.stopAtCleanup(t)
	r.cfg = writeConfig(t, baseConfig(europe, us, topic, extra))
	r.k = startKmirror(t, r.cfg)
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, topic) >= warm })
	return r
}

// running reports whether kmirror still runs, remembering when it was first found stopped.
func (r *faultRun) running(when string) bool {
	if gone, how := r.k.exited(); gone {
		if r.exited == "" {
			r.exited = how + " (found " + when + ")"
			r.t.Logf("%s", r.exited)
		}
		return false
	}
	return true
}

// sleep waits d, checking that kmirror keeps running.
func (r *faultRun) sleep(d time.Duration, during string) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && r.running(during) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Until(deadline))
}

// finish waits for the load to end and kmirror to catch up (within catchUp of the fault's
// end), stops kmirror, compares both clusters and fails unless every record arrived in order
// with kmirror running throughout. It logs the figures and returns the report.
func (r *faultRun) finish(faultEnded time.Time, catchUp time.Duration, extra string) verify.Report {
	t := r.t
	t.Helper()
	produced := r.load.wait(t)
	var caughtUp time.Duration
	var lag string
	if r.running("while the load ran") {
		caughtUp, lag = r.waitCaughtUp(int64(produced), faultEnded, catchUp)
	}
	if r.running("before it was stopped") {
		r.k.stop()
	}
	rep := compareReport(t, r.europe, r.us, map[string]string{r.topic: r.topic})
	figures := fmt.Sprintf("produced %d, caught up %s after the fault", produced, caughtUp.Round(100*time.Millisecond))
	if caughtUp == 0 {
		figures = fmt.Sprintf("produced %d, never caught up", produced)
	}
	if extra != "" {
		figures += ", " + extra
	}
	logFigures(t, rep, figures)
	switch {
	case r.exited != "":
		t.Fatalf("%s; the fault must not stop kmirror with default settings\nkmirror errors:\n%s\nverify: %s",
			r.exited, r.k.errors(), rep)
	case lag != "":
		t.Fatalf("kmirror did not catch up within %s of the fault's end: %s\nverify: %s", catchUp, lag, rep)
	case !rep.Complete():
		t.Fatalf("records lost, changed or out of order:\n%s", rep)
	}
	return rep
}

// waitCaughtUp waits until the target holds at least produced records and the kmirror group
// has committed the source's end offsets; it returns how long after faultEnded that happened,
// or what was missing when limit passed (or kmirror exited).
func (r *faultRun) waitCaughtUp(produced int64, faultEnded time.Time, limit time.Duration) (time.Duration, string) {
	adm := r.europe.admin(r.t)
	var missing string
	for time.Since(faultEnded) < limit {
		if !r.running("while catching up") {
			return 0, ""
		}
		got := r.us.count(r.t, r.topic)
		committed, end := groupProgress(adm, r.topic)
		if got >= produced && committed == end {
			return time.Since(faultEnded), ""
		}
		missing = fmt.Sprintf("target holds %d of %d records, group committed %d of %d source offsets", got, produced, committed, end)
		time.Sleep(500 * time.Millisecond)
	}
	return 0, missing
}

// groupProgress sums the kmirror group's committed offsets and the source's end offsets of
// topic (-1 when either cannot be read).
func groupProgress(adm *kadm.Client, topic string) (committed, end int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return -1, -2
	}
	offs, err := adm.FetchOffsets(ctx, "kmirror")
	if err != nil {
		return -1, -2
	}
	ends.Each(func(o kadm.ListedOffset) {
		end += o.Offset
		if c, ok := offs.Lookup(topic, o.Partition); ok && c.Err == nil {
			committed += c.At
		}
	})
	return committed, end
}

// leaders counts, per node, the partitions of topic it leads.
func (c *cluster) leaders(t *testing.T, topic string) map[int32]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := c.admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("list topic %s on %s: %v", topic, c.name, err)
	}
	out := map[int32]int{}
	for _, p := range details[topic].Partitions {
		if p.Err == nil && p.Leader >= 0 {
			out[p.Leader]++
		}
	}
	return out
}

// busiestLeader is the node leading the most partitions of topic, and how many it leads.
func (c *cluster) busiestLeader(t *testing.T, topic string) (node int32, led int) {
	t.Helper()
	node = -1
	for n, k := range c.leaders(t, topic) {
		if k > led || (k == led && n < node) {
			node, led = n, k
		}
	}
	if node < 0 {
		t.Fatalf("no partition of %s on %s has a leader", topic, c.name)
	}
	return node, led
}

// underReplicated counts the partitions of every topic whose in-sync replicas fall short of
// their replicas (-1 when the cluster cannot say).
func (c *cluster) underReplicated(t *testing.T) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	details, err := c.admin(t).ListTopics(ctx)
	if err != nil {
		return -1
	}
	n := 0
	for _, td := range details {
		for _, p := range td.Partitions {
			if p.Err != nil || len(p.ISR) < len(p.Replicas) {
				n++
			}
		}
	}
	return n
}

// nodePid is the process id of a node of the cluster, from its pid file.
func (c *cluster) nodePid(t *testing.T, node int32) int {
	t.Helper()
	root := os.Getenv("KMIRROR_KAFKA_STATE")
	if root == "" {
		root = "/tmp/kmirror-kafka"
	}
	b, err := os.ReadFile(filepath.Join(root, c.name, fmt.Sprintf("node-%d", node), "pid"))
	if err != nil {
		t.Fatalf("pid of %s node %d: %v", c.name, node, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid of %s node %d: %v", c.name, node, err)
	}
	return pid
}

// TestTargetLeaderKilledLosesNothing kills (-9) the target broker leading most of the mirrored
// partitions under load and brings it back 20 s later.
func TestTargetLeaderKilledLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "tleader", 6, 1, nil, 100_000, 4_000, 10_000, "")

	node, led := us.busiestLeader(t, "tleader")
	before := us.count(t, "tleader")
	us.script(t, "stop-node", "us", fmt.Sprint(node))
	t.Logf("killed target node %d (leader of %d of 6 partitions) with %d records on the target", node, led, before)
	r.sleep(20*time.Second, "while a target leader was down")
	us.script(t, "start-node", "us", fmt.Sprint(node))
	r.finish(time.Now(), 3*time.Minute, fmt.Sprintf("target node %d down 20s", node))
}

// TestSourceLeaderKilledLosesNothing kills (-9) the source broker leading most of the mirrored
// partitions (replication factor 3, min.insync.replicas 2) under load and brings it back 20 s
// later. The source keeps taking records on the other two replicas meanwhile.
func TestSourceLeaderKilledLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe", "--nodes", "3")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "sleader", 6, 3, map[string]*string{"min.insync.replicas": ptr("2")},
		100_000, 4_000, 10_000, "")

	node, led := europe.busiestLeader(t, "sleader")
	before := us.count(t, "sleader")
	europe.script(t, "stop-node", "europe", fmt.Sprint(node))
	t.Logf("killed source node %d (leader of %d of 6 partitions) with %d records on the target", node, led, before)
	r.sleep(20*time.Second, "while a source leader was down")
	europe.script(t, "start-node", "europe", fmt.Sprint(node))
	r.finish(time.Now(), 3*time.Minute, fmt.Sprintf("source node %d down 20s", node))
}

// TestSingleTargetDown30sLosesNothing stops the only target broker for 30 s under load: kmirror
// must wait for it, not exit, and catch up once it is back.
func TestSingleTargetDown30sLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "tdown", 6, 1, nil, 100_000, 2_500, 10_000, "")

	before := us.count(t, "tdown")
	us.script(t, "stop-node", "us", "1")
	t.Logf("stopped the single target node with %d records on the target", before)
	r.sleep(30*time.Second, "while the target was down")
	us.script(t, "start-node", "us", "1")
	back := time.Now()
	t.Logf("target back after 30s; %d records produced so far", r.load.count())
	r.finish(back, 3*time.Minute, "target down 30s")
}

// TestRollingRestartOfTargetLosesNothing restarts the three target brokers one at a time (a
// controlled shutdown, SIGTERM), waiting for every partition to be fully replicated again
// before the next, under load.
func TestRollingRestartOfTargetLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "rolling", 6, 1, nil, 100_000, 2_000, 10_000, "")

	for node := 1; node <= 3; node++ {
		before := us.count(t, "rolling")
		us.script(t, "stop-node", "us", fmt.Sprint(node), "--graceful")
		t.Logf("restarted target node %d: stopped with %d records on the target", node, before)
		us.script(t, "start-node", "us", fmt.Sprint(node))
		start := time.Now()
		waitFor(t, "target partitions to be fully replicated again", 2*time.Minute, func() bool {
			r.running(fmt.Sprintf("while target node %d restarted", node))
			return us.underReplicated(t) == 0
		})
		t.Logf("restarted target node %d: replicas in sync %s after its start", node, time.Since(start).Round(100*time.Millisecond))
	}
	r.finish(time.Now(), 3*time.Minute, "3 target nodes restarted one at a time")
}

// TestFrozenTargetBrokerLosesNothing freezes (SIGSTOP) the target broker leading most of the
// mirrored partitions for 20 s under load, then thaws it (SIGCONT): its connections stay open
// but nothing answers, as in a long GC pause or a stalled VM.
func TestFrozenTargetBrokerLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "frozen", 6, 1, nil, 100_000, 4_000, 10_000, "")

	node, led := us.busiestLeader(t, "frozen")
	pid := us.nodePid(t, node)
	before := us.count(t, "frozen")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP target node %d (pid %d): %v", node, pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Logf("froze target node %d (pid %d, leader of %d of 6 partitions) with %d records on the target", node, pid, led, before)
	r.sleep(20*time.Second, "while a target broker was frozen")
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT target node %d (pid %d): %v", node, pid, err)
	}
	r.finish(time.Now(), 3*time.Minute, fmt.Sprintf("target node %d frozen 20s", node))
}
