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
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/owned"
	"github.com/kmirror/kmirror/benchmarks/wan"
)

const topic = "bench"

type harness struct {
	o        options
	spawn    *owned.Spawner // starts the contenders, which die with the harness
	script   string
	lib      string
	work     string
	source   []string // the clusters' own listeners, which local clients use
	target   []string
	clkTicks float64
	load     workload
	// profileDir, when set, receives CPU and heap profiles of kmirror's first run.
	profileDir string
	// logDir receives the mirrors' logs (git-ignored).
	logDir string
	// programs are the Go contenders' binaries buildPrograms built into work, by program name
	// (baremirror, baresarama).
	programs map[string]string
	// main is the preloaded topic of the catch-up runs.
	main preloaded
	// remote starts both clusters with a listener for clients behind the WAN, and links holds
	// the latency proxies in front of them, by cluster name (the WAN section's runs).
	remote bool
	links  map[string]*wan.Link
	// ids numbers the runs that need source groups of their own beyond the rounds.
	ids int
}

// nextID is a run id no other run of this harness has had.
func (h *harness) nextID() int {
	h.ids++
	return 1000 + h.ids
}

// preloaded is a topic the harness wrote into the source before the runs.
type preloaded struct {
	topic   string
	records int
	// last is the seq header of the last record of each partition.
	last map[int32]string
}

// endpoints are the bootstrap servers a mirror is given: the clusters' own listeners, or a
// latency proxy's in front of the cluster behind the WAN.
type endpoints struct {
	source, target []string
}

// direct is both clusters without a proxy: the loopback runs.
func (h *harness) direct() endpoints { return endpoints{source: h.source, target: h.target} }

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
	return &harness{o: o, spawn: owned.NewSpawner(), script: filepath.Join(root, "scripts", "kafka", "cluster.sh"), work: work, clkTicks: 100,
		load: newWorkload(o.valueBytes), programs: map[string]string{}}, nil
}

func (h *harness) close() {
	for _, l := range h.links {
		l.Close()
	}
	_ = h.clusterCmd("down", "us").Run()
	_ = h.clusterCmd("down", "europe").Run()
	_ = os.RemoveAll(h.work)
}

// clusterCmd is scripts/kafka/cluster.sh ACTION NAME ... with the run's state directory
// (--kafka-state) and, with --port-base, the cluster's ports: europe at the base, us 100 above,
// as the e2e suite's KMIRROR_E2E_PORT_BASE lays them out. KAFKA_OWNER_PID makes every node
// started die with this process, however it ends: a benchmark killed mid-run leaves no broker
// on the ports behind it.
func (h *harness) clusterCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(h.script, args...)
	cmd.Env = append(os.Environ(), "KMIRROR_KAFKA_STATE="+h.o.kafkaState, fmt.Sprintf("KAFKA_OWNER_PID=%d", os.Getpid()))
	if h.o.portBase > 0 && len(args) > 1 {
		base := h.o.portBase
		if args[1] != "europe" {
			base += 100
		}
		cmd.Env = append(cmd.Env, fmt.Sprintf("KAFKA_PORT_BASE=%d", base))
	}
	return cmd
}

// telemetryAddr is where a kmirror contender serves /metrics and /debug/pprof: 19464, or 300
// above --port-base.
func (h *harness) telemetryAddr() string { return h.localAddr(19464, 300) }

// mm2RESTAddr is the internal REST server of an exactly-once MirrorMaker 2: 18083, or 301 above
// --port-base.
func (h *harness) mm2RESTAddr() string { return h.localAddr(18083, 301) }

func (h *harness) localAddr(fixed, offset int) string {
	if h.o.portBase > 0 {
		return fmt.Sprintf("127.0.0.1:%d", h.o.portBase+offset)
	}
	return fmt.Sprintf("127.0.0.1:%d", fixed)
}

