//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests hold exactly-once delivery to what it promises beyond crashes: a rebalance while
// transactions hold only records kmirror skips, positions that the target would expire or that
// were never written there, and two sources mirrored into one target.

// trickle writes records of 2,000 bytes to topic on c, one every 10 ms round-robin over its
// partitions, until the returned stop is called; stop returns how many were written.
func trickle(t *testing.T, c *cluster, topic string) func() int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer cl.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				_ = cl.Flush(context.Background())
				return
			case <-time.After(10 * time.Millisecond):
			}
			cl.Produce(context.Background(), &kgo.Record{Value: []byte(fmt.Sprintf("%-2000d", i))},
				func(_ *kgo.Record, err error) {
					if err == nil {
						n.Add(1)
					}
				})
		}
	}()
	var once sync.Once
	end := func() int64 { once.Do(func() { close(stop); <-done }); return n.Load() }
	t.Cleanup(func() { end() })
	return end
}

// TestExactlyOnceRebalanceWhileTransactionsHoldSkips: under exactly-once with
// producer.refused_policy skip, one topic takes a load of ordinary records and another only
// records its target topic refuses (2,000 bytes, max.message.bytes 1,000 on the target: skipped,
// so their slots' transactions hold nothing but skips and the positions past them). A second
// and a third member join and leave, twice: every rebalance revokes partitions while such
// transactions are open. delivery.transaction.max_age is 5 s (a setting users pick to commit
// less often): with the default 100 ms a skip-only transaction is committed by its age before
// the group's rebalance completes, and the window this test is about is too narrow to hit. No
// member may stop (a skip acknowledged before its transaction committed let the claim drain and
// the next session close the producer under it: a panic in CommitTxn); read_committed, the
// ordinary records are on the target exactly once, in order, none of the skipped ones is, and
// the positions pass every skipped record.
func TestExactlyOnceRebalanceWhileTransactionsHoldSkips(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	const topic, skips = "eosskip", "eosskipus"
	europe.createTopic(t, topic, 6, 1, nil)
	europe.createTopic(t, skips, 6, 1, nil)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us}
	r.load = startLoad(t, europe.bootstrap, topic, endless, 2_000)
	r.load.stopAtCleanup(t)
	us.createTopic(t, skips, 6, 1, map[string]*string{"max.message.bytes": ptr("1000")})
	stopTrickle := trickle(t, europe, skips)
	r.cfg = writeConfig(t, keepTargetConfigs(baseConfig(europe, us, "eosskip.*",
		eosSettings+"  transaction: {max_age: 5s, backlog_max_age: 5s}\nproducer:\n  refused_policy: skip\n")))
	first := startKmirror(t, r.cfg)
	r.k = first
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, topic) >= 3_000 })
	waitForMembers(t, europe, 1)
	alone := map[string]*kmirror{"the first member": first}
	for round := 1; round <= 2; round++ {
		second, third := startKmirror(t, r.cfg), startKmirror(t, r.cfg)
		waitForMembers(t, europe, 3)
		all := map[string]*kmirror{"the first member": first, "the second member": second, "the third member": third}
		hold(t, 8*time.Second, fmt.Sprintf("with three members (round %d)", round), all)
		second.stop()
		third.stop()
		waitForMembers(t, europe, 1)
		hold(t, 5*time.Second, fmt.Sprintf("alone again (round %d)", round), alone)
		t.Logf("round %d: 1 → 3 → 1 members, target log end %d", round, us.count(t, topic))
	}
	produced := r.stopLoad()
	skipped := stopTrickle()
	took := waitCommitted(t, r, 3*time.Minute, func() { requireRunning(t, "while catching up", alone) })

	// The positions of the skipped topic pass every record written to it.
	waitFor(t, "the positions of the skipped topic at its source end", time.Minute, func() bool {
		requireRunning(t, "while the skips' positions catch up", alone)
		pos := committedPositions(t, us, positionsGroup)[skips]
		var sum int64
		for _, o := range pos {
			sum += o
		}
		return sum == skipped
	})
	first.stop()
	if n := us.count(t, skips); n > 0 {
		// Only transaction markers may be there: read it committed and count records.
		rep := compareReport(t, europe, us, map[string]string{skips: skips})
		if s := rep.Sum(); s.Target != 0 {
			t.Fatalf("%d records the target refuses were copied to it", s.Target)
		}
	}
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d, %d refused records skipped, 2 rounds of 1 → 3 → 1 members, caught up %s after the load",
		produced, skipped, took.Round(100*time.Millisecond)))
}

