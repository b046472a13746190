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
	done    chan struct{}
}

// startMirrorMaker2 mirrors the topics matching the regular expression topics and, with
// MirrorCheckpointConnector, translates and syncs the offsets of the groups matching groups
// (checkpoints and group offset syncs every second; offset.lag.max and the translation itself
// at their defaults). Topic and group discovery run every 2 s (default 10 min) so that groups
// made while it runs are found within the test. Its source consumers read committed records only
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
	cmd := exec.Command("java", "-Xms256m", "-Xmx1g", "-cp", strings.TrimSpace(string(lib))+"/*",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "org.apache.kafka.connect.mirror.MirrorMaker", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start MirrorMaker 2: %v", err)
	}
	m := &mirrorMaker2{cmd: cmd, logPath: logPath, done: make(chan struct{})}
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
