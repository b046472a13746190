// Command scale measures kmirror at scale in one process, on real Kafka brokers (KRaft, one node
// per cluster, started with scripts/kafka/cluster.sh), and writes the figures with the command
// that produced them to benchmarks/results/scale-<date>.md.
//
//	go run ./benchmarks/scale [--topics 1000 --partitions 10 --rate 5000]   # make bench-scale
//	go run ./benchmarks/scale --mode pause                                   # the scale-out pause
//
// Mode "scale" (the default) mirrors topics × partitions with one kmirror process:
//   - flowing: a record is written to every source partition before kmirror starts; the time to
//     all flowing is from kmirror's start until every target partition holds at least one record
//     (target log end offsets, listed every second), target topics created by kmirror included;
//   - memory: VmRSS and VmHWM from /proc/<pid>/status;
//   - CPU: CPU-seconds (utime+stime from /proc/<pid>/stat) over wall time, idle (no record for the
//     window) and at a steady rate spread over all partitions;
//   - the /metrics scrape: bytes and time, the median of three;
//   - a CPU profile (/debug/pprof, telemetry.pprof on) of the idle and the steady process.
//
// Mode "pause" measures how long partitions stop when a member joins, leaves or restarts
// (scale-out and rolling restarts), with and without consumer.group_instance_id: a target
// consumer notes every record's arrival, and the figure is the longest gap between two records of
// a partition in the window after each event, under a steady load.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/owned"
)

