//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/config"
)

// rssMargin is what resident memory may exceed the configuration's bound by: memory the Go
// runtime has freed but not yet returned to the kernel, stacks, and what GOMEMLIMIT, a soft
// limit, lets through between two collections.
const rssMargin = 64 << 20

// memoryHalfConstant is half of config.MemoryConstant: what the test's GOMEMLIMIT leaves the
// process besides records.
const memoryHalfConstant = config.MemoryConstant / 2

// TestMemoryStaysWithinBoundWithFrozenTarget mirrors a backlog of large records (375 MiB, 32 KiB
// values, 12 partitions) with default settings and the target frozen (SIGSTOP of its only
// broker) for 60 s, long enough for every buffer of the data path to fill, then slow (it runs
// 200 ms of every second) while it takes the backlog. The values compress well and are written
// snappy-compressed, as franz-go does by default: a fetch share of 256 KiB on the wire then holds
// many records, so buffers counted in records rather than bytes fill with far more bytes than
// the fetch sizes say. kmirror's resident memory, sampled every second, must stay within the
// bound its configuration implies (kmirror_memory_bound_bytes) plus rssMargin throughout, with
// GOMEMLIMIT a little below the bound; and every record must arrive, first copies in order.
func TestMemoryStaysWithinBoundWithFrozenTarget(t *testing.T) {
	const (
		topic      = "membound"
		partitions = 12
		valueBytes = 32 << 10
		records    = 12_000
	)
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, topic, partitions, 1, nil)
	produceBacklog(t, europe.bootstrap, topic, records, valueBytes)

	listen := telemetryAddr()
	path := writeConfig(t, strings.Replace(baseConfig(europe, us, topic, ""),
		`listen: ""`, fmt.Sprintf("listen: %q\n  pprof: true", listen), 1))
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	bound := cfg.MemoryBound(partitions)
	t.Logf("bound for %d partitions: ring %d MiB + fetch %d MiB + in flight %d MiB + constant %d MiB = %d MiB",
		partitions, bound.Ring>>20, bound.Fetch>>20, bound.InFlight>>20, bound.Constant>>20, bound.Total()>>20)
	// GOMEMLIMIT below the bound (its record parts and half the constant) keeps the heap near
	// its live size, so resident memory shows what kmirror holds rather than what the collector
	// has not freed yet; the live heap must fit. It also puts the collector under the pressure
	// a limit at the bound brings once the heap nears it: sarama's default channels let the
	// live heap run away there (333 MiB of 375).
	t.Setenv("GOMEMLIMIT", strconv.FormatInt(bound.Ring+bound.Fetch+bound.InFlight+memoryHalfConstant, 10))
	k := startKmirror(t, path)
	s := startSampling(t, k.cmd.Process.Pid, "http://"+listen+"/metrics")

	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, topic) >= 500 })
	metrics := scrape(t, "http://"+listen+"/metrics")
	// The source's heartbeat topic is read too: the gauge counts every partition owned.
	owned := int(metricValue(t, metrics, "kmirror_assigned_partitions"))
	if got, want := int64(metricValue(t, metrics, "kmirror_memory_bound_bytes")), cfg.MemoryBound(owned).Total(); got != want {
		t.Errorf("kmirror_memory_bound_bytes %d, want %d (config.MemoryBound(%d))", got, want, owned)
	}
	bound = cfg.MemoryBound(owned)
	t.Logf("bound for the %d partitions owned: %d MiB", owned, bound.Total()>>20)
	before := us.count(t, topic)
	thaw := us.freeze(t, 1)
	t.Logf("froze the target with %d of %d records on it", before, records)
	time.Sleep(60 * time.Second)
	frozen := s.peak()
	if out := os.Getenv("KMIRROR_E2E_HEAP_PROFILE"); out != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if prof, err := get(ctx, "http://"+listen+"/debug/pprof/heap"); err == nil {
			_ = os.WriteFile(out, []byte(prof), 0o644)
		}
		cancel()
	}
	thaw()
	thawed := time.Now()
	// Then a slow target: it runs 200 ms of every second until the backlog is through, or for a
	// minute at most (well within producer.delivery_timeout of the oldest record).
	pid := us.nodePid(t, 1)
	for time.Since(thawed) < time.Minute && us.count(t, topic) < records {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP target node 1 (pid %d): %v", pid, err)
		}
		time.Sleep(800 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT target node 1 (pid %d): %v", pid, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("slow target for %s: %d of %d records on it", time.Since(thawed).Round(time.Second), us.count(t, topic), records)
	waitFor(t, "the backlog mirrored", 5*time.Minute, func() bool {
		if gone, how := k.exited(); gone {
			t.Fatalf("%s while catching up\n%s", how, k.errors())
		}
		return us.count(t, topic) >= records
	})
	caughtUp := time.Since(thawed)
	s.stop()
	k.stop()
	peak := s.peak()
	t.Logf("rss over time (s: MiB rss / heap in use / heap sys): %s", s.series())
	rep := compareReport(t, europe, us, map[string]string{topic: topic})
	logFigures(t, rep, fmt.Sprintf("bound %d MiB, peak rss %d MiB while frozen, %d MiB overall (heap in use %d MiB), caught up %s after the thaw",
		bound.Total()>>20, frozen.rss>>20, peak.rss>>20, peak.heapInuse>>20, caughtUp.Round(time.Second)))
	if !rep.Complete() {
		t.Errorf("records lost, changed or out of order:\n%s", rep)
	}
	if peak.rss > bound.Total()+rssMargin {
		t.Errorf("peak resident memory %d MiB (at %s) exceeds the bound %d MiB + %d MiB",
			peak.rss>>20, peak.at.Format("15:04:05"), bound.Total()>>20, rssMargin>>20)
	}
}

