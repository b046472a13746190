package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/verify"
)

// BenchmarkPipelineCatchUp preloads a 12-partition topic with 1 KiB records on an in-process
// source cluster and times kmirror until the in-process target holds them all. One op is one
// record; it reports records/s and MB/s. The clusters are in the same process, so the figure is
// an upper bound on kmirror's own cost, not a network measurement (see run.sh for real brokers).
func BenchmarkPipelineCatchUp(b *testing.B) {
	for _, workers := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchCatchUp(b, workers, nil, true)
		})
	}
}

// BenchmarkTracingOverhead runs the 8-worker catch-up with tracing off, with 1% of records
// sampled, and with every record sampled (spans go to an in-memory batch processor that drops
// them), to show what tracing costs the data path.
func BenchmarkTracingOverhead(b *testing.B) {
	for _, ratio := range []float64{-1, 0.01, 1} {
		name := "sampled=off"
		var tr *telemetry.Tracing
		if ratio >= 0 {
			name = fmt.Sprintf("sampled=%g", ratio)
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithSampler(sdktrace.TraceIDRatioBased(ratio)),
				sdktrace.WithBatcher(tracetest.NewInMemoryExporter(), sdktrace.WithMaxQueueSize(1<<16)),
			)
			defer tp.Shutdown(context.Background())
			tr = telemetry.TracingWith(tp)
		}
		b.Run(name, func(b *testing.B) { benchCatchUp(b, 8, tr, true) })
	}
}

// BenchmarkOffsetMapOverhead runs the 8-worker catch-up with the offset map off and on (the
// default): what recording every acknowledgement and writing the map costs the data path.
func BenchmarkOffsetMapOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("offset_map=%v", on), func(b *testing.B) { benchCatchUp(b, 8, nil, on) })
	}
}

func benchCatchUp(b *testing.B, workers int, tracing *telemetry.Tracing, offsetMap bool) {
	const partitions, valueBytes = 12, 1024
	n := max(b.N, 1000)
	europe, err := embedded.Start("europe", 1)
	if err != nil {
		b.Fatal(err)
	}
	defer europe.Close()
	us, err := embedded.Start("us", 1)
	if err != nil {
		b.Fatal(err)
	}
	defer us.Close()
	ctx := context.Background()
	src, _ := kgo.NewClient(kgo.SeedBrokers(europe.Addrs()...), kgo.DefaultProduceTopic("bench"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	defer src.Close()
	if _, err := kadm.NewClient(src).CreateTopic(ctx, partitions, 1, nil, "bench"); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, valueBytes)
	for i := 0; i < n; i++ {
		src.Produce(ctx, &kgo.Record{
			Key: []byte(fmt.Sprintf("key-%d", i%1000)), Value: value,
			Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}},
		}, nil)
	}
	if err := src.Flush(ctx); err != nil {
		b.Fatal(err)
	}

	cfg := config.Default()
	cfg.Source.Bootstrap = europe.Addrs()
	cfg.Target.Bootstrap = us.Addrs()
	cfg.Topics.Include = []string{"bench"}
	cfg.Ring.Workers = workers
	cfg.Telemetry.Listen = ""
	cfg.OffsetMap.Enabled = offsetMap
	m, err := mirror.New(&cfg, mirror.Options{Tracing: tracing})
	if err != nil {
		b.Fatal(err)
	}
	tgt, _ := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...))
	defer tgt.Close()
	tadm := kadm.NewClient(tgt)
	// Created here so that the reader's metadata knows it from the start.
	if _, err := tadm.CreateTopic(ctx, partitions, 1, nil, "bench"); err != nil {
		b.Fatal(err)
	}

	b.SetBytes(valueBytes)
	b.ResetTimer()
	// Joining the group costs a few fixed seconds (the coordinator's initial rebalance delay);
	// the clock runs from the first mirrored record, so the figure is the steady copy rate.
	var start time.Time
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	for {
		total, _ := verify.EndOffsets(ctx, tadm, "bench")
		if total > 0 && start.IsZero() {
			start = time.Now()
		}
		if total >= int64(n) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
	b.ReportMetric(elapsed.Seconds(), "copy-seconds")
}
