package worker

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/produce"
)

// Batches filled by their records' exact sizes stay within the target topic's max.message.bytes
// after compression too, with every codec, for incompressible records (random values, which
// compression can only grow): the worker's pipeline configuration (PipelineConfig, batchBound's
// margin for compressed batches) keeps the compressed batch under the limit the broker applies.
func TestCompressedBatchesStayWithinTheTopicLimit(t *testing.T) {
	const limit = 64 << 10
	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "dst"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			batches := embedded.CaptureBatches(c)
			p := config.Default().Producer
			p.Compression = codec
			sc := sarama.NewConfig()
			sc.Version = sarama.V3_6_0_0
			cfg, err := PipelineConfig(sc, c.ListenAddrs(), p, batchBound(limit, true), nil)
			if err != nil {
				t.Fatal(err)
			}
			settled := make(chan error, 1000)
			pp, err := produce.New(cfg, func(msgs []*sarama.ProducerMessage, err error) {
				for range msgs {
					settled <- err
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pp.Close()
			rng := rand.New(rand.NewPCG(3, 4))
			var msgs []*sarama.ProducerMessage
			for range 1000 {
				v := make([]byte, 200+rng.IntN(1800))
				for i := range v {
					v[i] = byte(rng.Uint32())
				}
				msgs = append(msgs, &sarama.ProducerMessage{Topic: "dst", Value: sarama.ByteEncoder(v)})
			}
			pp.ProduceBatch(context.Background(), msgs)
			for range msgs {
				select {
				case err := <-settled:
					if err != nil {
						t.Fatalf("a record failed: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the records were not acknowledged after 10 s")
				}
			}
			var sizes []int
			largest := 0
			for _, b := range batches() {
				sizes = append(sizes, len(b))
				largest = max(largest, len(b))
			}
			if largest > limit {
				t.Fatalf("a %s batch of %d bytes, over max.message.bytes %d (batches %v)", codec, largest, limit, sizes)
			}
			if len(sizes) > 3*1000*1100/limit { // about 1.1 KB a record: batches must be near full
				t.Errorf("%d batches for about 1,100 KB: not filled (sizes %v)", len(sizes), sizes)
			}
			t.Logf("%s: %d batches, the largest %d bytes of %d", codec, len(sizes), largest, limit)
		})
	}
}