// produceBacklog writes n records of valueBytes-byte values (each starting with its number)
// round-robin into topic's partitions, and waits for all of them.
func produceBacklog(t *testing.T, brokers []string, topic string, n, valueBytes int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fill := strings.Repeat("0123456789abcdef", valueBytes/16)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		v := []byte(fmt.Sprintf("record-%09d-", i) + fill)[:valueBytes]
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmpOr(firstErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush the backlog: %v", err)
	}
	if firstErr != nil {
		t.Fatalf("produce the backlog: %v", firstErr)
	}
	t.Logf("produced a backlog of %d records of %d KiB (%d MiB) into %s", n, valueBytes>>10, n*valueBytes>>20, topic)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// memSample is one reading of kmirror's memory.
type memSample struct {
	at                 time.Time
	rss                int64 // VmRSS
	heapInuse, heapSys int64 // go_memstats_heap_inuse_bytes, go_memstats_heap_sys_bytes
}

// sampler reads a process's resident memory every second, and its Go heap from /metrics.
type sampler struct {
	mu      sync.Mutex
	samples []memSample
	done    chan struct{}
	wg      sync.WaitGroup
}

func startSampling(t *testing.T, pid int, metricsURL string) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			m := memSample{at: time.Now(), rss: vmRSS(pid)}
			if m.rss < 0 {
				return // the process is gone
			}
			m.heapInuse, m.heapSys = heapOf(metricsURL)
			s.mu.Lock()
			s.samples = append(s.samples, m)
			s.mu.Unlock()
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *sampler) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.wg.Wait()
}

// peak is the sample of the highest resident memory so far.
func (s *sampler) peak() memSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p memSample
	for _, m := range s.samples {
		if m.rss > p.rss {
			p = m
		}
		p.heapInuse = max(p.heapInuse, m.heapInuse)
	}
	return p
}

// series renders every fifth sample as "seconds: rss/heap in use/heap sys" in MiB.
func (s *sampler) series() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, m := range s.samples {
		if i%5 != 0 {
			continue
		}
		fmt.Fprintf(&b, "%d: %d/%d/%d  ", int(m.at.Sub(s.samples[0].at).Seconds()), m.rss>>20, m.heapInuse>>20, m.heapSys>>20)
	}
	return b.String()
}

// vmRSS reads VmRSS of pid in bytes; -1 when the process is gone.
func vmRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// heapOf reads go_memstats_heap_inuse_bytes and go_memstats_heap_sys_bytes from a /metrics
// endpoint; zeros when it does not answer.
func heapOf(url string) (inuse, sys int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	body, err := get(ctx, url)
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			inuse = int64(f)
		}
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_sys_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			sys = int64(f)
		}
	}
	return inuse, sys
}

