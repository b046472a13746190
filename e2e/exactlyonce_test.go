//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// The exactly-once tests run kmirror with delivery.mode exactly_once and otherwise baseConfig
// (default slots, transaction sizes and timeouts), break it the ways a transactional mirror must
// survive — kill -9, a member frozen past its session (a zombie), members joining and leaving —
// and hold it to its promise: a read_committed consumer of the target sees every source record
// exactly once, in source order, partition by partition. The load runs until the scenario is
// over (stopLoad), so every fault lands while records flow.

const (
	// eosSettings is what the exactly-once tests add to baseConfig.
	eosSettings = "delivery:\n  mode: exactly_once\n"
	// positionsGroup is the target group holding the source positions: <consumer.group_id>-<source.alias>-positions.
	positionsGroup = "kmirror-europe-positions"
	// endless is more records than any scenario writes: stopLoad ends the load.
	endless = 10_000_000
)

// stopLoad ends the run's load and returns how many records the source acknowledged.
func (r *faultRun) stopLoad() int {
	close(r.load.stop)
	return r.load.wait(r.t)
}

// restartIfFailed does what systemd does for a kmirror that stopped by itself: an exit with
// status 1 (exactly_once ends the process so on a failed transaction) is logged and the process
// started again; any other exit fails the test. It returns the running process and whether it
// was restarted.
func restartIfFailed(t *testing.T, k *kmirror, cfg, who string) (*kmirror, bool) {
	t.Helper()
	gone, how := k.exited()
	if !gone {
		return k, false
	}
	if k.cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("%s: %s, not the status 1 of a failed transaction\n%s", who, how, k.errors())
	}
	t.Logf("restarted %s after it stopped by itself (%s): %s", who, how, k.errors())
	return startKmirror(t, cfg), true
}

// requireRunning fails the test if one of the named processes has exited.
func requireRunning(t *testing.T, when string, ks map[string]*kmirror) {
	t.Helper()
	for name, k := range ks {
		if gone, how := k.exited(); gone {
			t.Fatalf("%s stopped %s: %s\n%s", name, when, how, k.errors())
		}
	}
}

// hold waits d, failing the test as soon as one of the named processes exits.
func hold(t *testing.T, d time.Duration, when string, ks map[string]*kmirror) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		requireRunning(t, when, ks)
	}
}

// waitCommitted waits until the source positions kmirror committed on the target (in
// positionsGroup) reach the source's end offset in every partition of the run's topic, calling
// check on every round; it returns how long that took, or fails naming the partitions behind.
func waitCommitted(t *testing.T, r *faultRun, limit time.Duration, check func()) time.Duration {
	t.Helper()
	began := time.Now()
	src, dst := r.europe.admin(t), r.us.admin(t)
	var behind []string
	for time.Since(began) < limit {
		check()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, errEnds := src.ListEndOffsets(ctx, r.topic)
		pos, errPos := dst.FetchOffsets(ctx, positionsGroup)
		cancel()
		behind = behind[:0]
		if err := errors.Join(errEnds, errPos, ends.Error()); err != nil {
			behind = append(behind, err.Error())
		} else {
			ends.Each(func(o kadm.ListedOffset) {
				switch c, ok := pos.Lookup(r.topic, o.Partition); {
				case !ok || c.Err != nil:
					behind = append(behind, fmt.Sprintf("partition %2d: no position, source end %d", o.Partition, o.Offset))
				case c.At != o.Offset:
					behind = append(behind, fmt.Sprintf("partition %2d: position %d, source end %d", o.Partition, c.At, o.Offset))
				}
			})
		}
		if len(behind) == 0 {
			return time.Since(began)
		}
		time.Sleep(500 * time.Millisecond)
	}
	sort.Strings(behind)
	t.Fatalf("the positions in %s on the target did not reach the source's end within %s:\n  %s",
		positionsGroup, limit, strings.Join(behind, "\n  "))
	return 0
}

