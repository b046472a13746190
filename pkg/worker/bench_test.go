package worker

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// BenchmarkWorkerOnPipeline moves b.N records of 1 KiB (a key, two headers) over 12 partitions
// through a worker and its produce pipeline into a kfake target, handed over a partition's run at
// a time. cpu-ns/op is the process's CPU time per record (kfake's included; kfake's share is most
// of it: see benchmarks/results/produce-pipeline-2026-12-06.md).
func BenchmarkWorkerOnPipeline(b *testing.B) {
	t := &testing.T{}
	target, base, _ := txnTarget(t, 12)
	defer target.Close()
	open := OpenPipeline(target.Addrs(), config.Default().Producer, nil, func(int) *sarama.Config { return base() })
	inbox := ring.NewQueue[*record.Batch](1<<16, 1<<30)
	tracks := make([]*offsets.Partition, 12)
	for p := range tracks {
		tracks[p] = offsets.NewPartition("src", int32(p), 0, 1<<17)
	}
	value := make([]byte, 1024)
	headers := []*sarama.RecordHeader{{Key: []byte("h1"), Value: []byte("v1")}, {Key: []byte("h2"), Value: []byte("v2")}}
	records := make([]*record.Record, b.N)
	for i := range records {
		track := tracks[i%12]
		m := &sarama.ConsumerMessage{Topic: "src", Partition: track.Partition(), Offset: int64(i / 12),
			Key: fmt.Appendf(nil, "k%d", i), Value: value, Headers: headers, Timestamp: time.Now()}
		r := record.From(m, "dst", track, 0)
		seq, err := track.Register(m.Offset)
		if err != nil {
			b.Fatal(err)
		}
		r.Seq = seq
		records[i] = r
	}
	w, err := New(Config{Inbox: inbox, NewProducer: open, Policy: config.RefusedFail})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	go func() { done <- w.Run(ctx) }()
	// The source hands a worker one fetched batch of a partition at a time: here, runs of
	// up to 64 records of one partition, the partitions taking turns.
	byPartition := make([][]*record.Record, len(tracks))
	for i, r := range records {
		byPartition[i%12] = append(byPartition[i%12], r)
	}
	for more := true; more; {
		more = false
		for p, rs := range byPartition {
			if len(rs) == 0 {
				continue
			}
			more = true
			bt := &record.Batch{Records: rs[:min(64, len(rs))]}
			for _, r := range bt.Records {
				bt.Size += r.Size
			}
			for !inbox.TryPush(bt, bt.Size) {
				time.Sleep(50 * time.Microsecond)
			}
			byPartition[p] = rs[len(bt.Records):]
		}
	}
	for p, track := range tracks {
		want := int64(b.N / 12)
		if p < b.N%12 {
			want++
		}
		for track.Committed() < want {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	cancel()
	<-done
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