// get returns the body of a GET of url.
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestManyPartitionsHoldAtMostMaxHeldBytes freezes the target of a mirror of 2,000 partitions,
// idle, then writes a backlog into every partition (16 records of 16 KiB each, 500 MiB,
// snappy-compressed on the source), default settings. Every worker's inbox fills, and each
// partition keeps what it fetched until its inbox has room. Without consumer.max_held_bytes the
// member goes on fetching every partition until each holds a fetch of its own; how much that is
// depends on how far each had been fetched when its inbox filled (166-414 MiB in the runs without
// the bound; pkg/fetch's tests show the bound itself). With it, what the partitions keep
// (kmirror_fetch_held_bytes, sampled every 2 s) stays within the bound and one fetch response
// (fetch_max_bytes: what a response in flight when the bound was reached may add;
// config.Memory.Fetch counts one per lane, more than the runs took: 128-145 MiB held for 178 MiB);
// resident memory stays within kmirror_memory_bound_bytes plus rssMargin; and after the thaw
// every record arrives, first copies in order. The target partitions are just created and have
// never held a record, so the frozen target's first writes to them are what
// produce.TestAPartitionsFirstBatchGoesAlone is about: before a partition's first batch went
// alone, one run in four wrote a partition's second batch first (Kafka 4.3.1 takes a producer's
// first batch on a partition whatever its sequence).
func TestManyPartitionsHoldAtMostMaxHeldBytes(t *testing.T) {
	const (
		topic      = "heldmany"
		partitions = 2000
		valueBytes = 16 << 10
		records    = 16 * partitions
	)
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, topic, partitions, 1, nil)

	listen := telemetryAddr()
	path := writeConfig(t, strings.Replace(baseConfig(europe, us, topic, ""),
		`listen: ""`, fmt.Sprintf("listen: %q", listen), 1))
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	bound := cfg.MemoryBound(partitions + 1) // and the heartbeat topic's partition
	t.Setenv("GOMEMLIMIT", strconv.FormatInt(bound.Ring+bound.Fetch+bound.InFlight+memoryHalfConstant, 10))
	k := startKmirror(t, path)
	s := startSampling(t, k.cmd.Process.Pid, "http://"+listen+"/metrics")
	url := "http://" + listen + "/metrics"
	waitFor(t, "every partition claimed", 3*time.Minute, func() bool {
		b, err := get(context.Background(), url)
		return err == nil && strings.Contains(b, "\nkmirror_assigned_partitions ") && metricValue(t, b, "kmirror_assigned_partitions") >= partitions
	})
	thaw := us.freeze(t, 1)
	produceBacklog(t, europe.bootstrap, topic, records, valueBytes)
	var held float64
	for range 10 {
		time.Sleep(2 * time.Second)
		held = max(held, metricValue(t, scrape(t, url), "kmirror_fetch_held_bytes"))
	}
	frozen := s.peak()
	owned := int(metricValue(t, scrape(t, url), "kmirror_assigned_partitions"))
	bound = cfg.MemoryBound(owned)
	keep := cfg.Consumer.MaxHeldBytes + int64(cfg.Consumer.FetchMaxBytes)
	thaw()
	waitFor(t, "the backlog mirrored", 5*time.Minute, func() bool {
		if gone, how := k.exited(); gone {
			t.Fatalf("%s while catching up\n%s", how, k.errors())
		}
		return us.count(t, topic) >= records
	})
	s.stop()
	k.stop()
	peak := s.peak()
	rep := compareReport(t, europe, us, map[string]string{topic: topic})
	logFigures(t, rep, fmt.Sprintf("%d partitions owned: most held %d MiB (max_held_bytes %d MiB, with a response in flight %d MiB); bound %d MiB, peak rss %d MiB while frozen, %d MiB overall",
		owned, int64(held)>>20, cfg.Consumer.MaxHeldBytes>>20, keep>>20, bound.Total()>>20, frozen.rss>>20, peak.rss>>20))
	if held <= 0 {
		t.Errorf("kmirror_fetch_held_bytes stayed 0 with the target frozen: the partitions never waited for room, the test proves nothing")
	}
	if int64(held) > keep {
		t.Errorf("the partitions held %d MiB of fetched records, more than max_held_bytes and a response in flight (%d MiB)", int64(held)>>20, keep>>20)
	}
	if !rep.Complete() {
		t.Errorf("records lost, changed or out of order:\n%s", rep)
	}
	if peak.rss > bound.Total()+rssMargin {
		t.Errorf("peak resident memory %d MiB (at %s) exceeds the bound %d MiB + %d MiB",
			peak.rss>>20, peak.at.Format("15:04:05"), bound.Total()>>20, rssMargin>>20)
	}
}