// TestExactlyOnceAfterAtLeastOnceResumesWhereItStopped: a mirror runs at-least-once, stops
// cleanly, and is switched to exactly-once. The positions group on the target does not exist
// (never written; or expired, which looks the same): the partitions must resume where the
// at-least-once run stopped (the source group's offsets), not at consumer.initial_offset.
// Read_committed, every source record is on the target exactly once, in order.
func TestExactlyOnceAfterAtLeastOnceResumesWhereItStopped(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	const topic = "alo2eos"
	europe.createTopic(t, topic, 6, 1, nil)
	lp := startLoad(t, europe.bootstrap, topic, 6_000, 0)
	first := lp.wait(t)
	alo := writeConfig(t, baseConfig(europe, us, topic, ""))
	k := startKmirror(t, alo)
	waitFor(t, "the at-least-once run to copy everything", 2*time.Minute, func() bool { return us.count(t, topic) >= int64(first) })
	time.Sleep(time.Second) // its commit interval
	k.stop()
	if rep := compareReport(t, europe, us, map[string]string{topic: topic}); !rep.Exact() {
		t.Fatalf("the at-least-once run is not exact before the switch: %s", rep)
	}
	if _, err := us.admin(t).FetchOffsets(context.Background(), positionsGroup); err == nil {
		if pos := committedPositions(t, us, positionsGroup)[topic]; len(pos) > 0 {
			t.Fatalf("positions group %s exists before the first exactly-once run: %v", positionsGroup, pos)
		}
	}

	lp = startLoad(t, europe.bootstrap, topic, 3_000, 0)
	second := lp.wait(t)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us, cfg: writeConfig(t, baseConfig(europe, us, topic, eosSettings))}
	r.k = startKmirror(t, r.cfg)
	took := waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, "after the switch", map[string]*kmirror{"kmirror": r.k}) })
	time.Sleep(time.Second) // a wrong start would still be copying
	log := r.k.log()
	r.k.stop()
	if !strings.Contains(log, "source_group") {
		t.Errorf("kmirror did not log that it recovered the positions from the source group:\n%s", lastLines(log, 40))
	}
	checkExactlyOnce(t, r, fmt.Sprintf("%d records at-least-once, then %d more exactly-once after the switch (no positions group), caught up in %s",
		first, second, took.Round(100*time.Millisecond)))
}

// TestExactlyOncePositionsOfIdlePartitionsStayFresh: the positions group has no members, so the
// target expires its offsets offsets.retention.minutes after their last commit. With the target
// expiring them after one minute and delivery.positions_refresh at 10 s, a topic that goes idle
// for two minutes keeps its positions on the target; records written after the idle spell are
// copied exactly once.
func TestExactlyOncePositionsOfIdlePartitionsStayFresh(t *testing.T) {
	europe := startCluster(t, "europe")
	props := filepath.Join(t.TempDir(), "retention.properties")
	if err := os.WriteFile(props, []byte("offsets.retention.minutes=1\noffsets.retention.check.interval.ms=5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	us := startCluster(t, "us", "--extra-config", props)
	const topic = "eosidle"
	europe.createTopic(t, topic, 4, 1, nil)
	first := startLoad(t, europe.bootstrap, topic, 2_000, 0).wait(t)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us,
		cfg: writeConfig(t, baseConfig(europe, us, topic, eosSettings+"  positions_refresh: 10s\n"))}
	r.k = startKmirror(t, r.cfg)
	running := map[string]*kmirror{"kmirror": r.k}
	waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, "copying", running) })
	idle := time.Now()
	for time.Since(idle) < 2*time.Minute {
		hold(t, 10*time.Second, "idle", running)
		if pos := committedPositions(t, us, positionsGroup)[topic]; len(pos) != 4 {
			t.Fatalf("after %s idle the positions group holds %d of the topic's 4 positions (%v): the target expired them",
				time.Since(idle).Round(time.Second), len(pos), pos)
		}
	}
	second := startLoad(t, europe.bootstrap, topic, 1_000, 0).wait(t)
	waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, "after the idle spell", running) })
	r.k.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("%d records, 2 minutes idle with offsets.retention.minutes=1 on the target, then %d more",
		first, second))
}

