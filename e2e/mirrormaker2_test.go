//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mirrorMaker2 is Apache MirrorMaker 2 in dedicated mode (org.apache.kafka.connect.mirror.MirrorMaker
// from the connect-mirror jars scripts/kafka/fetch.sh brings), mirroring europe to us with its
// default replication policy: europe's topic t becomes europe.t on us.
type mirrorMaker2 struct {
	cmd     *exec.Cmd
	logPath string
	config  string // its mm2.properties
	done    chan struct{}
}

// startMirrorMaker2 mirrors the topics matching the regular expression topics and, with
// MirrorCheckpointConnector, translates and syncs the offsets of the groups matching groups
// (checkpoints and group offset syncs every second; offset.lag.max and the translation itself
// at their defaults). Topic and group discovery run every 2 s (default 10 min) so that groups
// made while it runs are found within the test, and it records its positions every 5 s (Connect's
// offset flush, 60 s by default) so that a test that switches from it need not wait a minute. Its source consumers read committed records only
// (isolation.level read_committed): with the consumer's default they would copy aborted ones.
func startMirrorMaker2(t *testing.T, europe, us *cluster, topics, groups string) *mirrorMaker2 {
	t.Helper()
	root := repoRoot(t)
	lib, err := exec.Command(filepath.Join(root, "scripts", "kafka", "fetch.sh"), "4.3.1").Output()
	if err != nil {
		t.Fatalf("fetch kafka 4.3.1 (MirrorMaker 2): %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mm2.properties")
	body := fmt.Sprintf(`clusters = europe, us
europe.bootstrap.servers = %s
us.bootstrap.servers = %s
europe->us.enabled = true
us->europe.enabled = false
europe->us.topics = %s
europe->us.groups = %s
europe->us.emit.checkpoints.enabled = true
europe->us.emit.checkpoints.interval.seconds = 1
europe->us.sync.group.offsets.enabled = true
europe->us.sync.group.offsets.interval.seconds = 1
europe->us.refresh.topics.interval.seconds = 2
europe->us.refresh.groups.interval.seconds = 2
europe->us.offset.flush.interval.ms = 5000
europe.consumer.isolation.level = read_committed
tasks.max = 2
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
config.storage.replication.factor = 1
status.storage.replication.factor = 1
`, strings.Join(europe.bootstrap, ","), strings.Join(us.bootstrap, ","), topics, groups)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "mm2.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-Xms256m", "-Xmx1g"}, strings.Fields(testJVMFlags)...)
	args = append(args, "-cp", strings.TrimSpace(string(lib))+"/*",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "org.apache.kafka.connect.mirror.MirrorMaker", cfg)
	cmd := exec.Command("java", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startOwned(t, cmd); err != nil {
		t.Fatalf("start MirrorMaker 2: %v", err)
	}
	m := &mirrorMaker2{cmd: cmd, logPath: logPath, config: cfg, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(m.done) }()
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("MirrorMaker 2 log tail (%s):\n%s", logPath, lastLines(string(b), 30))
		}
	})
	return m
}

// exited reports whether MirrorMaker 2 has ended.
func (m *mirrorMaker2) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *mirrorMaker2) kill() {
	if m.exited() {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// waitSynced waits until MirrorMaker 2 has copied every record of source's topics (as
// europe.<topic> on us) and the offsets it syncs for groups on us have stayed the same for 5 s.
func (m *mirrorMaker2) waitSynced(t *testing.T, us *cluster, source map[string]sourceIndex, groups []string) {
	t.Helper()
	waitFor(t, "MirrorMaker 2 to copy every record", 3*time.Minute, func() bool {
		if m.exited() {
			t.Fatalf("MirrorMaker 2 exited; log %s", m.logPath)
		}
		for topic, ix := range source {
			if us.count(t, "europe."+topic) < int64(len(ix)) {
				return false
			}
		}
		return true
	})
	var last string
	since := time.Now()
	waitFor(t, "MirrorMaker 2's group offsets on us to settle", 90*time.Second, func() bool {
		var b strings.Builder
		for _, g := range groups {
			pos := committedPositions(t, us, g)
			for _, topic := range sortedKeys(pos) {
				if strings.HasPrefix(topic, "europe.") {
					fmt.Fprintf(&b, "%s %s %v; ", g, topic, pos[topic])
				}
			}
		}
		if now := b.String(); now != last {
			last, since = now, time.Now()
			return false
		}
		return time.Since(since) >= 5*time.Second
	})
	t.Logf("MirrorMaker 2's group offsets on us: %s", last)
}

// figureRow is one group and topic of the comparison table.
type figureRow struct {
	group, topic     string
	kmirror, mm2     translationFigures
	kmirrorPositions string
}

// comparisonTable renders the rows as a Markdown table.
func comparisonTable(rows []figureRow) string {
	var b strings.Builder
	b.WriteString("| group | topic | pending | kmirror skipped | kmirror re-read | kmirror duplicates | MM2 skipped | MM2 re-read | MM2 duplicates |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d |\n", r.group, r.topic, max(r.kmirror.Pending, r.mm2.Pending),
			r.kmirror.Skipped, r.kmirror.Reread, r.kmirror.Duplicates, r.mm2.Skipped, r.mm2.Reread, r.mm2.Duplicates)
	}
	return b.String()
}

// writeComparison writes the table, with how it was made, to benchmarks/results/failover-translation.md.
func writeComparison(t *testing.T, rows []figureRow, notes string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# Consumer group failover: kmirror and MirrorMaker 2 side by side\n\n")
	fmt.Fprintf(&b, "Written by `TestGroupFailoverIsExact` (e2e/failover_test.go) on %s, Kafka 4.3.1 (KRaft, one broker per cluster).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString(`Each group's offsets are committed on europe; each mirror translates them to us (kmirror with
` + "`kmirror failover`" + `, MirrorMaker 2 with MirrorCheckpointConnector's group offset sync); then a franz-go
consumer in the same group reads us from those offsets to the end (read_committed, earliest reset where
nothing is committed), and each record it reads is tied to its europe offset by the id in its value.

- **pending**: europe records at or after the group's europe position (every record for a group that never committed).
- **skipped**: pending records the group never read on us (lost to the consumer).
- **re-read**: records before the group's europe position (already processed) it read again on us.
- **duplicates**: further copies of pending records read (a mirror's at-least-once re-copies).

Topics (3 partitions each): plain (150,000 records), txn (2 transactional producers, a third of
the transactions aborted, interleaved in each partition), compacted (compacted on europe before
the mirrors start: offsets with gaps). Groups: caught-up read everything; behind is 100,000
records behind plain's head and halfway into txn and compacted; never joined and committed
nothing. Both mirrors ran at once against the same clusters:

- kmirror: default settings but for the test's short refresh, commit (500 ms) and session
  intervals, groups.include, offset_map.flush_interval 500 ms; killed with SIGKILL once under load
  (past a third of plain) and restarted, so its target holds copies made twice.
- MirrorMaker 2 (4.3.1, dedicated mode, not killed): MirrorCheckpointConnector with
  emit.checkpoints and sync.group.offsets every second, offset.lag.max at its default (100);
  topic and group discovery every 2 s (default 10 min) so the test's groups are found;
  europe.consumer.isolation.level=read_committed (by default it would copy aborted records).

`)
	b.WriteString(comparisonTable(rows))
	if notes != "" {
		b.WriteString("\n" + notes + "\n")
	}
	path := filepath.Join(repoRoot(t), "benchmarks", "results", "failover-translation.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
