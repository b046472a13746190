//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// producerStates counts, over the partitions of topic on c, the idempotent producers whose
// state (producer id, epoch, last sequence) the partition leaders keep (-1 when they cannot
// say).
func (c *cluster) producerStates(t *testing.T, topic string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	described, err := c.admin(t).DescribeProducers(ctx, kadm.TopicsSet{topic: nil})
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range described[topic].Partitions {
		if p.Err != nil {
			return -1
		}
		n += len(p.ActiveProducers)
	}
	return n
}

// setProducerExpiry sets producer.id.expiration.ms on every broker of c (a dynamic,
// cluster-wide broker config).
func (c *cluster) setProducerExpiry(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := fmt.Sprint(d.Milliseconds())
	resp, err := c.admin(t).AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "producer.id.expiration.ms", Value: &v}})
	if err == nil {
		for _, r := range resp {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		t.Fatalf("set producer.id.expiration.ms=%s on %s: %v", v, c.name, err)
	}
}

// TestTargetSequenceStateLostRecovers forces the sequence paths of the at-least-once produce
// pipeline on a real target, with kmirror's default settings, in three phases under load:
//
//  1. the target forgets the pipeline's producer: producer.id.expiration.ms is 8 s on the target
//     and the mirrored partitions stay idle until the leaders hold no state for it
//     (DescribeProducers shows none); the next records come with the same producer id and
//     sequences that go on from where they were, to partitions that no longer know them;
//  2. produces the target wrote whose answers are lost, the producer's state kept (expiry back
//     to Kafka's default, a day): kmirror reaches the target through a proxy whose replies are
//     stalled for 40 s (requests pass and are appended; kmirror's 30 s read timeout gives the
//     requests up and sends them again, same producer id, epoch and sequences; the answers held
//     meanwhile reach closed connections). The target recognises every batch sent again as one
//     it holds: 0 duplicates;
//  3. the same with the expiry at 8 s again: while the answers are lost nothing new is appended
//     for longer than the expiry, so the batches sent again reach partitions that forgot the
//     producer and are written a second time. At-least-once allows that: duplicates, counted,
//     at most what the target appended while its answers were lost;
//  4. the same with the expiry back at Kafka's default (a day) and records written 25 h ago on
//     the source: the target ages a producer's state by the timestamps of the records it
//     appends (the batch's largest), and kmirror keeps the source's, so once the appends stop
//     the target drops the state at its next expiry check (DescribeProducers shows none 15 s
//     into the stall) and what is sent again is written again, as in phase 3.
//
// Every record must be on the target with the first copies in source order, in every phase.
func TestTargetSequenceStateLostRecovers(t *testing.T) {
	const (
		topic  = "seqlost"
		rate   = 3_000
		expiry = 8 * time.Second
		stall  = 40 * time.Second
	)
	props := filepath.Join(t.TempDir(), "producer-expiry.properties")
	if err := os.WriteFile(props, []byte(fmt.Sprintf("producer.id.expiration.ms=%d\nproducer.id.expiration.check.interval.ms=1000\n", expiry.Milliseconds())), 0o600); err != nil {
		t.Fatal(err)
	}
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--remote-listener", "--extra-config", props)
	link, remoteUS := wanLink(t, us, 0) // no delay: the proxy is there to lose the answers

	europe.createTopic(t, topic, 4, 1, nil)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us}
	stopLoad := func() { r.load.end() }
	r.load = startLoad(t, europe.bootstrap, topic, 4*rate, rate)
	t.Cleanup(func() { stopLoad() })
	r.cfg = writeConfig(t, baseConfig(europe, remoteUS, topic, ""))
	r.k = startKmirror(t, r.cfg)
	first := r.load.wait(t)
	waitFor(t, "the first load mirrored", 2*time.Minute, func() bool { return us.count(t, topic) >= int64(first) })
	if n := us.producerStates(t, topic); n <= 0 {
		t.Fatalf("the target's leaders hold %d producer states after the first load, want kmirror's", n)
	}
	idle := time.Now()
	waitFor(t, "the target to forget kmirror's producer", time.Minute, func() bool {
		return r.running("while the source was idle") && us.producerStates(t, topic) == 0
	})
	t.Logf("figures: phase 1: the target forgot kmirror's producer on every partition %s after the first load (%d records)",
		time.Since(idle).Round(100*time.Millisecond), first)

	// Phases 2 and 3: a load, the answers stalled once it flows, the load's end caught up.
	produced := int64(first)
	phase := func(n int, age time.Duration) (appended, dups int64) {
		r.load = startAgedLoad(t, europe.bootstrap, topic, 25*rate, rate, age)
		waitFor(t, fmt.Sprintf("records flowing in phase %d", n), time.Minute, func() bool {
			return r.running(fmt.Sprintf("in phase %d", n)) && us.count(t, topic) >= produced+int64(4*rate)
		})
		if states := us.producerStates(t, topic); states <= 0 {
			t.Fatalf("phase %d: the target's leaders hold %d producer states with the load flowing", n, states)
		}
		before := us.count(t, topic)
		if err := link.StallReplies(); err != nil {
			t.Fatal(err)
		}
		t.Logf("site cut: phase %d: the target's answers to kmirror stalled for %s (target %d records)", n, stall, before)
		// Nothing is appended while the answers are lost (five requests in flight, unanswered):
		// what the target still knows of the producer a while into the stall is what the
		// batches sent again will meet.
		r.sleep(15*time.Second, "while the target's answers were stalled")
		states := us.producerStates(t, topic)
		r.sleep(stall-15*time.Second, "while the target's answers were stalled")
		appended = us.count(t, topic) - before
		switch {
		case n == 2 && states <= 0:
			t.Errorf("phase 2: the target's leaders hold %d producer states 15s into the stall, want kmirror's kept", states)
		case n == 4 && states != 0:
			t.Errorf("phase 4: the target's leaders hold %d producer states 15s into the stall, want none (records %s old)", states, age)
		}
		if err := link.Mend(); err != nil {
			t.Fatal(err)
		}
		t.Logf("site cut: phase %d: the target's answers flow again; it appended %d records while they were stalled and held %d producer states 15s into it",
			n, appended, states)
		produced += int64(r.load.wait(t))
		caught, missing := r.waitCaughtUp(produced, time.Now(), 3*time.Minute)
		if caught == 0 {
			t.Fatalf("phase %d: kmirror did not catch up: %s %s", n, missing, r.exited)
		}
		rep := compare(t, europe, us, map[string]string{topic: topic})
		if !rep.Complete() {
			t.Fatalf("phase %d: records lost, changed or out of order:\n%s", n, rep)
		}
		return appended, int64(rep.Sum().Duplicates)
	}

	us.setProducerExpiry(t, 24*time.Hour) // Kafka's default
	appended2, dups2 := phase(2, 0)
	us.setProducerExpiry(t, expiry)
	appended3, dups3 := phase(3, 0)
	us.setProducerExpiry(t, 24*time.Hour)
	appended4, dups4 := phase(4, 25*time.Hour)
	r.k.stop()
	t.Logf("figures: phase 2 (producer state kept): %d appended while the answers were lost, %d duplicates; phase 3 (state expired meanwhile): %d appended, %d duplicates; phase 4 (default expiry, records 25h old): %d appended, %d duplicates",
		appended2, dups2, appended3, dups3-dups2, appended4, dups4-dups3)
	t.Logf("kmirror's warnings and pipeline figures:\n%s", r.k.warnings(20))
	if dups2 != 0 {
		t.Errorf("phase 2: %d duplicates: the target holds the producer's state, and a batch sent again with its sequence must be recognised", dups2)
	}
	if dups3-dups2 > appended3 {
		t.Errorf("phase 3: %d duplicates, more than the %d records the target appended while its answers were lost", dups3-dups2, appended3)
	}
	if dups4-dups3 > appended4 {
		t.Errorf("phase 4: %d duplicates, more than the %d records the target appended while its answers were lost", dups4-dups3, appended4)
	}
}

// warnings returns up to n of kmirror's warning and error lines, and the pipelines' closing
// figures, without stack traces.
func (k *kmirror) warnings(n int) string {
	var out []string
	for _, l := range strings.Split(k.log(), "\n") {
		if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) ||
			strings.Contains(l, "epoch bumped") || strings.Contains(l, "produce pipeline closed") {
			out = append(out, withoutStack(l))
		}
	}
	if len(out) > n {
		out = append(out[:n/2], append([]string{"..."}, out[len(out)-n/2:]...)...)
	}
	return strings.Join(out, "\n")
}
