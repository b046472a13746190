package fetch

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkFetch reads the same 200,000 records (100-byte values, 4 partitions, one in-process
// broker) from the start with this package, sarama's PartitionConsumer and franz-go's consumer,
// each with its defaults, and reports records/s (from the client's creation to the last record;
// Close, which here waits for a fetch in flight, is left out of every figure but the
// allocations) and allocations per record. One op
// reads them all. The broker runs in this process: its allocations are counted too, the same for
// each client.
func BenchmarkFetch(b *testing.B) {
	const (
		partitions = 4
		perPart    = 50_000
		total      = partitions * perPart
	)
	c := startCluster(b, 1)
	kc := kclient(b, c, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	createTopic(b, kc, "bench", partitions, nil)
	value := make([]byte, 100)
	rs := make([]*kgo.Record, 0, 10_000)
	for i := range total {
		rs = append(rs, &kgo.Record{Topic: "bench", Partition: int32(i % partitions), Value: value})
		if len(rs) == cap(rs) {
			produce(b, kc, rs...)
			rs = rs[:0]
		}
	}
	impls := []struct {
		name string
		read func(b *testing.B) (n int, d time.Duration, closeFn func())
	}{
		{"fetch", func(b *testing.B) (int, time.Duration, func()) {
			start := time.Now()
			f, err := New(context.Background(), Config{Client: client(b, c)})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			done := make(chan struct{})
			sink := &countSink{n: &n, total: total, done: done}
			for p := range int32(partitions) {
				_ = f.Add("bench", p, 0, sink)
			}
			<-done
			return int(n.Load()), time.Since(start), f.Close
		}},
		{"sarama", func(b *testing.B) (int, time.Duration, func()) {
			start := time.Now()
			cons, err := sarama.NewConsumerFromClient(client(b, c))
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			var wg sync.WaitGroup
			for p := range int32(partitions) {
				pc, err := cons.ConsumePartition("bench", p, sarama.OffsetOldest)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range perPart {
						<-pc.Messages()
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			return int(n.Load()), time.Since(start), func() { _ = cons.Close() }
		}},
		{"kgo", func(b *testing.B) (int, time.Duration, func()) {
			start := time.Now()
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"bench": {0: kgo.NewOffset().AtStart(),
					1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart(), 3: kgo.NewOffset().AtStart()}}))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for n < total {
				fs := cl.PollFetches(context.Background())
				fs.EachRecord(func(*kgo.Record) { n++ })
			}
			return n, time.Since(start), cl.Close
		}},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			records, elapsed := 0, time.Duration(0)
			for range b.N {
				n, d, closeFn := impl.read(b)
				records += n
				elapsed += d
				b.StopTimer() // Close is left out: this package's waits for a fetch in flight
				closeFn()
				b.StartTimer()
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(records), "allocs/record")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(records), "B/record")
		})
	}
}

// countSink counts records of every partition and closes done when total were seen.
type countSink struct {
	n     *atomic.Int64
	total int64
	done  chan struct{}
}

func (s *countSink) Deliver(b *Batch) bool {
	if s.n.Add(int64(len(b.Records))) == s.total {
		close(s.done)
	}
	return false
}

func (s *countSink) Stopped(error) {}
