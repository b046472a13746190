// Package demo runs kmirror's embedded demonstration: two in-process Kafka clusters, a generated
// workload with keys, headers and timestamps, a live mirror with progress, and a per-partition
// verification that the target holds the same records in the same order.
//
// It must never report success unless the verification found every partition exact.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/verify"
)

// Options sizes the demo.
type Options struct {
	Records    int
	ValueBytes int
	Partitions int32
	Brokers    int
	Topic      string
	// Rate paces the producer, in records per second (0: as fast as possible), so the mirror is
	// seen working on a live stream.
	Rate int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Out receives the progress and the summary.
	Out io.Writer
	Log *zap.Logger
	// Tune, when set, may change the mirror's configuration before it starts.
	Tune func(*config.Config)
}

// Run runs the demo and returns nil only when the target was verified exact.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	fmt.Fprintf(o.Out, "starting two embedded Kafka clusters (europe, us), %d brokers each\n", o.Brokers)
	europe, err := embedded.Start("europe", o.Brokers)
	if err != nil {
		return err
	}
	defer europe.Close()
	us, err := embedded.Start("us", o.Brokers)
	if err != nil {
		return err
	}
	defer us.Close()

	if err := createTopic(ctx, europe.Addrs(), o.Topic, o.Partitions); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Source.Bootstrap = europe.Addrs()
	cfg.Target.Bootstrap = us.Addrs()
	cfg.Topics.Include = []string{o.Topic}
	cfg.Topics.RefreshInterval = 2 * time.Second
	cfg.Commit.Interval = time.Second
	cfg.Telemetry.Listen = ""
	if o.Tune != nil {
		o.Tune(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	m, err := mirror.New(&cfg, mirror.Options{Log: o.Log})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	mctx, stopMirror := context.WithCancel(ctx)
	defer stopMirror()
	mirrorErr := make(chan error, 1)
	go func() { mirrorErr <- m.Run(mctx) }()

	fmt.Fprintf(o.Out, "producing %d records (%d-byte values, keys, headers, timestamps) at %d records/s into %s (%d partitions) on europe while mirroring to us\n",
		o.Records, o.ValueBytes, o.Rate, o.Topic, o.Partitions)
	var produced sync.WaitGroup
	produceErr := make(chan error, 1)
	produced.Add(1)
	go func() {
		defer produced.Done()
		produceErr <- produce(ctx, europe.Addrs(), o)
	}()

	start := time.Now()
	if err := progress(ctx, o.Out, europe.Addrs(), us.Addrs(), o.Topic, o.Records, start, mirrorErr); err != nil {
		stopMirror()
		return err
	}
	produced.Wait()
	if err := <-produceErr; err != nil {
		return fmt.Errorf("produce the workload: %w", err)
	}
	elapsed := time.Since(start)

	fmt.Fprintln(o.Out, "stopping the mirror (drain, commit, close)")
	stopMirror()
	if err := <-mirrorErr; err != nil {
		return fmt.Errorf("mirror: %w", err)
	}

	fmt.Fprintln(o.Out, "verifying every partition: count, order and content checksum")
	rep, err := verify.Compare(ctx, europe.Addrs(), us.Addrs(), map[string]string{o.Topic: o.Topic})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "\n%-10s %10s %10s %18s %18s  %s\n", "partition", "source", "target", "source checksum", "target checksum", "result")
	for _, p := range rep.Partitions {
		res := "identical"
		if !p.Exact() {
			res = fmt.Sprintf("DIFFERENT (lost %d, duplicates %d, changed %d, out of order %v)", p.Lost, p.Duplicates, p.Foreign, p.OutOfOrder)
		}
		fmt.Fprintf(o.Out, "%-10d %10d %10d %18x %18x  %s\n", p.Partition, p.Source, p.Target, p.SourceChecksum, p.TargetChecksum, res)
	}
	s, t, lost, dups, changed := rep.Totals()
	fmt.Fprintf(o.Out, "\n%d records mirrored in %s (%.0f records/s); source %d, target %d, lost %d, duplicates %d, changed %d\n",
		t, elapsed.Round(time.Millisecond), float64(t)/elapsed.Seconds(), s, t, lost, dups, changed)
	if !rep.Exact() {
		return errors.New("verification failed: the target differs from the source")
	}
	if s != o.Records {
		return fmt.Errorf("verification failed: the source holds %d records, %d were produced", s, o.Records)
	}
	fmt.Fprintln(o.Out, "VERIFIED: every partition on us holds the same records, in the same order, as on europe")
	return nil
}

func createTopic(ctx context.Context, addrs []string, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 3, map[string]*string{"retention.ms": ptr("604800000")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create source topic %s: %w", topic, err)
	}
	return nil
}

func ptr(s string) *string { return &s }

// produce writes the workload: keyed records (every 50th with a null key, every 97th a
// tombstone), two or three headers, and create timestamps one millisecond apart.
func produce(ctx context.Context, addrs []string, o Options) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return err
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var firstErr error
	var mu sync.Mutex
	began := time.Now()
	for i := 0; i < o.Records; i++ {
		if o.Rate > 0 && i%1000 == 0 {
			due := began.Add(time.Duration(float64(i) / float64(o.Rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		value := make([]byte, o.ValueBytes)
		for j := range value {
			value[j] = byte('a' + rng.IntN(26))
		}
		r := &kgo.Record{
			Topic:     o.Topic,
			Partition: int32(i) % o.Partitions,
			Key:       []byte("customer-" + strconv.Itoa(rng.IntN(10000))),
			Value:     value,
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers: []kgo.RecordHeader{
				{Key: "source", Value: []byte("europe")},
				{Key: "seq", Value: []byte(strconv.Itoa(i))},
			},
		}
		if i%50 == 0 {
			r.Key = nil
		}
		if i%97 == 0 {
			r.Value = nil
		}
		if i%3 == 0 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "empty", Value: []byte{}})
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

// progress prints the mirror's progress every second until the target holds want records.
func progress(ctx context.Context, out io.Writer, src, tgt []string, topic string, want int, start time.Time, mirrorErr <-chan error) error {
	sc, err := kgo.NewClient(kgo.SeedBrokers(src...))
	if err != nil {
		return err
	}
	defer sc.Close()
	tc, err := kgo.NewClient(kgo.SeedBrokers(tgt...))
	if err != nil {
		return err
	}
	defer tc.Close()
	count := func(c *kgo.Client) int64 {
		n, err := verify.EndOffsets(ctx, kadm.NewClient(c), topic)
		if err != nil {
			return -1
		}
		return n
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo timed out: target holds %d of %d records: %w", last, want, ctx.Err())
		case err := <-mirrorErr:
			return fmt.Errorf("mirror stopped early: %v", err)
		case now := <-t.C:
			s, m := count(sc), count(tc)
			rate := float64(m-last) / now.Sub(lastAt).Seconds()
			last, lastAt = m, now
			eta := "-"
			if rate > 0 {
				eta = (time.Duration(float64(int64(want)-m)/rate) * time.Second).Round(time.Second).String()
			}
			fmt.Fprintf(out, "  %5.0fs  source %8d  target %8d  lag %8d  rate %8.0f rec/s  eta %s\n",
				now.Sub(start).Seconds(), s, m, s-m, rate, eta)
			if m >= int64(want) {
				return nil
			}
		}
	}
}