// waitNoOpenTransaction waits until every partition of topic on c has its last stable offset at
// its log end: no transaction left open by a process that stopped. A committed transaction's
// markers are written after EndTxn returns, so it allows 30 s.
func waitNoOpenTransaction(t *testing.T, c *cluster, topic string) {
	t.Helper()
	adm := c.admin(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stable, errStable := adm.ListCommittedOffsets(ctx, topic)
		ends, errEnds := adm.ListEndOffsets(ctx, topic)
		cancel()
		var open []string
		if err := errors.Join(errStable, errEnds, stable.Error(), ends.Error()); err != nil {
			open = append(open, err.Error())
		} else {
			ends.Each(func(o kadm.ListedOffset) {
				if s, _ := stable.Lookup(topic, o.Partition); s.Offset != o.Offset {
					open = append(open, fmt.Sprintf("partition %2d: last stable offset %d, log end %d", o.Partition, s.Offset, o.Offset))
				}
			})
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(open)
			t.Fatalf("transactions still open on %s's %s 30s after kmirror stopped:\n  %s", c.name, topic, strings.Join(open, "\n  "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkExactlyOnce compares the run's topic on both clusters, once reading the target
// read_committed (as verify does) and once read_uncommitted (to count the aborted copies), logs
// the figures with extra, and fails unless every partition read_committed holds the source's
// records exactly once, in order.
func checkExactlyOnce(t *testing.T, r *faultRun, extra string) {
	t.Helper()
	waitNoOpenTransaction(t, r.us, r.topic)
	topics := map[string]string{r.topic: r.topic}
	rep := compareReport(t, r.europe, r.us, topics)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	seen, err := verify.CompareWith(ctx, r.europe.bootstrap, r.us.bootstrap, topics,
		verify.Options{TargetOpts: []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadUncommitted())}})
	if err != nil {
		t.Fatalf("compare read_uncommitted: %v", err)
	}
	u := seen.Sum()
	logFigures(t, rep, fmt.Sprintf("%s; read_uncommitted: target %d, duplicates %d (aborted copies), lost %d",
		extra, u.Target, u.Duplicates, u.Lost))
	if !rep.Exact() {
		t.Fatalf("the target read_committed does not hold every source record exactly once, in order:\n%s\nread_uncommitted: %s", rep, seen)
	}
}

// logEnd returns a function summing the log end offsets of topic on c: records, aborted copies
// and transaction markers, growing whenever kmirror writes.
func logEnd(t *testing.T, c *cluster, topic string) func() int64 {
	adm := c.admin(t)
	return func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, _ := verify.EndOffsets(ctx, adm, topic)
		return n
	}
}

// TestExactlyOnceAcrossKills kills kmirror -9 ten times under load, each time a random moment
// (up to 1 s) after it has written 2000 more offsets since its start — in the middle of
// transactions — and starts it again. Once it has caught up, read_committed, every source record
// is on the target once, in source order.
func TestExactlyOnceAcrossKills(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "eoskill", 6, 1, nil, endless, 4_000, 5_000, eosSettings)
	end := logEnd(t, us, r.topic)
	const kills = 10
	exits := 0
	began := time.Now()
	for i := 1; i <= kills; i++ {
		from := end()
		waitFor(t, fmt.Sprintf("kmirror to write 2000 offsets before kill %d", i), 2*time.Minute, func() bool {
			var again bool
			if r.k, again = restartIfFailed(t, r.k, r.cfg, "kmirror"); again {
				exits++
			}
			return end() >= from+2_000
		})
		time.Sleep(rand.N(time.Second))
		r.k.kill()
		t.Logf("killed kmirror -9 (%d of %d) %s into the run: target log end %d, %d produced",
			i, kills, time.Since(began).Round(100*time.Millisecond), end(), r.load.count())
		r.k = startKmirror(t, r.cfg)
	}
	produced := r.stopLoad()
	took := waitCommitted(t, r, 3*time.Minute, func() {
		var again bool
		if r.k, again = restartIfFailed(t, r.k, r.cfg, "kmirror"); again {
			exits++
		}
	})
	r.k.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d in %s, %d kills -9, %d exits with status 1, caught up %s after the load",
		produced, time.Since(began).Round(time.Second), kills, exits, took.Round(100*time.Millisecond)))
}

