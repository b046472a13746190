package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/owned"
)

const (
	// createdHeader carries a paced record's create time on the source, in Unix nanoseconds
	// (8 bytes, big-endian): the record's own timestamp is replaced on the target by the
	// broker's append time.
	createdHeader = "bench-created-ns"
	// warmUp is how long after the paced stream starts its records are left out of the samples:
	// the target broker was just started, and its JVM compiles its hot paths under the load.
	warmUp = 5 * time.Second
)

// latency is the end-to-end latency of one contender at a paced rate: the time each copy became
// readable on the target minus the create time of the original on the source. A copy becomes
// readable when the target broker appends it (at-least-once) or when it appends the commit marker
// of the copy's transaction (exactly-once: a read_committed consumer sees nothing before), both
// broker append times. It is split in two: the source side (create → the source broker's append:
// the paced producer and the source broker, no mirror involved) and the mirror's part (the source
// broker's append → readable on the target).
type latency struct {
	name           string
	rate           int
	p50, p99, p999 time.Duration // end to end
	max            time.Duration
	samples        int
	mirror         quantiles // source append → readable on the target
	sourceSide     quantiles // create → source append
	cpu            cpuShares // over the measured stretch
	// behind is set when no measured record reached the target within the run and its 5 s
	// tail: the mirror could not keep up with the paced rate.
	behind bool
	// of is the --paced-rates entry the rate came from (zero in the WAN section's runs).
	of pacedRate
}

type quantiles struct{ p50, p99, p999 time.Duration }

func quantilesOf(d []time.Duration) quantiles {
	if len(d) == 0 {
		return quantiles{}
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return quantiles{q(0.5), q(0.99), q(0.999)}
}

// pacedRate is one --paced-rates entry: a fixed rate, or a share of kmirror's catch-up rate.
type pacedRate struct {
	fixed   int     // records/s
	percent float64 // of kmirror's median catch-up rate, when fixed is 0
}

func parsePacedRates(s string) ([]pacedRate, error) {
	var rates []pacedRate
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || v <= 0 || v > 100 {
				return nil, fmt.Errorf("--paced-rates %q: a share is 1%% to 100%% of kmirror's catch-up rate", f)
			}
			rates = append(rates, pacedRate{percent: v})
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("--paced-rates %q: want records/s (10000) or a share of kmirror's catch-up rate (50%%)", f)
		}
		rates = append(rates, pacedRate{fixed: v})
	}
	return rates, nil
}

// resolve returns the rate in records/s given kmirror's median catch-up rate.
func (p pacedRate) resolve(catchUp float64) int {
	if p.fixed > 0 {
		return p.fixed
	}
	return int(catchUp * p.percent / 100)
}

func (p pacedRate) String() string {
	if p.fixed > 0 {
		return strconv.Itoa(p.fixed)
	}
	return strconv.FormatFloat(p.percent, 'f', -1, 64) + "% of kmirror's catch-up"
}

// pacedRun is one latency run: the rate and for how long, where the mirror finds the clusters,
// and the names of its topic, log and profiles.
type pacedRun struct {
	at   endpoints
	rate int
	d    time.Duration
	// topic is a source topic of the run's own, created empty: a mirror that keeps no position
	// on the source (MirrorMaker 2 keeps its own on the target, which each run starts afresh)
	// would otherwise first copy every record earlier runs paced, and measure that backlog.
	topic   string
	id      int    // the run's source groups
	logName string // file name under the log directory
	profile string // suffix of the names of kmirror's profiles ("-": none taken)
}

