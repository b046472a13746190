//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kmirror/kmirror/pkg/verify"
)

// deleteRecordsTo moves the log start of topic's partitions to the given offsets.
func (c *cluster) deleteRecordsTo(t *testing.T, topic string, to map[int32]int64) {
	t.Helper()
	offs := make(kadm.Offsets)
	for p, o := range to {
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: o})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.admin(t).DeleteRecords(ctx, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records of %s: %v", topic, err)
	}
}

// committedOffsets returns the kmirror group's committed offsets of topic (none while the group
// coordinator is not available yet).
func (c *cluster) committedOffsets(t *testing.T, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := c.admin(t).FetchOffsets(ctx, "kmirror")
	if err != nil {
		t.Logf("fetch committed offsets: %v", err)
		return nil
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// endOffsetsOf returns the end offset of each partition of topic.
func (c *cluster) endOffsetsOf(t *testing.T, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := c.admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// waitExit waits for kmirror to exit by itself and returns its exit status.
func (k *kmirror) waitExit(d time.Duration) int {
	k.t.Helper()
	select {
	case <-k.done:
	case <-time.After(d):
		k.t.Fatalf("kmirror still running after %s\n%s", d, lastLines(k.log(), 40))
	}
	return k.cmd.ProcessState.ExitCode()
}

// TestSourceRetentionOvertakesAStoppedMirror deletes source records a stopped kmirror had not read
// (DeleteRecords, as retention does). With the default policy the restarted kmirror exits
// non-zero naming the topic, partition and lost offsets; with continue it resumes at the log
// start and every record still on the source is mirrored, in order.
func TestSourceRetentionOvertakesAStoppedMirror(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "ret", 2, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "ret", ""))

	if n := startLoad(t, europe.bootstrap, "ret", 4000, 0).wait(t); n != 4000 {
		t.Fatalf("produced %d", n)
	}
	k := startKmirror(t, cfg)
	waitFor(t, "first batch mirrored", 2*time.Minute, func() bool { return us.count(t, "ret") >= 4000 })
	k.stop()
	c := europe.committedOffsets(t, "ret")
	if c[0] != 2000 || c[1] != 2000 {
		t.Fatalf("committed %v, want 2000 each", c)
	}
	startLoad(t, europe.bootstrap, "ret", 4000, 0).wait(t) // offsets 2000..3999 per partition
	europe.deleteRecordsTo(t, "ret", map[int32]int64{0: 2600})

	failing := startKmirror(t, cfg)
	if code := failing.waitExit(90 * time.Second); code == 0 {
		t.Fatalf("kmirror exited 0 after records were lost\n%s", lastLines(failing.log(), 30))
	}
	log := failing.log()
	for _, want := range []string{`"topic":"ret"`, `"partition":0`, `"lost_from":2000`, `"lost_to":2599`, `"lost_records":600`} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %s\n%s", want, lastLines(log, 30))
		}
	}
	if got := us.count(t, "ret"); got != 4000 {
		t.Fatalf("target holds %d records after the failed start, want 4000 (nothing past the gap)", got)
	}

	cont := writeConfig(t, strings.Replace(baseConfig(europe, us, "ret", ""), "consumer:\n", "consumer:\n  source_loss_policy: continue\n", 1))
	k2 := startKmirror(t, cont)
	waitFor(t, "the records after the gap", 2*time.Minute, func() bool { return us.count(t, "ret") >= 4000+1400+2000 })
	time.Sleep(2 * time.Second)
	k2.stop()
	if !strings.Contains(k2.log(), `"lost_records":600`) {
		t.Errorf("continue: the loss is not logged\n%s", lastLines(k2.log(), 30))
	}
	rep := compare(t, europe, us, map[string]string{"ret": "ret"})
	for _, p := range rep.Partitions {
		if p.Lost != 0 || p.OutOfOrder {
			t.Fatalf("records still on the source not all mirrored in order:\n%s", rep)
		}
	}
}

// TestNewestAcrossARestartSkipsNothing runs kmirror with initial_offset newest on idle
// partitions, stops it, produces, restarts it and expects every record produced in between.
func TestNewestAcrossARestartSkipsNothing(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "newest", 3, 1, nil)
	startLoad(t, europe.bootstrap, "newest", 300, 0).wait(t) // before the first start: not mirrored, by design
	cfg := writeConfig(t, strings.Replace(baseConfig(europe, us, "newest", ""), "consumer:\n", "consumer:\n  initial_offset: newest\n", 1))

	k := startKmirror(t, cfg)
	waitFor(t, "the partitions claimed", time.Minute, func() bool { return len(europe.committedOffsets(t, "newest")) == 3 })
	k.stop()
	n := startLoad(t, europe.bootstrap, "newest", 3000, 0).wait(t)
	k2 := startKmirror(t, cfg)
	waitFor(t, "the records produced while stopped", 2*time.Minute, func() bool { return us.count(t, "newest") >= int64(n) })
	time.Sleep(2 * time.Second)
	k2.stop()
	if got := us.count(t, "newest"); got != int64(n) {
		t.Fatalf("target holds %d records, want %d", got, n)
	}
}