// TestExactlyOnceZombieIsFenced runs two members under load and freezes one (SIGSTOP) for 25 s,
// past its 10 s session: the group drops it and the other member takes its slots, fencing its
// transactional ids, and goes on committing every partition. Then the frozen one (the zombie)
// thaws, still believing it owns its slots: whatever it writes must stay uncommitted. It may
// stop with status 1 (a failed transaction), and is then restarted as systemd would. Both run a
// while, then stop; read_committed, every source record is on the target once, in order.
func TestExactlyOnceZombieIsFenced(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "eoszombie", 6, 1, nil, endless, 3_000, 5_000, eosSettings)
	zombie, other := r.k, startKmirror(t, r.cfg)
	waitForMembers(t, europe, 2)
	hold(t, 5*time.Second, "with two members", map[string]*kmirror{"the first member": zombie, "the second member": other})

	pid := zombie.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP kmirror (pid %d): %v", pid, err)
	}
	thaw := sync.OnceFunc(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Cleanup(thaw)
	frozen := time.Now()
	t.Logf("froze kmirror member pid %d (SIGSTOP) with target log end %d", pid, us.count(t, r.topic))
	waitForMembers(t, europe, 1)
	dropped := time.Since(frozen)
	before := committedPositions(t, us, positionsGroup)[r.topic]
	survivor := map[string]*kmirror{"the member not frozen": other}
	waitFor(t, "the member not frozen to commit new positions on all 6 partitions", time.Minute, func() bool {
		requireRunning(t, "while the other was frozen", survivor)
		now := committedPositions(t, us, positionsGroup)[r.topic]
		for p := int32(0); p < 6; p++ {
			if now[p] <= before[p] {
				return false
			}
		}
		return true
	})
	takenOver := time.Since(frozen)
	time.Sleep(time.Until(frozen.Add(25 * time.Second)))
	thaw()
	t.Logf("thawed the zombie (SIGCONT) after %s frozen; the group dropped it after %s, the other member committed every partition after %s",
		time.Since(frozen).Round(100*time.Millisecond), dropped.Round(100*time.Millisecond), takenOver.Round(100*time.Millisecond))

	// The zombie, fenced, stops within shutdown.timeout (30 s) and its margin; a commit it had in
	// flight when it was fenced can hold its stop that long (its transactional retries).
	fate := "kept running"
	for watch := time.Now(); time.Since(watch) < 45*time.Second; time.Sleep(200 * time.Millisecond) {
		requireRunning(t, "after the zombie thawed", survivor)
		if gone, how := zombie.exited(); gone && fate == "kept running" {
			fate = strings.TrimPrefix(how, "kmirror ")
			zombie, _ = restartIfFailed(t, zombie, r.cfg, "the zombie")
		}
	}
	waitForMembers(t, europe, 2)
	both := map[string]*kmirror{"the zombie": zombie, "the member not frozen": other}
	hold(t, 10*time.Second, "with both members back", both)
	produced := r.stopLoad()
	took := waitCommitted(t, r, 3*time.Minute, func() { requireRunning(t, "while catching up", both) })
	zombie.stop()
	other.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d, zombie frozen 25s (dropped after %s, partitions committed by the other after %s), after its thaw the zombie %s, caught up %s after the load",
		produced, dropped.Round(100*time.Millisecond), takenOver.Round(100*time.Millisecond), fate, took.Round(100*time.Millisecond)))
}

// TestExactlyOnceScaleOutAndIn runs one member under load, then three (slots move to the two
// new ones, which fence the first member's ids for them), then one again (the two stopped with
// SIGTERM, their slots back to the first). Read_committed, every source record is on the target
// once, in order, and no member exits but by SIGTERM.
func TestExactlyOnceScaleOutAndIn(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "eosscale", 12, 1, nil, endless, 3_000, 5_000, eosSettings)
	first := r.k
	waitForMembers(t, europe, 1)
	alone := map[string]*kmirror{"the first member": first}
	hold(t, 5*time.Second, "alone", alone)

	second, third := startKmirror(t, r.cfg), startKmirror(t, r.cfg)
	waitForMembers(t, europe, 3)
	t.Logf("grew the group to 3 members with target log end %d", us.count(t, r.topic))
	hold(t, 10*time.Second, "with three members", map[string]*kmirror{
		"the first member": first, "the second member": second, "the third member": third})

	second.stop()
	third.stop()
	t.Logf("stopped 2 of 3 members (SIGTERM) with target log end %d", us.count(t, r.topic))
	waitForMembers(t, europe, 1)
	hold(t, 5*time.Second, "alone again", alone)
	produced := r.stopLoad()
	took := waitCommitted(t, r, 3*time.Minute, func() { requireRunning(t, "while catching up", alone) })
	first.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d, 1 → 3 → 1 members, caught up %s after the load",
		produced, took.Round(100*time.Millisecond)))
}
