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
	return &harness{o: o, script: filepath.Join(root, "scripts", "kafka", "cluster.sh"), work: work, clkTicks: 100}, nil
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

func (h *harness) preload(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.source...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(10*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, t := range []string{topic, pacedTopic} {
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, int32(h.o.partitions), 1, nil, t); err != nil {
			return err
		}
	}
	value := make([]byte, h.o.valueBytes)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	var firstErr error
	for i := 0; i < h.o.records; i++ {
		r := &kgo.Record{Key: []byte("key-" + strconv.Itoa(i%10_000)), Value: value,
			Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("europe")}, {Key: "seq", Value: []byte(strconv.Itoa(i))}}}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

func (h *harness) java(args ...string) *exec.Cmd {
	return exec.Command("java", append([]string{"-Xms512m", "-Xmx2g", "-cp", h.lib + "/*",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"}, args...)...)
}

// producerCeiling writes the workload's volume into the target with Kafka's producer performance
// tool (same batch, linger, acks and compression as the mirrors), in as many parallel instances as
// kmirror has producers, and returns their summed records/s.
func (h *harness) producerCeiling(ctx context.Context) (float64, error) {
	cl, _ := kgo.NewClient(kgo.SeedBrokers(h.target...))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, int32(h.o.partitions), 1, nil, "ceiling"); err != nil {
		cl.Close()
		return 0, err
	}
	cl.Close()
	n := h.o.ceilingProducers
	type out struct {
		rate float64
		err  error
	}
	results := make(chan out, n)
	for i := 0; i < n; i++ {
		go func() {
			cmd := h.java("org.apache.kafka.tools.ProducerPerformance", "--topic", "ceiling",
				"--num-records", strconv.Itoa(h.o.records/n), "--record-size", strconv.Itoa(h.o.valueBytes), "--throughput", "-1",
				"--producer-props", "bootstrap.servers="+strings.Join(h.target, ","), "acks=all", "linger.ms=5",
				"batch.size=1048576", "compression.type=none", "enable.idempotence=true")
			b, err := cmd.CombinedOutput()
			if err != nil {
				results <- out{err: fmt.Errorf("producer perf: %w\n%s", err, b)}
				return
			}
			// The last line: "N records sent, X records/sec (Y MB/sec), ..."
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			last := lines[len(lines)-1]
			i := strings.Index(last, " records/sec")
			j := strings.LastIndex(last[:max(i, 0)], ", ")
			if i < 0 || j < 0 {
				results <- out{err: fmt.Errorf("producer perf: unexpected output %q", last)}
				return
			}
			r, err := strconv.ParseFloat(strings.TrimSpace(last[j+2:i]), 64)
			results <- out{rate: r, err: err}
		}()
	}
	var total float64
	var firstErr error
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		total += r.rate
	}
	return total, firstErr
}

// consumerCeiling reads the preloaded source topic with Kafka's consumer performance tool.
func (h *harness) consumerCeiling(ctx context.Context) (float64, error) {
	cmd := h.java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", strings.Join(h.source, ","),
		"--topic", topic, "--messages", strconv.Itoa(h.o.records), "--group", "perf-ceiling",
		"--consumer.config", "/dev/null", "--hide-header")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("consumer perf: %w\n%s", err, out)
	}
	// CSV: start, end, MB, MB/s, msgs, msgs/s, rebalance ms, fetch ms, fetch MB/s, fetch msgs/s
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Split(lines[len(lines)-1], ",")
	if len(f) < 10 {
		return 0, fmt.Errorf("consumer perf: unexpected output %q", lines[len(lines)-1])
	}
	return strconv.ParseFloat(strings.TrimSpace(f[9]), 64) // fetch msgs/s: excludes the group join
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

// captureProfiles saves a 3-second CPU profile and a heap profile of the running kmirror from its
// /debug/pprof endpoint, for `go tool pprof`.
func (h *harness) captureProfiles() {
	time.Sleep(1500 * time.Millisecond) // past start-up, into the copy
	for _, p := range []struct{ url, file string }{
		{"http://127.0.0.1:19464/debug/pprof/profile?seconds=2", "kmirror-cpu.pprof"},
		{"http://127.0.0.1:19464/debug/pprof/heap", "kmirror-heap.pprof"},
		{"http://127.0.0.1:19464/debug/pprof/allocs", "kmirror-allocs.pprof"},
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