// TestRecreatedSourceTopicIsMirroredFromItsStart deletes a mirrored source topic while kmirror is
// stopped and creates it again with more partitions and new records; the old incarnation's
// committed offsets are put back if the broker dropped them (as a mirror committing through the
// re-creation leaves them). Every record of the new incarnation must follow the old ones on
// the target.
func TestRecreatedSourceTopicIsMirroredFromItsStart(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "re", 2, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "re", ""))
	startLoad(t, europe.bootstrap, "re", 3000, 0).wait(t)
	k := startKmirror(t, cfg)
	waitFor(t, "first incarnation mirrored", 2*time.Minute, func() bool { return us.count(t, "re") >= 3000 })
	k.stop()

	ctx := context.Background()
	old, err := europe.admin(t).FetchOffsets(ctx, "kmirror")
	if err != nil {
		t.Fatal(err)
	}
	keep := make(kadm.Offsets)
	old.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "re" && o.Err == nil {
			keep.Add(o.Offset)
		}
	})
	before := us.endOffsetsOf(t, "re")
	recreate(t, europe, "re", 4)
	kept := europe.committedOffsets(t, "re")
	t.Logf("committed offsets after the re-creation, before putting them back: %v", kept)
	if len(kept) == 0 {
		resp, err := europe.admin(t).CommitOffsets(ctx, "kmirror", keep)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	n := startLoad(t, europe.bootstrap, "re", 8000, 0).wait(t)

	k2 := startKmirror(t, cfg)
	waitFor(t, "the new incarnation mirrored", 2*time.Minute, func() bool { return us.count(t, "re") >= 3000+int64(n) })
	time.Sleep(2 * time.Second)
	k2.stop()
	if !strings.Contains(k2.log(), "deleted and created again") {
		t.Errorf("the re-creation is not logged")
	}
	checkNewIncarnation(t, europe, us, "re", before, n)
}

// TestSourceTopicRecreatedWhileRunning is the same with kmirror running throughout.
func TestSourceTopicRecreatedWhileRunning(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "rerun", 2, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "rerun", ""))
	startLoad(t, europe.bootstrap, "rerun", 3000, 0).wait(t)
	k := startKmirror(t, cfg)
	waitFor(t, "first incarnation mirrored", 2*time.Minute, func() bool { return us.count(t, "rerun") >= 3000 })
	time.Sleep(2 * time.Second) // let a commit land
	before := us.endOffsetsOf(t, "rerun")
	recreate(t, europe, "rerun", 4)
	n := startLoad(t, europe.bootstrap, "rerun", 8000, 0).wait(t)
	waitFor(t, "the new incarnation mirrored", 3*time.Minute, func() bool { return us.count(t, "rerun") >= 3000+int64(n) })
	time.Sleep(3 * time.Second)
	k.stop()
	checkNewIncarnation(t, europe, us, "rerun", before, n)
}

// recreate deletes topic and creates it again with the given partitions.
func recreate(t *testing.T, c *cluster, topic string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.admin(t).DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the topic deleted", time.Minute, func() bool {
		td, err := c.admin(t).ListTopics(ctx, topic)
		return err == nil && !td.Has(topic)
	})
	for {
		resp, err := c.admin(t).CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("create %s again: %v", topic, err)
		}
		time.Sleep(500 * time.Millisecond) // deletion still under way
	}
}

// checkNewIncarnation compares the source topic with the target records after before.
func checkNewIncarnation(t *testing.T, src, dst *cluster, topic string, before map[int32]int64, produced int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := verify.CompareSince(ctx, src.bootstrap, dst.bootstrap, map[string]string{topic: topic}, map[string]map[int32]int64{topic: before})
	if err != nil {
		t.Fatal(err)
	}
	s, d, lost, dups, changed := rep.Totals()
	t.Logf("new incarnation: source %d, target after the old records %d, lost %d, duplicates %d, changed %d", s, d, lost, dups, changed)
	if s != produced || !rep.Complete() {
		t.Fatalf("new incarnation not fully mirrored in order:\n%s", rep)
	}
}