// fanInConfig is a baseConfig of the flow from src (named alias) to dst with the prefix policy
// (the target topics are <alias>.<topic>) and the default consumer.group_id.
func fanInConfig(src, dst *cluster, alias, topic, extra string) string {
	cfg := baseConfig(src, dst, topic, extra)
	cfg = strings.Replace(cfg, "source:\n  alias: europe\n", "source:\n  alias: "+alias+"\n", 1)
	return strings.Replace(cfg, "  refresh_interval: 2s\n", "  refresh_interval: 2s\n  replication_policy: prefix\n", 1)
}

// TestFanInTwoSourcesIntoOneTarget runs two flows with the default consumer.group_id into one
// target, from europe and from a third cluster, asia, each under load: at-least-once, then
// exactly-once. What a flow keeps on the target (in exactly-once its transactional ids and its
// positions group) is named after its source alias, so neither fences the other: both copy
// everything, none lost, none twice (read_committed in exactly-once), in order. A third flow
// configured with europe's alias but reading asia, which would share europe's names, is refused
// by validate --connect.
func TestFanInTwoSourcesIntoOneTarget(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	asia := startCluster(t, "asia")
	for _, mode := range []struct{ name, extra string }{{"at_least_once", ""}, {"exactly_once", eosSettings}} {
		topic := "fanin" + strings.ReplaceAll(mode.name, "_", "")
		sources := []struct {
			alias string
			c     *cluster
		}{{"europe", europe}, {"asia", asia}}
		loads := make([]*loadProducer, len(sources))
		runs := make([]*kmirror, len(sources))
		for i, s := range sources {
			s.c.createTopic(t, topic, 6, 1, nil)
			loads[i] = startLoad(t, s.c.bootstrap, topic, 20_000, 2_000)
			runs[i] = startKmirror(t, writeConfig(t, fanInConfig(s.c, us, s.alias, topic, mode.extra)))
		}
		flows := map[string]*kmirror{"europe → us": runs[0], "asia → us": runs[1]}
		hold(t, 5*time.Second, mode.name+" with both flows", flows)
		produced := make([]int, len(sources))
		for i := range sources {
			produced[i] = loads[i].wait(t)
		}
		for i, s := range sources {
			target := s.alias + "." + topic
			waitFor(t, fmt.Sprintf("%s (%s) to copy its %d records", s.alias, mode.name, produced[i]), 3*time.Minute, func() bool {
				requireRunning(t, "while copying", flows)
				return us.count(t, target) >= int64(produced[i])
			})
		}
		if mode.name == "exactly_once" {
			// A flow whose source alias says europe but which reads asia would use europe's
			// names on the target: validate --connect refuses it.
			clash := writeConfig(t, fanInConfig(asia, us, "europe", topic, mode.extra))
			code, out := validate(t, clash)
			verdict := verdictLines(out, "positions group not shared")
			t.Logf("validate --connect of a flow from asia under europe's alias: status %d\n%s", code, verdict)
			if code != 1 || !strings.Contains(verdict, "FAILED") || !strings.Contains(verdict, "source.alias") {
				t.Fatalf("validate --connect of a flow sharing europe's names: want status 1 with \"positions group not shared\" FAILED and a fix; got %d\n%s", code, out)
			}
		}
		time.Sleep(2 * time.Second) // the last commits
		for _, k := range runs {
			k.stop()
		}
		for i, s := range sources {
			target := s.alias + "." + topic
			if mode.name == "exactly_once" {
				waitNoOpenTransaction(t, us, target)
			}
			rep := compareReport(t, s.c, us, map[string]string{topic: target})
			logFigures(t, rep, fmt.Sprintf("%s, %s → us, produced %d", mode.name, s.alias, produced[i]))
			if !rep.Exact() {
				t.Fatalf("%s: %s → us is not exact (read_committed): %s", mode.name, s.alias, rep)
			}
		}
	}
}