func (h *harness) cluster(args ...string) (string, error) {
	out, err := h.clusterCmd(args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cluster.sh %v: %w\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildPrograms builds the Go contenders of cs that are not kmirror (bin/kmirror is make build's)
// into the work directory, once per run, so that each runs as a process of its own whose memory
// and CPU are measured as kmirror's are.
func (h *harness) buildPrograms(ctx context.Context, cs []contender) error {
	for _, c := range cs {
		if c.program != "baremirror" && c.program != "baresarama" || h.programs[c.program] != "" {
			continue
		}
		bin := filepath.Join(h.work, c.program)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./benchmarks/"+c.program)
		cmd.Dir = h.o.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build builds kmirror
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build benchmarks/%s: %w\n%s", c.program, err, out)
		}
		h.programs[c.program] = bin
	}
	return nil
}

func (h *harness) start(ctx context.Context) error {
	out, err := exec.Command(filepath.Join(h.o.root, "scripts", "kafka", "fetch.sh"), h.o.version).Output()
	if err != nil {
		return fmt.Errorf("fetch kafka %s: %w", h.o.version, err)
	}
	h.lib = strings.TrimSpace(string(out))
	for _, name := range []string{"europe", "us"} {
		_, _ = h.cluster("down", name)
		if _, err := h.cluster(h.upArgs(name)...); err != nil {
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
	if h.remote {
		return h.openLinks()
	}
	return nil
}

func (h *harness) upArgs(name string) []string {
	args := []string{"up", name, "--version", h.o.version}
	if h.remote {
		args = append(args, "--remote-listener")
	}
	return args
}

// openLinks starts a latency proxy in front of each broker's remote listener, at RTT 0 until a
// WAN run sets one. The target's proxies outlive its restarts: each connection dials the broker
// when it is accepted.
func (h *harness) openLinks() error {
	h.links = map[string]*wan.Link{}
	for _, name := range []string{"europe", "us"} {
		out, err := h.cluster("remote", name)
		if err != nil {
			return err
		}
		routes, err := wan.ParseRoutes(out)
		if err != nil {
			return fmt.Errorf("cluster.sh remote %s: %w", name, err)
		}
		l, err := wan.Open(routes)
		if err != nil {
			return fmt.Errorf("latency proxies for %s: %w", name, err)
		}
		h.links[name] = l
	}
	return nil
}

// restartTarget gives a mirror run an empty target cluster.
func (h *harness) restartTarget() error {
	if _, err := h.cluster("down", "us"); err != nil {
		return err
	}
	_, err := h.cluster(h.upArgs("us")...)
	return err
}

// preload writes the workload into the source topic, compressed as --source-compression says.
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
	if err := h.createTopic(ctx, kadm.NewClient(cl), "source", topic, nil); err != nil {
		return err
	}
	if err := h.produceAll(ctx, cl, topic, h.o.records); err != nil {
		return err
	}
	h.main, err = h.readSourceTails(ctx, kadm.NewClient(cl), topic, h.o.records)
	return err
}

// preloadTopic writes n records of the workload into a new source topic t, for the WAN runs.
func (h *harness) preloadTopic(ctx context.Context, t string, n int) (preloaded, error) {
	codec, err := compressionCodec(h.o.sourceCompression)
	if err != nil {
		return preloaded{}, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.source...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(10*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000),
		kgo.ProducerBatchCompression(codec))
	if err != nil {
		return preloaded{}, err
	}
	defer cl.Close()
	if err := h.createTopic(ctx, kadm.NewClient(cl), "source", t, nil); err != nil {
		return preloaded{}, err
	}
	if err := h.produceAll(ctx, cl, t, n); err != nil {
		return preloaded{}, fmt.Errorf("preload %q: %w", t, err)
	}
	return h.readSourceTails(ctx, kadm.NewClient(cl), t, n)
}

func (h *harness) java(args ...string) *exec.Cmd {
	jvm := []string{"-Xms512m", "-Xmx2g", "-cp", h.lib + "/*", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"}
	if h.o.javaLogLevel != "" {
		jvm = append(jvm, "-Dlog4j2.level="+h.o.javaLogLevel)
	}
	return exec.Command("java", append(jvm, args...)...)
}

// catchUpRun is one timed catch-up run: which preloaded topic, where the mirror finds the
// clusters, and what it is called.
type catchUpRun struct {
	load preloaded
	at   endpoints
	// id gives the run a source group of its own (a group that copied the topic before would
	// start at its end).
	id      int
	logName string // file name under the log directory
	// profile, when set, names the profiles taken of a kmirror contender during the run (the
	// suffix of their file names; "-" for none).
	profile string
	timeout time.Duration
}

// unfinishedError is a catch-up run that hit its time limit: the result beside it holds the
// rates measured over the records that did arrive.
type unfinishedError struct {
	copied, of int64
	after      time.Duration
	log        string
}

func (e *unfinishedError) Error() string {
	return fmt.Sprintf("target holds %d of %d after %s (log %s)", e.copied, e.of, e.after, e.log)
}

// mirrorRun mirrors a preloaded topic into a fresh target with contender c and times it. When
// the run's time limit passes first, the result holds what was measured until then and the
// error is an *unfinishedError.
func (h *harness) mirrorRun(ctx context.Context, c contender, run catchUpRun) (result, error) {
	if err := h.restartTarget(); err != nil {
		return result{}, err
	}
	if c.exactlyOnce {
		if err := h.warmUpTransactions(ctx); err != nil {
			return result{}, err
		}
	}
	cmd, targetTopic, err := h.mirrorCommand(c, run.at, run.load.topic, run.id)
	if err != nil {
		return result{}, err
	}
	logf, err := os.Create(filepath.Join(h.logDir, run.logName))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := h.spawn.Start(cmd); err != nil {
		return result{}, err
	}
	defer func() { owned.Kill(cmd); _ = cmd.Wait() }()
	clock := h.readCPU(cmd.Process.Pid)
	var machine machineCPU // at the first record on the target

	// The profiles are taken while the mirror runs: it is killed only after they are saved.
	copying, done := make(chan struct{}), make(chan struct{})
	var profiling sync.WaitGroup
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(done) }) }
	defer profiling.Wait()
	defer stop()
	if c.program == "kmirror" && run.profile != "-" && h.profileDir != "" {
		profiling.Go(func() { h.captureProfiles(c.name, run.profile, copying, done) })
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.target...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var first, end time.Time
	var peak, n int64
	var series []point
	var unfinished error
	pid := cmd.Process.Pid
	deadline := start.Add(run.timeout)
	records := int64(run.load.records)
	for {
		if rss := peakRSS(pid); rss > peak {
			peak = rss
		}
		var ends map[int32]int64
		n, ends = targetCount(ctx, adm, c, targetTopic)
		at := time.Now()
		series = append(series, point{seconds: at.Sub(start).Seconds(), records: n})
		if n > 0 && first.IsZero() {
			first, machine = at, readMachineCPU()
			close(copying)
		}
		if h.complete(ctx, c, run.load, targetTopic, n, ends) {
			end = at // the listing that showed every record, not the check after it
			break
		}
		if at.After(deadline) {
			end = at
			unfinished = &unfinishedError{copied: n, of: records, after: run.timeout, log: logf.Name()}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu := cpuTime(pid, h.clkTicks)
	brokers, machineEnd := h.readCPU(pid), readMachineCPU()
	if rss := peakRSS(pid); rss > peak {
		peak = rss
	}
	if c.program == "kmirror" && run.profile != "-" && h.profileDir != "" {
		h.saveMetrics(c.name, run.profile)
	}
	r := result{name: c.name, total: end.Sub(start), peakRSS: peak, cpu: cpu, series: series, committed: -1,
		sourceCPU: brokers.source - clock.source, targetCPU: brokers.target - clock.target, busy: machineEnd.busySince(machine)}
	copied := min(n, records)
	r.copied = copied
	r.recordsPerSec = float64(copied) / r.total.Seconds()
	if !first.IsZero() && end.After(first) {
		r.steady = end.Sub(first)
		r.steadyPerSec = float64(copied) / r.steady.Seconds()
	}
	r.mbPerSec = r.recordsPerSec * float64(h.o.valueBytes) / 1e6
	if unfinished != nil {
		return r, unfinished
	}
	// What follows is untimed, without the mirror: once its profiles are saved, it is stopped.
	stop()
	profiling.Wait()
	owned.Kill(cmd)
	if r.batches, err = targetBatches(ctx, adm, h.target, targetTopic); err != nil {
		return r, fmt.Errorf("count the batches on the target: %w", err)
	}
	if c.exactlyOnce {
		if r.committed, r.txnIDs, err = h.verifyCommitted(ctx, adm, targetTopic); err != nil {
			return r, fmt.Errorf("read the target back with read_committed: %w", err)
		}
	}
	return r, nil
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

// machineCPU is the whole machine's CPU time so far, in clock ticks of all cores (/proc/stat).
type machineCPU struct{ busy, all float64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var m machineCPU
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		m.all += v
		if i != 3 && i != 4 { // idle, iowait
			m.busy += v
		}
	}
	return m
}

// busySince is the share of the machine's cores that were busy since from (0 to 1; 0 when from
// was never read).
func (m machineCPU) busySince(from machineCPU) float64 {
	if from.all == 0 || m.all <= from.all {
		return 0
	}
	return (m.busy - from.busy) / (m.all - from.all)
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

// captureProfiles saves a CPU profile (--profile-for, 5 s by default: a catch-up on loopback
// lasts 10-25 s here; the 2 s it was showed too few samples to rank sarama's encoding against the
// channel hand-offs), a heap profile, the allocations and the goroutines of the running kmirror
// contender name from its /debug/pprof endpoint, for `go tool pprof`, with suffix in the file
// names, starting a second after copying (closed when the first record reached the target):
// across a WAN the start-up takes several round trips. It gives up when done closes first.
func (h *harness) captureProfiles(name, suffix string, copying, done <-chan struct{}) {
	select {
	case <-copying:
	case <-done:
		return
	}
	time.Sleep(time.Second) // into the copy
	h.saveProfiles(name, suffix, h.o.profileFor)
}

// saveProfiles saves the CPU profile over d, the heap, the allocations and the goroutines (where
// each waits, grouped) of the running kmirror contender name (kmirror or kmirror-eos, the file
// names' prefix), with suffix in the file names.
func (h *harness) saveProfiles(name, suffix string, d time.Duration) {
	for _, p := range []struct{ url, file string }{
		{fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), name + "-cpu" + suffix + ".pprof"},
		{"/debug/pprof/heap", name + "-heap" + suffix + ".pprof"},
		{"/debug/pprof/allocs", name + "-allocs" + suffix + ".pprof"},
		{"/debug/pprof/goroutine?debug=1", name + "-goroutines" + suffix + ".txt"},
	} {
		resp, err := http.Get("http://" + h.telemetryAddr() + p.url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(h.profileDir, p.file), b, 0o644)
	}
}

// saveMetrics saves what the running kmirror contender name exports on /metrics (sarama's
// request latencies, sizes and rates per broker among them), with suffix in the file name.
func (h *harness) saveMetrics(name, suffix string) {
	resp, err := http.Get("http://" + h.telemetryAddr() + "/metrics")
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = os.WriteFile(filepath.Join(h.profileDir, name+"-metrics"+suffix+".txt"), b, 0o644)
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
	b, err := os.ReadFile(filepath.Join(h.o.kafkaState, cluster, "node-1", "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