type options struct {
	mode       string
	topics     int
	partitions int
	rate       int
	idle       time.Duration
	steady     time.Duration
	bin        string
	out        string
	keep       bool
	heap       string
	pauseRate  int
	window     time.Duration
	set        []string // kmirror settings, key=value, passed as --set
	env        []string // environment variables for kmirror, NAME=value
	at         place
	spawn      *owned.Spawner // starts kmirror, which dies with the harness
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "scale", "scale (partitions in one process) or pause (rebalance pauses)")
	flag.IntVar(&o.topics, "topics", 1000, "source topics (scale mode)")
	flag.IntVar(&o.partitions, "partitions", 10, "partitions per topic")
	flag.IntVar(&o.rate, "rate", 5000, "records per second, spread over every partition, for the steady window")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "the idle window (no records)")
	flag.DurationVar(&o.steady, "steady", 60*time.Second, "the steady-rate window")
	flag.StringVar(&o.bin, "bin", "bin/kmirror", "the kmirror binary")
	flag.StringVar(&o.out, "out", "", "the results file (default benchmarks/results/scale-<date>.md or pause-<date>.md)")
	flag.BoolVar(&o.keep, "keep", false, "leave the clusters up")
	flag.StringVar(&o.heap, "broker-heap", "2g", "each broker's maximum heap")
	flag.IntVar(&o.pauseRate, "pause-rate", 1200, "records per second over the partitions, in pause mode")
	flag.DurationVar(&o.window, "window", 40*time.Second, "the window after each event in which gaps are measured (pause mode)")
	flag.Func("kmirror-set", "a kmirror setting, key=value, given to every kmirror process as --set (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q: want key=value", v)
		}
		o.set = append(o.set, v)
		return nil
	})
	flag.Func("kmirror-env", "an environment variable for every kmirror process, e.g. GOMEMLIMIT=900MiB (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q: want NAME=value", v)
		}
		o.env = append(o.env, v)
		return nil
	})
	flag.Parse()
	o.spawn = owned.NewSpawner()
	if o.out == "" {
		o.out = fmt.Sprintf("benchmarks/results/%s-%s.md", o.mode, time.Now().UTC().Format("2006-01-02T1504"))
		if o.mode == "scale" {
			o.out = fmt.Sprintf("benchmarks/results/scale-%s.md", time.Now().UTC().Format("2006-01-02T1504"))
		}
	}
	var err error
	if o.at, err = placeFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	switch o.mode {
	case "scale":
		err = runScale(o)
	case "pause":
		err = runPause(o)
	default:
		err = fmt.Errorf("--mode %q: want scale or pause", o.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// clusters are the two single-node clusters, under their own names, ports and state directory
// so that they never meet the e2e suite's or the comparison's.
type clusters struct {
	script string
	env    []string
	src    []string
	dst    []string
	pids   map[string]int
	keep   bool
}

// place is where the benchmark's clusters and kmirror listen and keep their state. By default the
// source cluster takes ports from 41000, the target from 42000, kmirror's /metrics 47464, and the
// clusters' state lives under /tmp/kmirror-scale; KMIRROR_E2E_PORT_BASE (source at the base, target
// 100 above, /metrics 464 above) and KMIRROR_KAFKA_STATE move them, as they move the e2e suite's,
// so that a run does not collide with another one on the same machine.
type place struct {
	src, dst string // KAFKA_PORT_BASE of each cluster
	metrics  string // host:port of kmirror's /metrics
	state    string // KMIRROR_KAFKA_STATE of the clusters
}

func placeFromEnv() (place, error) {
	p := place{src: "41000", dst: "42000", metrics: "127.0.0.1:47464", state: "/tmp/kmirror-scale"}
	if b := os.Getenv("KMIRROR_E2E_PORT_BASE"); b != "" {
		base, err := strconv.Atoi(b)
		if err != nil || base < 1024 || base > 65000 {
			return p, fmt.Errorf("KMIRROR_E2E_PORT_BASE=%q: want a port number between 1024 and 65000", b)
		}
		p.src, p.dst = strconv.Itoa(base), strconv.Itoa(base+100)
		p.metrics = "127.0.0.1:" + strconv.Itoa(base+464)
	}
	if s := os.Getenv("KMIRROR_KAFKA_STATE"); s != "" {
		p.state = s
	}
	return p, nil
}

func upClusters(heap string, keep bool, at place) (*clusters, error) {
	// Every partition holds open files and mmapped indexes in the broker; kmirror holds a
	// connection per broker and client. Children inherit the raised limit.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("read the open files limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("raise the open files limit to %d: %w", lim.Cur, err)
	}
	fmt.Fprintf(os.Stderr, "open files limit %d (each broker keeps a file open per partition's segment)\n", lim.Cur)
	c := &clusters{
		script: "scripts/kafka/cluster.sh", keep: keep, pids: map[string]int{},
		env: append(os.Environ(), "KMIRROR_KAFKA_STATE="+at.state, "KAFKA_NODE_HEAP="+heap, "KAFKA_START_TIMEOUT=300"),
	}
	for _, cl := range []struct{ name, base string }{{"scale-src", at.src}, {"scale-dst", at.dst}} {
		_, _ = c.run(nil, "down", cl.name)
		if _, err := c.run([]string{"KAFKA_PORT_BASE=" + cl.base}, "up", cl.name); err != nil {
			c.down()
			return nil, err
		}
		bs, err := c.run(nil, "bootstrap", cl.name)
		if err != nil {
			c.down()
			return nil, err
		}
		pid, _ := os.ReadFile(filepath.Join(at.state, cl.name, "node-1", "pid"))
		c.pids[cl.name], _ = strconv.Atoi(strings.TrimSpace(string(pid)))
		if cl.name == "scale-src" {
			c.src = strings.Split(strings.TrimSpace(bs), ",")
		} else {
			c.dst = strings.Split(strings.TrimSpace(bs), ",")
		}
	}
	return c, nil
}

func (c *clusters) run(env []string, args ...string) (string, error) {
	cmd := exec.Command(c.script, args...)
	cmd.Env = append(append([]string{}, c.env...), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", c.script, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *clusters) down() {
	if c.keep {
		return
	}
	_, _ = c.run(nil, "down", "scale-dst")
	_, _ = c.run(nil, "down", "scale-src")
}

// createTopics creates names with partitions each on the cluster at bootstrap, in batches.
func createTopics(ctx context.Context, adm *kadm.Client, names []string, partitions int) error {
	for i := 0; i < len(names); i += 100 {
		batch := names[i:min(i+100, len(names))]
		res, err := adm.CreateTopics(ctx, int32(partitions), 1, nil, batch...)
		if err != nil {
			return fmt.Errorf("create topics %s…: %w", batch[0], err)
		}
		for _, r := range res.Sorted() {
			if r.Err != nil && !strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS") {
				return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
			}
		}
	}
	return nil
}

func topicNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s.t%04d", prefix, i)
	}
	return names
}

