//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// cluster is a running Kafka cluster started by scripts/kafka/cluster.sh.
type cluster struct {
	name      string
	bootstrap []string
	root      string
}

// startCluster starts a named cluster and stops it when the test ends; args go to cluster.sh up.
func startCluster(t *testing.T, name string, args ...string) *cluster {
	t.Helper()
	root := repoRoot(t)
	script := filepath.Join(root, "scripts", "kafka", "cluster.sh")
	// Leftovers of a run whose test binary died without its cleanup: its children, then its
	// cluster of this name (the script's nodes die with the binary that started them, but one
	// from before that rule may still run).
	if killed, err := killLeftovers(); err != nil {
		t.Logf("kill the children of an earlier run: %v", err)
	} else if len(killed) > 0 {
		t.Logf("killed the process groups %v an earlier run left behind", killed)
	}
	_ = clusterCmd(script, name, "down", name).Run()
	out, err := clusterCmd(script, name, append([]string{"up", name}, args...)...).CombinedOutput()
	for try := 0; err != nil && bytes.Contains(out, []byte("Address already in use")) && try < 8; try++ {
		// The suite's ports lie in the kernel's ephemeral range: a client connection can hold
		// one for a moment.
		t.Logf("start kafka %s: a port is in use; trying again in 5s", name)
		time.Sleep(5 * time.Second)
		out, err = clusterCmd(script, name, append([]string{"up", name}, args...)...).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("start kafka %s: %v\n%s", name, err, out)
	}
	c := &cluster{name: name, root: root}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := clusterCmd(script, name, "logs", name).CombinedOutput()
			t.Logf("kafka %s log tail:\n%s", name, lastLines(string(logs), 30))
		}
		_ = clusterCmd(script, name, "down", name).Run()
	})
	b, err := clusterCmd(script, name, "bootstrap", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	c.bootstrap = strings.Split(strings.TrimSpace(string(b)), ",")
	return c
}

// testJVMFlags are the JVM flags of the suite's Kafka nodes (and MirrorMaker 2): the client
// compiler only and the serial collector. A test's cluster lives a minute or two, too short for
// the optimizing compiler to pay for itself: on this suite's 2 cores, a 3-node cluster took 13
// CPU-seconds to start with the production flags (G1, tiered compilation) and 9 with these, and
// 6 CPU-seconds against 2 to take in and hand out 300,000 records (kcat, idempotent, acks=all).
// The brokers use most of the suite's CPU (1,545 of the 2,150 CPU-seconds of a full run in three
// shards), and in three shards the machine is busy three quarters of the time, so what they do
// not spend is the suite's time.
const testJVMFlags = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

// clusterCmd runs scripts/kafka/cluster.sh for the named cluster. When KMIRROR_E2E_PORT_BASE is
// set, the clusters take their ports from it (europe at the base, us 100 above, any other name
// 200 above), so that two runs of the suite on one machine do not collide; KMIRROR_KAFKA_STATE
// (read by cluster.sh) separates their state directories. KAFKA_OWNER_PID makes the script kill
// the nodes it starts when this test binary ends, however it ends.
//
// The nodes run with testJVMFlags unless KAFKA_JVM_FLAGS says otherwise.
func clusterCmd(script, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("KAFKA_OWNER_PID=%d", os.Getpid()))
	if os.Getenv("KAFKA_JVM_FLAGS") == "" {
		cmd.Env = append(cmd.Env, "KAFKA_JVM_FLAGS="+testJVMFlags)
	}
	if b := os.Getenv("KMIRROR_E2E_PORT_BASE"); b != "" {
		var base int
		if _, err := fmt.Sscan(b, &base); err == nil {
			switch name {
			case "europe":
			case "us":
				base += 100
			default:
				base += 200
			}
			cmd.Env = append(cmd.Env, fmt.Sprintf("KAFKA_PORT_BASE=%d", base))
		}
	}
	return cmd
}

func (c *cluster) script(t *testing.T, args ...string) {
	t.Helper()
	name := c.name
	if len(args) > 1 {
		name = args[1]
	}
	out, err := clusterCmd(filepath.Join(c.root, "scripts", "kafka", "cluster.sh"), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster.sh %v: %v\n%s", args, err, out)
	}
}

func (c *cluster) admin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func (c *cluster) createTopic(t *testing.T, topic string, partitions int32, rf int16, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.admin(t).CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s on %s: %v", topic, c.name, err)
	}
}

// count sums the end offsets of topic (records plus transaction markers, if any).
func (c *cluster) count(t *testing.T, topic string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := verify.EndOffsets(ctx, c.admin(t), topic)
	if err != nil {
		return -1
	}
	return n
}

