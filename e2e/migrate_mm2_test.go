//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// runKmirrorCmd runs bin/kmirror with args and returns its stdout, stderr and exit code.
func runKmirrorCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "bin", "kmirror"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := runOwned(t, cmd)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &exit):
		return out.String(), errb.String(), exit.ExitCode()
	}
	t.Fatalf("kmirror %v: %v", args, err)
	return "", "", -1
}

// endOffsets returns the end offset of each partition of topic on c.
func endOffsets(t *testing.T, c *cluster, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := c.admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets of %s on %s: %v", topic, c.name, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// TestMigrateFromMirrorMaker2 switches a running flow from MirrorMaker 2 to kmirror: MirrorMaker 2
// (dedicated mode, DefaultReplicationPolicy) copies europe's orders into us's europe.orders under
// load and is killed (SIGKILL: whatever it had not yet committed to its offsets topic is copied
// again); `kmirror migrate mm2` writes the kmirror configuration from its mm2.properties and
// seeds kmirror's group on europe from MirrorMaker 2's offsets topic; kmirror continues under the
// same load. franz-go then reads both clusters: nothing lost, no gap between the two runs, first
// copies in source order, and duplicates no more than MirrorMaker 2 copied past its last
// committed position. It also checks --dry-run commits nothing and a second seed is refused
// without --force.
func TestMigrateFromMirrorMaker2(t *testing.T) { migrateFromMirrorMaker2(t, "at_least_once") }

// TestMigrateFromMirrorMaker2ExactlyOnce is the same switch with delivery.mode exactly_once set in
// the written configuration before kmirror's first start: kmirror resumes each partition from the
// source group migrate seeded (its positions group on the target holds nothing yet), and the
// same figures hold — nothing lost, order kept, duplicates only what MirrorMaker 2 copied past
// its committed positions.
func TestMigrateFromMirrorMaker2ExactlyOnce(t *testing.T) { migrateFromMirrorMaker2(t, "exactly_once") }

func migrateFromMirrorMaker2(t *testing.T, mode string) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "orders", 3, 1, nil)
	// 140 s at 2,000/s: the load goes on after the switch. In the suite (shards side by side on 2 cores)
	// MirrorMaker 2, its offset flush every 5 s, had recorded every partition's position about
	// 70 s after the load began (its start takes most of that), and the switch takes about 20 s
	// more.
	const total = 280000
	load := startLoad(t, europe.bootstrap, "orders", total, 2000)

	mm := startMirrorMaker2(t, europe, us, "orders", "no-group-here")
	offsetsTopic := "mm2-offsets.europe.internal"
	// MirrorMaker 2 records its positions at each offset flush (each task on its own clock: the
	// heartbeat connector's may come first); kill it once its MirrorSourceConnector has recorded a
	// position for every partition of orders, and copied on past them.
	waitFor(t, "MirrorMaker 2 to record positions in "+offsetsTopic, 3*time.Minute, func() bool {
		if mm.exited() {
			t.Fatalf("MirrorMaker 2 exited; log %s", mm.logPath)
		}
		return us.count(t, offsetsTopic) > 0 && len(mm2Recorded(t, us, offsetsTopic, "orders")) == 3
	})
	time.Sleep(5 * time.Second)
	mm.kill()
	mm2Copies := endOffsets(t, us, "europe.orders")
	var copied int64
	for _, n := range mm2Copies {
		copied += n
	}
	t.Logf("killed MirrorMaker 2 after it copied %d records (%v per partition); %d produced so far", copied, mm2Copies, load.count())
	if load.count() >= total {
		t.Fatalf("the load ended before MirrorMaker 2 was stopped: the switch would not be under load")
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kmirror.yaml")
	group := "kmirror-europe-us"

	// --dry-run: prints the configuration and the positions, writes and commits nothing.
	out, stderr, code := runKmirrorCmd(t, "migrate", "mm2", mm.config, "--out", cfgPath, "--dry-run")
	if code != 0 {
		t.Fatalf("migrate mm2 --dry-run: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "would seed group \"kmirror-europe-us\"") || !strings.Contains(out, "replication_policy: prefix") {
		t.Fatalf("migrate mm2 --dry-run printed:\n%s", out)
	}
	if _, err := os.Stat(cfgPath); err == nil {
		t.Fatalf("--dry-run wrote %s", cfgPath)
	}
	plan := tableRows(out, "orders")
	if len(plan) != 3 {
		t.Fatalf("migrate mm2 --dry-run printed no plan for orders' 3 partitions:\n%s", out)
	}
	// The same positions through the flags for Connect-based deployments, and from a Strimzi
	// resource of the same flow (its offsetStorageTopic naming the dedicated mode's topic).
	strimzi := filepath.Join(dir, "kafkamirrormaker2.yaml")
	if err := os.WriteFile(strimzi, []byte(fmt.Sprintf(`apiVersion: kafka.strimzi.io/v1
kind: KafkaMirrorMaker2
metadata:
  name: europe-to-us
spec:
  replicas: 1
  target:
    alias: us
    bootstrapServers: %s
    groupId: europe-to-us
    configStorageTopic: mm2-configs.europe.internal
    offsetStorageTopic: mm2-offsets.europe.internal
    statusStorageTopic: mm2-status.europe.internal
  mirrors:
    - source:
        alias: europe
        bootstrapServers: %s
      sourceConnector:
        tasksMax: 2
        config:
          replication.factor: 1
      topicsPattern: orders
`, strings.Join(us.bootstrap, ","), strings.Join(europe.bootstrap, ","))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"migrate", "mm2", mm.config, "--out", cfgPath, "--offsets-topic", offsetsTopic, "--connector", "MirrorSourceConnector", "--dry-run"},
		{"migrate", "mm2", strimzi, "--out", cfgPath, "--dry-run"},
	} {
		out, stderr, code := runKmirrorCmd(t, args...)
		if code != 0 {
			t.Fatalf("kmirror %v: exit %d\n%s\n%s", args, code, out, stderr)
		}
		if got := tableRows(out, "orders"); !slices.Equal(got, plan) {
			t.Fatalf("kmirror %v planned\n%s\nwant\n%s", args, strings.Join(got, "\n"), strings.Join(plan, "\n"))
		}
	}
	if pos := committedPositions(t, europe, group); len(pos) != 0 {
		t.Fatalf("--dry-run committed offsets for %s: %v", group, pos)
	}

	// The switch: write the configuration and seed the group.
	start := time.Now()
	out, stderr, code = runKmirrorCmd(t, "migrate", "mm2", mm.config, "--out", cfgPath)
	if code != 0 {
		t.Fatalf("migrate mm2: exit %d\n%s\n%s", code, out, stderr)
	}
	t.Logf("migrate mm2 took %s; stdout:\n%s\nstderr:\n%s", time.Since(start).Round(time.Millisecond), out, stderr)
	for _, want := range []string{"tasks.max = 2: approximated", "offset-syncs.topic.replication.factor = 1: no equivalent"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("migrate mm2's notes lack %q", want)
		}
	}
	seeded := committedPositions(t, europe, group)["orders"]
	if len(seeded) != 3 {
		t.Fatalf("group %s on europe holds %v for orders: want all 3 partitions seeded", group, seeded)
	}
	var seededTotal, bound int64
	for p, next := range seeded {
		// The invariant: never a position beyond what MirrorMaker 2 copied.
		if next > mm2Copies[p] {
			t.Fatalf("orders/%d seeded at %d, but MirrorMaker 2 had copied only offsets below %d", p, next, mm2Copies[p])
		}
		seededTotal += next
		bound += mm2Copies[p] - next
	}
	t.Logf("seeded %v (%d records behind MirrorMaker 2's copies: the most kmirror may copy again)", seeded, bound)

	// A second seed is refused: the group has offsets now.
	out, stderr, code = runKmirrorCmd(t, "migrate", "mm2", mm.config, "--out", cfgPath)
	if code == 0 || !strings.Contains(stderr, "already has committed offsets") {
		t.Fatalf("a second migrate mm2 was not refused: exit %d\n%s\n%s", code, out, stderr)
	}
	// --force seeds again (the same positions: MirrorMaker 2 has not moved).
	out, stderr, code = runKmirrorCmd(t, "migrate", "mm2", mm.config, "--out", cfgPath, "--force")
	if code != 0 {
		t.Fatalf("migrate mm2 --force: exit %d\n%s\n%s", code, out, stderr)
	}
	if again := committedPositions(t, europe, group)["orders"]; !equalPositions(again, seeded) {
		t.Fatalf("--force seeded %v, first seed %v", again, seeded)
	}
	out, stderr, code = runKmirrorCmd(t, "validate", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("kmirror validate of the written configuration: exit %d\n%s\n%s", code, out, stderr)
	}

	// kmirror continues with the written configuration; only its HTTP endpoint is turned off (the
	// suite's machines are shared) and its log made JSON for the harness.
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("telemetry:\n  listen: \"\"\nlog:\n  format: json\n"); err != nil {
		t.Fatal(err)
	}
	if mode == "exactly_once" {
		if _, err := f.WriteString(eosSettings); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	k := startKmirror(t, cfgPath)
	// Once kmirror copies, it is a member of the group: seeding is refused even with --force.
	waitFor(t, "kmirror to copy", 2*time.Minute, func() bool {
		if done, how := k.exited(); done {
			t.Fatalf("%s\n%s", how, k.errors())
		}
		return us.count(t, "europe.orders") > copied
	})
	out, stderr, code = runKmirrorCmd(t, "migrate", "mm2", mm.config, "--out", cfgPath+".again", "--force")
	if code == 0 || !strings.Contains(stderr, "member(s) on the source") {
		t.Fatalf("migrate mm2 --force with kmirror running was not refused: exit %d\n%s\n%s", code, out, stderr)
	}
	if mode == "exactly_once" {
		// The positions came from the seeded source group, not from nowhere (initial_offset).
		// (The heartbeat topic, which MirrorMaker 2 never copied, starts at initial_offset.)
		recovered := false
		for _, l := range strings.Split(k.log(), "\n") {
			switch {
			case strings.Contains(l, "were recovered") && strings.Contains(l, `"from":"source_group"`) && strings.Contains(l, `"orders"`):
				recovered = true
			case strings.Contains(l, "they start at consumer.initial_offset") && strings.Contains(l, `"orders"`):
				t.Fatalf("exactly_once started orders at consumer.initial_offset, not at the seed:\n%s", l)
			}
		}
		if !recovered {
			t.Fatalf("exactly_once logged no recovery of orders' positions from the seeded source group:\n%s", k.tail(40))
		}
	}
	produced := load.wait(t)
	want := copied + int64(produced) - seededTotal
	waitFor(t, "kmirror to copy the rest", 5*time.Minute, func() bool {
		if done, how := k.exited(); done {
			t.Fatalf("%s\n%s", how, k.errors())
		}
		if mode == "exactly_once" {
			// The target's log end counts transaction markers too: wait for the positions
			// committed with the records to reach the source's end instead.
			pos := committedPositions(t, us, group+"-europe-positions")["europe.orders"]
			for p, end := range endOffsets(t, europe, "orders") {
				if pos[p] != end {
					return false
				}
			}
			return true
		}
		return us.count(t, "europe.orders") >= want
	})
	k.stop()

	rep := compare(t, europe, us, map[string]string{"orders": "europe.orders"})
	s := rep.Sum()
	t.Logf("figures: produced %d, MirrorMaker 2 copied %d, seeded %d behind its copies, duplicates %d (bound %d), lost %d, out of order %d, bad re-runs %d",
		produced, copied, bound, s.Duplicates, bound, s.Lost, s.Reordered, s.BadReruns)
	if s.Source != produced || s.Lost != 0 || s.Foreign != 0 || s.Reordered != 0 || s.BadReruns != 0 {
		t.Fatalf("after the switch: %s", rep)
	}
	if int64(s.Duplicates) > bound {
		t.Fatalf("%d duplicates: more than the %d records MirrorMaker 2 copied past its committed positions", s.Duplicates, bound)
	}
}

// mm2Recorded reads MirrorMaker 2's offsets topic on c with franz-go and returns the partitions
// of the source topic its MirrorSourceConnector has recorded a position for.
func mm2Recorded(t *testing.T, c *cluster, offsetsTopic, topic string) map[int32]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[int32]bool{}
	err := verify.ReadRecords(ctx, c.bootstrap, offsetsTopic, func(r *kgo.Record) {
		var key []json.RawMessage
		var part struct {
			Cluster, Topic string
			Partition      int32
		}
		var connector string
		if json.Unmarshal(r.Key, &key) != nil || len(key) != 2 || json.Unmarshal(key[0], &connector) != nil ||
			json.Unmarshal(key[1], &part) != nil || r.Value == nil {
			return
		}
		if connector == "MirrorSourceConnector" && part.Cluster == "europe" && part.Topic == topic {
			out[part.Partition] = true
		}
	}, nil)
	if err != nil {
		t.Logf("read %s: %v", offsetsTopic, err)
	}
	return out
}

// tableRows returns the rows of a migrate mm2 plan for topic: topic, partition, target topic,
// MirrorMaker 2's last copied offset and the position seeded (the source's end, which follows the
// load, is left out).
func tableRows(out, topic string) []string {
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 5 && f[0] == topic {
			rows = append(rows, strings.Join(f[:5], " "))
		}
	}
	return rows
}

func equalPositions(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, o := range a {
		if b[p] != o {
			return false
		}
	}
	return true
}
