//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/fetch"
)

// fetchSink keeps what pkg/fetch delivers for one partition.
type fetchSink struct {
	mu      sync.Mutex
	records []fetch.Record
	next    int64
	batches int
	err     error
}

func (s *fetchSink) Deliver(b *fetch.Batch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, b.Records...)
	s.next = b.Next
	s.batches++
	return false
}

func (s *fetchSink) Stopped(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// TestFetchLoopsSourceLeaderKilled runs pkg/fetch (default settings) on a 3-node source while
// records are written to 6 partitions, kills (-9) the broker leading most of them, brings it
// back 15 s later, and compares what was delivered with the partitions as franz-go reads them:
// every record once, in order, byte for byte.
func TestFetchLoopsSourceLeaderKilled(t *testing.T) {
	const topic = "fetchkill"
	europe := startCluster(t, "europe", "--nodes", "3")
	europe.createTopic(t, topic, 6, 3, map[string]*string{"min.insync.replicas": ptr("2")})

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	client, err := sarama.NewClient(europe.bootstrap, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f, err := fetch.New(context.Background(), fetch.Config{Client: client, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sinks := make([]*fetchSink, 6)
	for p := range sinks {
		sinks[p] = &fetchSink{}
		if err := f.Add(topic, int32(p), 0, sinks[p]); err != nil {
			t.Fatal(err)
		}
	}

	delivered := func() (n int) {
		for _, s := range sinks {
			s.mu.Lock()
			n += len(s.records)
			s.mu.Unlock()
		}
		return n
	}
	start := time.Now()
	load := startLoad(t, europe.bootstrap, topic, 100_000, 4_000)
	waitFor(t, "records to flow", time.Minute, func() bool { return load.count() >= 12_000 && delivered() >= 10_000 })
	node, led := europe.busiestLeader(t, topic)
	europe.script(t, "stop-node", "europe", fmt.Sprint(node))
	killed, atKill := time.Now(), delivered()
	t.Logf("killed source node %d (leader of %d of 6 partitions) with %d records written, %d delivered", node, led, load.count(), atKill)
	time.Sleep(15 * time.Second)
	atRestart := delivered()
	europe.script(t, "start-node", "europe", fmt.Sprint(node))
	t.Logf("restarted node %d after %s: %d records delivered meanwhile (%d written so far)",
		node, time.Since(killed).Round(time.Second), atRestart-atKill, load.count())
	written := load.wait(t)
	if atRestart-atKill < 15*4_000/2 {
		t.Errorf("only %d records delivered in the 15 s the node was down (4,000/s written)", atRestart-atKill)
	}

	// The reference: each partition as an independent client reads it, to its end.
	want := readPartitions(t, europe.bootstrap, topic, 6)
	total := 0
	for p := range want {
		total += len(want[p])
	}
	if total != written {
		t.Fatalf("franz-go reads %d records, the producer wrote %d", total, written)
	}
	waitFor(t, "pkg/fetch to reach every partition's end", 3*time.Minute, func() bool {
		for p, s := range sinks {
			s.mu.Lock()
			n := len(s.records)
			s.mu.Unlock()
			if n < len(want[p]) {
				return false
			}
		}
		return true
	})
	var got, lost, dup, reordered, changed, batches int
	for p, s := range sinks {
		s.mu.Lock()
		if s.err != nil {
			t.Errorf("partition %d stopped: %v", p, s.err)
		}
		batches += s.batches
		recs := s.records
		s.mu.Unlock()
		got += len(recs)
		seen := map[int64]bool{}
		last := int64(-1)
		for _, r := range recs {
			if seen[r.Offset] {
				dup++
			}
			seen[r.Offset] = true
			if r.Offset <= last {
				reordered++
			}
			last = r.Offset
		}
		byOffset := map[int64]*kgo.Record{}
		for _, r := range want[p] {
			byOffset[r.Offset] = r
			if !seen[r.Offset] {
				lost++
			}
		}
		for _, r := range recs {
			w := byOffset[r.Offset]
			if w == nil || !bytes.Equal(w.Key, r.Key) || !bytes.Equal(w.Value, r.Value) || len(w.Headers) != len(r.Headers) ||
				w.Timestamp.UnixMilli() != r.Timestamp.UnixMilli() {
				changed++
			}
		}
	}
	t.Logf("figures: source %d, delivered %d in %d batches, lost %d, duplicates %d, changed %d, out of order %d, %s after the load began",
		total, got, batches, lost, dup, changed, reordered, time.Since(start).Round(time.Second))
	if got != total || lost+dup+changed+reordered != 0 {
		t.Fatalf("pkg/fetch delivered %d of %d records: %d lost, %d duplicated, %d changed, %d out of order", got, total, lost, dup, changed, reordered)
	}
}

// readPartitions reads every partition of topic from its start to its current end with franz-go.
func readPartitions(t *testing.T, brokers []string, topic string, partitions int32) [][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := (&cluster{bootstrap: brokers}).admin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	remaining := 0
	end := map[int32]int64{}
	for p := range partitions {
		o, _ := ends.Lookup(topic, p)
		end[p] = o.Offset
		remaining += int(o.Offset)
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := make([][]*kgo.Record, partitions)
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go: %d records left to read", remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < end[r.Partition] {
				out[r.Partition] = append(out[r.Partition], r)
				remaining--
			}
		})
	}
	return out
}