// kmirror is a running kmirror process.
type kmirror struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
	ended   time.Time // when the process ended; read after done is closed
}

// writeConfig writes a kmirror configuration from a YAML body and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmirror.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// baseConfig mirrors include from src to dst with settings that suit a quick test: short
// refresh, commit and session intervals only. Nothing that decides whether kmirror survives a
// fault (producer retries and delivery timeout, rebalance and shutdown timeouts) is set here: the
// fault tests hold kmirror to its defaults.
func baseConfig(src, dst *cluster, include string, extra string) string {
	return fmt.Sprintf(`
source:
  alias: europe
  bootstrap: [%s]
  metadata_refresh: 2s
target:
  alias: us
  bootstrap: [%s]
topics:
  include: [%q]
  refresh_interval: 2s
consumer:
  session_timeout: 10s
  heartbeat_interval: 1s
commit:
  interval: 500ms
telemetry:
  listen: ""
log:
  format: json
%s`, strings.Join(src.bootstrap, ", "), strings.Join(dst.bootstrap, ", "), include, extra)
}

// keepTargetConfigs turns topics.sync_existing_configs off in a baseConfig: a test whose target
// topic is stricter than its source on purpose keeps it so (with the default, kmirror would set
// the target's synced configs to the source's).
func keepTargetConfigs(cfg string) string {
	return strings.Replace(cfg, "  refresh_interval: 2s\n", "  refresh_interval: 2s\n  sync_existing_configs: false\n", 1)
}

// startKmirror runs bin/kmirror with the configuration at cfgPath; prefix, when set, is put in
// front of the command (ip netns exec ...).
func startKmirror(t *testing.T, cfgPath string, prefix ...string) *kmirror {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "kmirror")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run make build first (scripts/e2e.sh does)", bin)
	}
	return startKmirrorBin(t, bin, cfgPath, prefix...)
}

