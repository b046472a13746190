package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

const topic = "bench"

type harness struct {
	o        options
	script   string
	lib      string
	work     string
	source   []string
	target   []string
	clkTicks float64
	load     workload
	// profileDir, when set, receives CPU and heap profiles of kmirror's first run.
	profileDir string
}

func newHarness(o options) (*harness, error) {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, err
	}
	o.root = root
	work, err := os.MkdirTemp("", "kmirror-bench-")
	if err != nil {
		return nil, err
	}
	return &harness{o: o, script: filepath.Join(root, "scripts", "kafka", "cluster.sh"), work: work, clkTicks: 100,
		load: newWorkload(o.valueBytes)}, nil
}

func (h *harness) close() {
	_ = exec.Command(h.script, "down", "us").Run()
	_ = exec.Command(h.script, "down", "europe").Run()
	_ = os.RemoveAll(h.work)
}

func (h *harness) cluster(args ...string) (string, error) {
	out, err := exec.Command(h.script, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cluster.sh %v: %w\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (h *harness) start(ctx context.Context) error {
	out, err := exec.Command(filepath.Join(h.o.root, "scripts", "kafka", "fetch.sh"), h.o.version).Output()
	if err != nil {
		return fmt.Errorf("fetch kafka %s: %w", h.o.version, err)
	}
	h.lib = strings.TrimSpace(string(out))
	for _, name := range []string{"europe", "us"} {
		_, _ = h.cluster("down", name)
		if _, err := h.cluster("up", name, "--version", h.o.version); err != nil {
			return err
		}
	}
	b, err := h.cluster("bootstrap", "europe")
	if err != nil {
		return err
	}
	h.source = strings.Split(b, ",")
	b, err = h.cluster("bootstrap", "us")
	if err != nil {
		return err
	}
	h.target = strings.Split(b, ",")
	return nil
}

// restartTarget gives a mirror run an empty target cluster.
func (h *harness) restartTarget() error {
	if _, err := h.cluster("down", "us"); err != nil {
		return err
	}
	_, err := h.cluster("up", "us", "--version", h.o.version)
	return err
}

// preload writes the workload into the source topic (and creates the paced topic the latency
// runs use), compressed as --source-compression says.
func (h *harness) preload(ctx context.Context) error {
	codec, err := compressionCodec(h.o.sourceCompression)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.source...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(10*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000),
		kgo.ProducerBatchCompression(codec))
	if err != nil {
		return err
	}
	defer cl.Close()
	appendTime := "LogAppendTime" // the latency runs read the source broker's append time
	for t, configs := range map[string]map[string]*string{
		topic:      nil,
		pacedTopic: {"message.timestamp.type": &appendTime},
	} {
		if err := h.createTopic(ctx, kadm.NewClient(cl), "source", t, configs); err != nil {
			return err
		}
	}
	return h.produceAll(ctx, cl, topic)
}

func (h *harness) java(args ...string) *exec.Cmd {
	return exec.Command("java", append([]string{"-Xms512m", "-Xmx2g", "-cp", h.lib + "/*",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"}, args...)...)
}

// mirrorRun mirrors the preloaded topic into a fresh target with one contender and times it.
func (h *harness) mirrorRun(ctx context.Context, contender string, round int) (result, error) {
	if err := h.restartTarget(); err != nil {
		return result{}, err
	}
	cmd, targetTopic, err := h.mirrorCommand(contender, topic, round)
	if err != nil {
		return result{}, err
	}
	logf, err := os.Create(filepath.Join(h.work, contender+".log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	if contender == "kmirror" && round == 0 && h.profileDir != "" {
		go h.captureProfiles()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.target...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var first time.Time
	var peak int64
	var series []point
	pid := cmd.Process.Pid
	deadline := start.Add(h.o.timeout)
	for {
		if rss := peakRSS(pid); rss > peak {
			peak = rss
		}
		n := count(ctx, adm, targetTopic)
		series = append(series, point{seconds: time.Since(start).Seconds(), records: n})
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if n >= int64(h.o.records) {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("target holds %d of %d after %s (log %s)", n, h.o.records, h.o.timeout, logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	end := time.Now()
	cpu := cpuTime(pid, h.clkTicks)
	if rss := peakRSS(pid); rss > peak {
		peak = rss
	}
	r := result{name: contender, total: end.Sub(start), steady: end.Sub(first), peakRSS: peak, cpu: cpu, series: series}
	r.recordsPerSec = float64(h.o.records) / r.total.Seconds()
	r.steadyPerSec = float64(h.o.records) / r.steady.Seconds()
	r.mbPerSec = r.recordsPerSec * float64(h.o.valueBytes) / 1e6
	return r, nil
}

func count(ctx context.Context, adm *kadm.Client, t string) int64 {
	n, _ := verify.EndOffsets(ctx, adm, t)
	return n
}

// peakRSS reads the process's high-water resident set (VmHWM) from /proc.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmHWM:") {
			fields := strings.Fields(s.Text())
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime reads the process's user + system CPU time from /proc/PID/stat.
func cpuTime(pid int, ticks float64) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return time.Duration((ut + st) / ticks * float64(time.Second))
}

func numCPU() int { return runtime.NumCPU() }

// mirrorCommand returns the command that runs contender on topicName, and the topic's name on
// the target.
func (h *harness) mirrorCommand(contender, topicName string, round int) (cmd *exec.Cmd, targetTopic string, err error) {
	switch contender {
	case "kmirror":
		cfg := filepath.Join(h.work, "kmirror.yaml")
		body := fmt.Sprintf(`source: {alias: europe, bootstrap: [%s]}
target: {alias: us, bootstrap: [%s]}
topics: {include: [%s], replication_factor: 1}
consumer: {group_id: bench-%d}
producer: {batch_bytes: 1048576, linger: 5ms, compression: none}
telemetry: {listen: "127.0.0.1:19464", pprof: true}
log: {level: warn}
`, strings.Join(h.source, ","), strings.Join(h.target, ","), topicName, round)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, "", err
		}
		args := []string{"run", "--config", cfg}
		for _, kv := range h.o.kmirrorSet {
			args = append(args, "--set", kv)
		}
		cmd = exec.Command(filepath.Join(h.o.root, "bin", "kmirror"), args...)
		cmd.Env = append(os.Environ(), h.o.kmirrorEnv...)
		targetTopic = topicName
	case "mirrormaker2":
		cfg := filepath.Join(h.work, "mm2.properties")
		body := fmt.Sprintf(`clusters = europe, us
europe.bootstrap.servers = %s
us.bootstrap.servers = %s
europe->us.enabled = true
us->europe.enabled = false
europe->us.topics = %s
tasks.max = %d
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
config.storage.replication.factor = 1
status.storage.replication.factor = 1
emit.checkpoints.enabled = false
sync.group.offsets.enabled = false
refresh.topics.interval.seconds = 5
europe.consumer.group.id = mm2-bench-%d
us.producer.acks = all
us.producer.linger.ms = 5
us.producer.batch.size = 1048576
us.producer.compression.type = none
us.producer.enable.idempotence = true
`, strings.Join(h.source, ","), strings.Join(h.target, ","), topicName, h.o.partitions, round)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, "", err
		}
		cmd = h.java("org.apache.kafka.connect.mirror.MirrorMaker", cfg)
		targetTopic = "europe." + topicName
	}
	return cmd, targetTopic, nil
}

// captureProfiles saves a 2-second CPU profile, a heap profile and the allocations of the running
// kmirror from its /debug/pprof endpoint, for `go tool pprof`.
func (h *harness) captureProfiles() {
	time.Sleep(1500 * time.Millisecond) // past start-up, into the copy
	h.saveProfiles("", 2*time.Second)
}

// saveProfiles saves kmirror's CPU profile over d, its heap and its allocations, with suffix in
// the file names.
func (h *harness) saveProfiles(suffix string, d time.Duration) {
	for _, p := range []struct{ url, file string }{
		{fmt.Sprintf("http://127.0.0.1:19464/debug/pprof/profile?seconds=%d", int(d.Seconds())), "kmirror-cpu" + suffix + ".pprof"},
		{"http://127.0.0.1:19464/debug/pprof/heap", "kmirror-heap" + suffix + ".pprof"},
		{"http://127.0.0.1:19464/debug/pprof/allocs", "kmirror-allocs" + suffix + ".pprof"},
	} {
		resp, err := http.Get(p.url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(h.profileDir, p.file), b, 0o644)
	}
}

// cpuShares is the CPU each process of a run used over a stretch of wall time, as a share of one
// core: with two cores, shares adding up to about 200% mean the machine was saturated.
type cpuShares struct {
	mirror, source, target, harness float64 // percent of one core
}

func (c cpuShares) String() string {
	return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f%% (sum %.0f%% of %d cores)", c.mirror, c.source, c.target, c.harness,
		c.mirror+c.source+c.target+c.harness, numCPU())
}

// cpuClock reads the CPU time of a run's processes: the mirror (pid), node 1 of each cluster and
// this harness.
type cpuClock struct {
	at                              time.Time
	mirror, source, target, harness time.Duration
}

func (h *harness) readCPU(pid int) cpuClock {
	return cpuClock{
		at:      time.Now(),
		mirror:  cpuTime(pid, h.clkTicks),
		source:  cpuTime(h.brokerPID("europe"), h.clkTicks),
		target:  cpuTime(h.brokerPID("us"), h.clkTicks),
		harness: cpuTime(os.Getpid(), h.clkTicks),
	}
}

func (c cpuClock) sharesSince(from cpuClock) cpuShares {
	wall := c.at.Sub(from.at).Seconds()
	pct := func(to, from time.Duration) float64 { return 100 * (to - from).Seconds() / wall }
	return cpuShares{
		mirror:  pct(c.mirror, from.mirror),
		source:  pct(c.source, from.source),
		target:  pct(c.target, from.target),
		harness: pct(c.harness, from.harness),
	}
}

// brokerPID is the process of node 1 of a cluster started by cluster.sh, or 0.
func (h *harness) brokerPID(cluster string) int {
	state := os.Getenv("KMIRROR_KAFKA_STATE")
	if state == "" {
		state = "/tmp/kmirror-kafka"
	}
	b, err := os.ReadFile(filepath.Join(state, cluster, "node-1", "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