// kmirrorProc is a running kmirror process.
type kmirrorProc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	log     string
	metrics string // host:port of /metrics
}

func startKmirror(spawn *owned.Spawner, bin, cfg, logPath, metrics string, set, env []string) (*kmirrorProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--config", cfg}
	for _, kv := range set {
		args = append(args, "--set", kv)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	k := &kmirrorProc{cmd: cmd, done: make(chan struct{}), log: logPath, metrics: metrics}
	k.started = time.Now()
	if err := spawn.Start(cmd); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(k.done) }()
	for i := 0; i < 500; i++ { // a SIGTERM before the signal handler is installed would kill outright
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte("starting kmirror")) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return k, nil
}

// stop sends SIGTERM and waits; it returns how long the stop took.
func (k *kmirrorProc) stop() (time.Duration, error) {
	t := time.Now()
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(2 * time.Minute):
		owned.Kill(k.cmd)
		<-k.done
		return time.Since(t), fmt.Errorf("kmirror did not stop within 2m of SIGTERM (see %s)", k.log)
	}
	if code := k.cmd.ProcessState.ExitCode(); code != 0 {
		return time.Since(t), fmt.Errorf("kmirror exited with status %d (see %s)", code, k.log)
	}
	return time.Since(t), nil
}

func (k *kmirrorProc) alive() error {
	select {
	case <-k.done:
		return fmt.Errorf("kmirror exited early with status %d (see %s)", k.cmd.ProcessState.ExitCode(), k.log)
	default:
		return nil
	}
}

// cpuSeconds is utime+stime of pid from /proc/<pid>/stat (clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// memory returns VmRSS and VmHWM of pid in bytes.
func memory(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}

// cpuUse measures pids' CPU share of one core over d: the whole window's share for each pid, and
// the first pid's share in each 10 s slice of it, sorted (a collection or a refresh lands in one
// slice; the median says what the process does between them).
func cpuUse(d time.Duration, pids ...int) (window, slices []float64) {
	before := make([]float64, len(pids))
	for i, p := range pids {
		before[i] = cpuSeconds(p)
	}
	t := time.Now()
	for left := d; left > 0; left -= 10 * time.Second {
		st, sc := time.Now(), cpuSeconds(pids[0])
		time.Sleep(min(left, 10*time.Second))
		slices = append(slices, (cpuSeconds(pids[0])-sc)/time.Since(st).Seconds())
	}
	wall := time.Since(t).Seconds()
	window = make([]float64, len(pids))
	for i, p := range pids {
		window[i] = (cpuSeconds(p) - before[i]) / wall
	}
	sort.Float64s(slices)
	return window, slices
}

// share describes a CPU share with its slices: "14.5% of a core (10 s slices: median 13.9%, 12.0–19.1%)".
func share(window float64, slices []float64) string {
	if len(slices) < 2 {
		return fmt.Sprintf("%.1f%% of a core", 100*window)
	}
	return fmt.Sprintf("%.1f%% of a core (%d slices of 10 s: median %.1f%%, %.1f–%.1f%%)", 100*window, len(slices),
		100*slices[len(slices)/2], 100*slices[0], 100*slices[len(slices)-1])
}

// scrape fetches /metrics three times and returns the median size and time, and the last body.
func scrape(addr string) (int, time.Duration, []byte, error) {
	type res struct {
		n int
		d time.Duration
	}
	var rs []res
	var body []byte
	for range 3 {
		t := time.Now()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return 0, 0, nil, fmt.Errorf("scrape %s: %w", addr, err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, 0, nil, err
		}
		rs = append(rs, res{len(body), time.Since(t)})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].d < rs[j].d })
	return rs[1].n, rs[1].d, body, nil
}

