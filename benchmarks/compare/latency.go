package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const pacedTopic = "paced"

// latency is the end-to-end latency of one contender at a paced rate: the target consumer's
// receive time minus the record's create time on the source (both mirrors copy timestamps).
type latency struct {
	name           string
	p50, p99, p999 time.Duration
	samples        int
}

// latencyRun starts the contender on a fresh target, mirrors a paced stream into pacedTopic and
// measures each record's latency, skipping the first seconds (group join, warm-up).
func (h *harness) latencyRun(ctx context.Context, contender string, rate int, d time.Duration) (latency, error) {
	if err := h.restartTarget(); err != nil {
		return latency{}, err
	}
	cmd, targetTopic, err := h.mirrorCommand(contender, pacedTopic, 99)
	if err != nil {
		return latency{}, err
	}
	logf, err := os.Create(filepath.Join(h.work, contender+"-latency.log"))
	if err != nil {
		return latency{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return latency{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	prod, err := kgo.NewClient(kgo.SeedBrokers(h.source...), kgo.DefaultProduceTopic(pacedTopic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return latency{}, err
	}
	defer prod.Close()

	// Warm up until the mirror copies, then measure a fresh stream.
	warm := time.Now().Add(3 * time.Minute)
	for {
		prod.Produce(ctx, &kgo.Record{Value: []byte("warm-up")}, nil)
		if h.topicHas(ctx, targetTopic) {
			break
		}
		if time.Now().After(warm) {
			return latency{}, fmt.Errorf("%s mirrored nothing within 3 minutes (log %s)", contender, logf.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(h.target...), kgo.ConsumeTopics(targetTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return latency{}, err
	}
	defer cons.Close()
	var mu sync.Mutex
	var samples []time.Duration
	start := time.Now()
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Value) == "warm-up" || r.Timestamp.Before(start.Add(2*time.Second)) {
					return
				}
				mu.Lock()
				samples = append(samples, now.Sub(r.Timestamp))
				mu.Unlock()
			})
		}
	}()
	value := make([]byte, h.o.valueBytes)
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for time.Since(start) < d {
		next = next.Add(interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		prod.Produce(ctx, &kgo.Record{Key: []byte("k"), Value: value, Timestamp: time.Now()}, nil)
	}
	_ = prod.Flush(ctx)
	time.Sleep(5 * time.Second) // let the tail arrive
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(samples) == 0 {
		return latency{}, fmt.Errorf("%s: no latency samples", contender)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	q := func(p float64) time.Duration { return samples[min(len(samples)-1, int(p*float64(len(samples))))] }
	return latency{name: contender, p50: q(0.5), p99: q(0.99), p999: q(0.999), samples: len(samples)}, nil
}

func (h *harness) topicHas(ctx context.Context, t string) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.target...))
	if err != nil {
		return false
	}
	defer cl.Close()
	return count(ctx, kadm.NewClient(cl), t) > 0
}
