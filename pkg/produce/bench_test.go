package produce

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// BenchmarkPipeline produces b.N records of 100 bytes over 4 partitions of a kfake target and
// waits for every acknowledgement: allocations per record of the pipeline (kfake's own work
// included, so the time is an upper bound).
func BenchmarkPipeline(b *testing.B) {
	c := fakeTarget(&testing.T{}, 1, 4)
	defer c.Close()
	cfg := testConfig(c)
	cfg.Linger = time.Millisecond
	done := make(chan struct{}, 1024)
	n := 0
	p, err := New(cfg, func(msgs []*sarama.ProducerMessage, err error) {
		if err != nil {
			b.Error(err)
		}
		n += len(msgs)
		if n == b.N {
			done <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := sarama.ByteEncoder(make([]byte, 100))
	msgs := make([]sarama.ProducerMessage, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range msgs {
		msgs[i] = sarama.ProducerMessage{Topic: "t", Partition: int32(i % 4), Value: value}
		p.Produce(&msgs[i])
	}
	<-done
}