// sample sums the samples of family name in a scrape whose label set contains every one of
// labels (each written as in the exposition format, e.g. `client="consumer"`).
func sample(body []byte, name string, labels ...string) float64 {
	var sum float64
	for _, l := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for _, lb := range labels {
			match = match && strings.Contains(rest, lb)
		}
		if i := strings.LastIndexByte(rest, ' '); match && i >= 0 {
			v, _ := strconv.ParseFloat(rest[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// seriesByFamily names the families with the most series in a scrape.
func seriesByFamily(body []byte) string {
	count := map[string]int{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i > 0 {
			name = l[:i]
		}
		count[name]++
	}
	type fc struct {
		name string
		n    int
	}
	var fs []fc
	total := 0
	for n, c := range count {
		fs = append(fs, fc{n, c})
		total += c
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].n > fs[j].n })
	var b strings.Builder
	fmt.Fprintf(&b, "%d series; largest: ", total)
	for i := 0; i < len(fs) && i < 6; i++ {
		fmt.Fprintf(&b, "%s %d, ", fs[i].name, fs[i].n)
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// profile takes a profile of kind "cpu" (over d), "heap" or "goroutine" from kmirror's
// /debug/pprof, keeps it at path and returns pprof's top lines.
func profile(addr, path, kind string, d time.Duration) string {
	url := fmt.Sprintf("http://%s/debug/pprof/%s", addr, kind)
	args := []string{"tool", "pprof", "-top", "-nodecount=14"}
	switch kind {
	case "cpu":
		url = fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds()))
	case "heap":
		args = append(args, "-sample_index=inuse_space")
	}
	resp, err := http.Get(url)
	if err != nil {
		return "profile: " + err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "profile: " + err.Error()
	}
	out, err := exec.Command("go", append(args, path)...).CombinedOutput()
	if err != nil {
		return "pprof: " + err.Error() + "\n" + string(out)
	}
	return string(out)
}

// endOffsets sums the log end offsets of topics and counts the partitions with at least one
// record; topics not there yet count nothing.
func endOffsets(ctx context.Context, adm *kadm.Client, topics []string) (sum int64, nonEmpty int) {
	for i := 0; i < len(topics); i += 200 {
		ends, err := adm.ListEndOffsets(ctx, topics[i:min(i+200, len(topics))]...)
		if err != nil {
			continue
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil && o.Offset > 0 {
				sum += o.Offset
				nonEmpty++
			}
		})
	}
	return sum, nonEmpty
}

// emptyPartitions lists the partitions of topics without a record (or not listed).
func emptyPartitions(ctx context.Context, adm *kadm.Client, topics []string) []kadm.ListedOffset {
	var out []kadm.ListedOffset
	for i := 0; i < len(topics); i += 200 {
		ends, err := adm.ListEndOffsets(ctx, topics[i:min(i+200, len(topics))]...)
		if err != nil {
			continue
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil || o.Offset == 0 {
				out = append(out, o)
			}
		})
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// pace writes rate records per second, spread round-robin over every partition of topics, until
// ctx ends, and returns how many it wrote.
func pace(ctx context.Context, cl *kgo.Client, topics []string, partitions, rate int) int64 {
	tick := 10 * time.Millisecond
	per := max(rate/100, 1)
	value := bytes.Repeat([]byte("v"), 100)
	var n int64
	i := 0
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = cl.Flush(context.Background())
			return n
		case <-t.C:
		}
		for range per {
			tp := i % (len(topics) * partitions)
			r := &kgo.Record{Topic: topics[tp/partitions], Partition: int32(tp % partitions), Value: value}
			cl.Produce(ctx, r, nil)
			n++
			i++
		}
	}
}

func commandLine() string {
	return "go run ./benchmarks/scale " + strings.Join(os.Args[1:], " ")
}