// latencyRun starts the contender on a fresh target whose copy of the run's paced topic stamps
// records with the broker's append time (message.timestamp.type=LogAppendTime; neither mirror
// changes that config of an existing topic), produces a paced stream on the source and measures
// each record's latency, leaving out the warm-up.
//
// An exactly-once contender's target is read with read_committed, control records kept: each
// copy is held until the commit marker of its producer in its partition arrives, whose append
// time is when the copy became readable.
func (h *harness) latencyRun(ctx context.Context, c contender, run pacedRun) (latency, error) {
	name, rate, d, pacedTopic := c.name, run.rate, run.d, run.topic
	if err := h.restartTarget(); err != nil {
		return latency{}, err
	}
	if c.exactlyOnce {
		if err := h.warmUpTransactions(ctx); err != nil {
			return latency{}, err
		}
	}
	cmd, targetTopic, err := h.mirrorCommand(c, run.at, pacedTopic, run.id)
	if err != nil {
		return latency{}, err
	}
	// Both topics stamp the broker's append time: the source's gives each record's source
	// append time, the target's when its copy arrived.
	appendTime := "LogAppendTime"
	if err := h.createSourceTopic(ctx, pacedTopic, map[string]*string{"message.timestamp.type": &appendTime}); err != nil {
		return latency{}, err
	}
	if err := h.createTargetTopic(ctx, targetTopic, map[string]*string{"message.timestamp.type": &appendTime}); err != nil {
		return latency{}, err
	}
	logf, err := os.Create(filepath.Join(h.logDir, run.logName))
	if err != nil {
		return latency{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := h.spawn.Start(cmd); err != nil {
		return latency{}, err
	}
	defer func() { owned.Kill(cmd); _ = cmd.Wait() }()

	// linger 0: the source producer adds as little as it can to what is measured.
	prod, err := kgo.NewClient(kgo.SeedBrokers(h.source...), kgo.DefaultProduceTopic(pacedTopic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(1_000_000))
	if err != nil {
		return latency{}, err
	}
	defer prod.Close()

	// Warm up until the mirror copies, then measure a fresh stream.
	watch, err := kgo.NewClient(kgo.SeedBrokers(h.target...))
	if err != nil {
		return latency{}, err
	}
	defer watch.Close()
	adm := kadm.NewClient(watch)
	warm := time.Now().Add(3 * time.Minute)
	for {
		prod.Produce(ctx, &kgo.Record{Value: []byte("warm-up")}, nil)
		if n, _ := targetCount(ctx, adm, c, targetTopic); n > 0 {
			break
		}
		if time.Now().After(warm) {
			return latency{}, fmt.Errorf("%s mirrored nothing within 3 minutes (log %s)", name, logf.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A second consumer notes each record's source append time by its create time, which is
	// unique.
	// Both read broker append times, so when they read does not matter: they fetch lazily (a
	// fetch waits for 1 MiB or half a second) to take as little as they can of the brokers'
	// and the machine's CPU away from what is measured.
	lazy := []kgo.Opt{kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMinBytes(1 << 20), kgo.FetchMaxWait(500 * time.Millisecond)}
	srcCons, err := kgo.NewClient(append(lazy, kgo.SeedBrokers(h.source...), kgo.ConsumeTopics(pacedTopic))...)
	if err != nil {
		return latency{}, err
	}
	defer srcCons.Close()
	targetOpts := append(lazy, kgo.SeedBrokers(h.target...), kgo.ConsumeTopics(targetTopic))
	if c.exactlyOnce {
		targetOpts = append(targetOpts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	}
	cons, err := kgo.NewClient(targetOpts...)
	if err != nil {
		return latency{}, err
	}
	defer cons.Close()
	start := time.Now()
	type copyAt struct{ created, appended time.Time }
	var (
		mu        sync.Mutex
		copies    []copyAt
		appended  = make(map[int64]time.Time) // created (ns) → source append time
		wrongType int
		// open holds an exactly-once contender's copies until their commit marker.
		open = make(map[producerIn][]time.Time) // created times
	)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	poll := func(cl *kgo.Client, each func(r *kgo.Record, created time.Time)) {
		for cctx.Err() == nil {
			cl.PollFetches(cctx).EachRecord(func(r *kgo.Record) {
				if r.Attrs.IsControl() {
					mu.Lock()
					defer mu.Unlock()
					commitAt(r, open, func(created time.Time) { copies = append(copies, copyAt{created, r.Timestamp}) })
					return
				}
				created, ok := createdAt(r)
				if !ok || created.Before(start.Add(warmUp)) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if r.Attrs.TimestampType() != 1 { // 1: LogAppendTime
					wrongType++
					return
				}
				each(r, created)
			})
		}
	}
	wg.Go(func() {
		poll(srcCons, func(r *kgo.Record, created time.Time) { appended[created.UnixNano()] = r.Timestamp })
	})
	wg.Go(func() {
		poll(cons, func(r *kgo.Record, created time.Time) {
			if c.exactlyOnce {
				k := producerIn{r.Partition, r.ProducerID}
				open[k] = append(open[k], created)
				return
			}
			copies = append(copies, copyAt{created, r.Timestamp})
		})
	})
	var stamp [8]byte
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	var cpuFrom cpuClock
	for i := 0; time.Since(start) < warmUp+d; i++ {
		if cpuFrom.at.IsZero() && time.Since(start) >= warmUp {
			cpuFrom = h.readCPU(cmd.Process.Pid)
			if c.program == "kmirror" && h.profileDir != "" && run.profile != "-" {
				go h.saveProfiles(c.name, run.profile, 5*time.Second)
				h.saveMetrics(c.name, run.profile+"-start") // with the one at the end: rates over the window
			}
		}
		next = next.Add(interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		r := h.load.record(pacedTopic, i)
		binary.BigEndian.PutUint64(stamp[:], uint64(time.Now().UnixNano()))
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: createdHeader, Value: slices.Clone(stamp[:])})
		prod.Produce(ctx, r, nil)
	}
	cpu := h.readCPU(cmd.Process.Pid).sharesSince(cpuFrom)
	if c.program == "kmirror" && h.profileDir != "" && run.profile != "-" {
		h.saveMetrics(c.name, run.profile+"-end")
	}
	if err := prod.Flush(ctx); err != nil {
		stop()
		wg.Wait()
		return latency{}, err
	}
	time.Sleep(5 * time.Second) // let the tail arrive
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if wrongType > 0 {
		return latency{}, fmt.Errorf("%s: %d records carry no append time: topic %q on the target or %q on the source is not LogAppendTime any longer",
			name, wrongType, targetTopic, pacedTopic)
	}
	if len(copies) == 0 {
		// Nothing measured arrived before the end: the mirror fell behind the paced rate.
		return latency{name: name, rate: rate, behind: true, cpu: cpu}, nil
	}
	var e2e, mirror, sourceSide []time.Duration
	for _, c := range copies {
		e2e = append(e2e, c.appended.Sub(c.created))
		if at, ok := appended[c.created.UnixNano()]; ok {
			mirror = append(mirror, c.appended.Sub(at))
			sourceSide = append(sourceSide, at.Sub(c.created))
		}
	}
	q := quantilesOf(e2e)
	return latency{name: name, rate: rate, p50: q.p50, p99: q.p99, p999: q.p999, max: e2e[len(e2e)-1],
		samples: len(e2e), mirror: quantilesOf(mirror), sourceSide: quantilesOf(sourceSide), cpu: cpu}, nil
}

// createdAt reads the create time a paced record carries.
func createdAt(r *kgo.Record) (time.Time, bool) {
	for _, h := range r.Headers {
		if h.Key == createdHeader && len(h.Value) == 8 {
			return time.Unix(0, int64(binary.BigEndian.Uint64(h.Value))), true
		}
	}
	return time.Time{}, false
}

// producerIn is one producer's records in one partition: the records of its transaction there
// become readable at its commit marker.
type producerIn struct {
	partition int32
	id        int64
}

// commitAt handles a control record of the target: a commit marker makes the open copies of its
// producer in its partition readable at the marker's append time (readable is called with each
// one's create time); an abort marker drops them.
func commitAt(r *kgo.Record, open map[producerIn][]time.Time, readable func(created time.Time)) {
	k := producerIn{r.Partition, r.ProducerID}
	if isCommitMarker(r) {
		for _, created := range open[k] {
			readable(created)
		}
	}
	delete(open, k)
}

// isCommitMarker reads a control record's key: version (int16), then type (int16: 0 abort, 1
// commit).
func isCommitMarker(r *kgo.Record) bool {
	return len(r.Key) >= 4 && binary.BigEndian.Uint16(r.Key[2:4]) == 1
}

// settleFor is the length of the unmeasured paced run before the latency runs (settle).
const settleFor = 10 * time.Second

// settle runs the first contender at the first paced rate for settleFor, unmeasured, before the
// latency runs: the first paced run after the catch-ups found the source broker up to a third
// of a core busier than the next one (inTurn), which no contender should pay for.
func (h *harness) settle(ctx context.Context, cs []contender, rates []pacedRate, catchUp float64) error {
	if len(rates) == 0 || len(cs) == 0 {
		return nil
	}
	rate := rates[0].resolve(catchUp)
	if rate <= 0 {
		return nil
	}
	fmt.Printf("settling the brokers: %s at %d records/s for %s, not measured\n", cs[0].name, rate, settleFor)
	_, err := h.latencyRun(ctx, cs[0], pacedRun{at: h.direct(), rate: rate, d: settleFor,
		topic: fmt.Sprintf("paced-settle-%s-%d", cs[0].name, rate), id: h.nextID(),
		logName: fmt.Sprintf("%s-settle-%d.log", cs[0].name, rate), profile: "-"})
	if err != nil {
		return fmt.Errorf("settle the brokers before the latency runs: %w", err)
	}
	return nil
}