// startKmirrorBin is startKmirror with the binary at bin (an earlier release's: upgrade_test.go).
func startKmirrorBin(t *testing.T, bin, cfgPath string, prefix ...string) *kmirror {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "kmirror.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, prefix...), bin, "run", "--config", cfgPath)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startOwned(t, cmd); err != nil {
		t.Fatal(err)
	}
	k := &kmirror{t: t, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { k.err = cmd.Wait(); k.ended = time.Now(); logf.Close(); close(k.done) }()
	t.Cleanup(func() {
		k.kill()
		if t.Failed() {
			t.Logf("kmirror errors and log tail (%s):\n%s\n...\n%s", logPath, k.errors(), k.tail(10))
		}
	})
	// Wait until the signal handler is installed: a SIGTERM before it would kill outright. A
	// kmirror that started and then stopped at once (a refusal some tests expect, within
	// milliseconds) is returned too: its caller reads its exit. Only one that never got as far
	// as starting fails here.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(k.log(), "starting kmirror") && time.Now().Before(deadline) {
		select {
		case <-k.done:
			if strings.Contains(k.log(), "starting kmirror") {
				return k
			}
			t.Fatalf("kmirror exited at start: %v\n%s", k.err, k.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return k
}

func (k *kmirror) log() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// exited reports whether the process has ended, and how.
func (k *kmirror) exited() (bool, string) {
	select {
	case <-k.done:
		return true, fmt.Sprintf("kmirror exited with status %d at %s", k.cmd.ProcessState.ExitCode(), k.ended.UTC().Format("15:04:05.000"))
	default:
		return false, ""
	}
}

// errors returns the first and the last error lines of kmirror's log, without stack traces:
// what went wrong first, and what kmirror stopped with.
func (k *kmirror) errors() string {
	var errs []string
	for _, l := range strings.Split(k.log(), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"fatal"`) ||
			strings.HasPrefix(l, "kmirror:") || strings.HasPrefix(l, "Error:") {
			errs = append(errs, withoutStack(l))
		}
	}
	switch len(errs) {
	case 0:
		return lastLines(k.log(), 5)
	case 1:
		return errs[0]
	default:
		return fmt.Sprintf("first: %s\nlast (of %d): %s", errs[0], len(errs), errs[len(errs)-1])
	}
}

// withoutStack drops the stack trace from a JSON log line.
func withoutStack(l string) string {
	if i := strings.Index(l, `,"stacktrace"`); i > 0 {
		return l[:i] + "}"
	}
	return l
}

// tail is the last n lines of kmirror's log, without stack traces.
func (k *kmirror) tail(n int) string {
	lines := strings.Split(lastLines(k.log(), n), "\n")
	for i, l := range lines {
		lines[i] = withoutStack(l)
	}
	return strings.Join(lines, "\n")
}

// kill ends the process with SIGKILL: a crash, nothing drained or committed.
func (k *kmirror) kill() {
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Signal(syscall.SIGKILL)
	<-k.done
}

// stop sends SIGTERM and expects a clean exit (status 0) within the deadline.
func (k *kmirror) stop() {
	k.t.Helper()
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(60 * time.Second):
		k.t.Fatalf("kmirror did not exit within 60s of SIGTERM\n%s", lastLines(k.log(), 40))
	}
	if code := k.cmd.ProcessState.ExitCode(); code != 0 {
		k.t.Fatalf("kmirror exited with status %d after SIGTERM\n%s", code, lastLines(k.log(), 40))
	}
}

// waitFor polls cond every 200ms until it holds or d passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// compare reads both clusters with franz-go and logs the figures.
func compare(t *testing.T, src, dst *cluster, topics map[string]string) verify.Report {
	t.Helper()
	rep := compareReport(t, src, dst, topics)
	logFigures(t, rep, "")
	return rep
}

// compareReport reads both clusters with franz-go and compares them.
func compareReport(t *testing.T, src, dst *cluster, topics map[string]string) verify.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := verify.Compare(ctx, src.bootstrap, dst.bootstrap, topics)
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	return rep
}

// logFigures logs a report's figures on the figures: line scripts/e2e.sh prints, with extra
// test-specific figures appended.
func logFigures(t *testing.T, rep verify.Report, extra string) {
	t.Helper()
	s := rep.Sum()
	if extra != "" {
		extra = ", " + extra
	}
	t.Logf("figures: source %d, target %d, lost %d, duplicates %d, changed %d, out of order %d, bad re-runs %d%s",
		s.Source, s.Target, s.Lost, s.Duplicates, s.Foreign, s.Reordered, s.BadReruns, extra)
}

// kcatProduce pipes lines into kcat -P with the given extra flags.
func kcatProduce(t *testing.T, brokers []string, topic string, partition int, lines []string, flags ...string) {
	t.Helper()
	args := append([]string{"-P", "-b", strings.Join(brokers, ","), "-t", topic, "-p", fmt.Sprint(partition)}, flags...)
	cmd := exec.Command("kcat", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runOwned(t, cmd); err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, out.String())
	}
}

// loadProducer writes numbered records with franz-go into topic until stopped or n are written.
type loadProducer struct {
	mu       sync.Mutex
	produced int
	errs     []error
	stop     chan struct{}
	done     chan struct{}
}

// end stops the load if it still runs and waits until it has stopped.
func (l *loadProducer) end() {
	select {
	case <-l.done:
	default:
		close(l.stop)
		<-l.done
	}
}

// stopAtCleanup ends the load when the test ends (also when it fails or times out), so that no
// producer outlives its test.
func (l *loadProducer) stopAtCleanup(t *testing.T) { t.Cleanup(l.end) }

func startLoad(t *testing.T, brokers []string, topic string, n int, perSecond int) *loadProducer {
	t.Helper()
	return startAgedLoad(t, brokers, topic, n, perSecond, 0)
}

// startAgedLoad is startLoad with every record's timestamp set age in the past (0: now).
func startAgedLoad(t *testing.T, brokers []string, topic string, n int, perSecond int, age time.Duration) *loadProducer {
	t.Helper()
	// A short metadata age lets the producer see partitions added while it runs.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MetadataMaxAge(3*time.Second), kgo.MetadataMinAge(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	lp := &loadProducer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lp.done)
		defer cl.Close()
		ctx := context.Background()
		start := time.Now()
		for i := 0; i < n; i++ {
			select {
			case <-lp.stop:
				_ = cl.Flush(ctx)
				return
			default:
			}
			if perSecond > 0 && i%100 == 0 {
				due := start.Add(time.Duration(float64(i) / float64(perSecond) * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%997)), Value: []byte(fmt.Sprintf("record-%09d-%s", i, strings.Repeat("x", 200))),
				Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}}
			if age > 0 {
				r.Timestamp = time.Now().Add(-age)
			}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				lp.mu.Lock()
				defer lp.mu.Unlock()
				if err != nil {
					lp.errs = append(lp.errs, err)
					return
				}
				lp.produced++
			})
		}
		_ = cl.Flush(ctx)
	}()
	return lp
}

// wait blocks until the producer finished and returns how many records were acknowledged.
func (lp *loadProducer) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-lp.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("load producer did not finish")
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(lp.errs) > 0 {
		t.Fatalf("load producer: %d errors, first: %v", len(lp.errs), lp.errs[0])
	}
	return lp.produced
}

func (lp *loadProducer) count() int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.produced
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func ptr(s string) *string { return &s }
