package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// TestWorkerOnAProducePipelineWritesEveryRecordOnceInOrder: a worker on kmirror's produce
// pipeline (OpenPipeline, records handed over a partition's run at a time, fates a batch at a
// time) against a fake target: every record of four interleaved partitions is committed, and an
// independent client reads each partition back once, in source order.
func TestWorkerOnAProducePipelineWritesEveryRecordOnceInOrder(t *testing.T) {
	const partitions, perPartition = 4, 500
	target, base, _ := txnTarget(t, partitions)
	inbox := ring.NewQueue[*record.Batch](4096, 1<<30)
	var tracks []*offsets.Partition
	for p := range int32(partitions) {
		tracks = append(tracks, offsets.NewPartition("src", p, 0, 1024))
	}
	fed := make([]int, partitions)
	for i := range perPartition / 4 { // interleaved: runs of one record and of a few
		for p, track := range tracks {
			n := 1 + i%(p+1)
			feedFrom(t, inbox, track, int64(fed[p]), n)
			fed[p] += n
		}
	}
	for p, track := range tracks { // the rest, a run each
		feedFrom(t, inbox, track, int64(fed[p]), perPartition-fed[p])
	}
	open := OpenPipeline(target.Addrs(), config.Default().Producer, nil, func(int) *sarama.Config { return base() })
	runWorker(t, Config{Inbox: inbox, NewProducer: open, Policy: config.RefusedFail}, func() bool {
		for _, track := range tracks {
			if track.Committed() != perPartition {
				return false
			}
		}
		return true
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(target.Addrs()...), kgo.ConsumeTopics("dst"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := make([]int, partitions)
	for got := 0; got < partitions*perPartition; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read back: %v (%d of %d read, next %v)", err, got, partitions*perPartition, next)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			want := fmt.Sprintf("src/%d@%d", r.Partition, next[r.Partition])
			if string(r.Value) != want {
				t.Fatalf("dst/%d offset %d holds %q, want %q: lost, duplicated or out of order", r.Partition, r.Offset, r.Value, want)
			}
			next[r.Partition]++
		})
	}
	for p, track := range tracks {
		if track.Committed() != perPartition || next[p] != perPartition {
			t.Errorf("partition %d: committed %d, read back %d; want %d", p, track.Committed(), next[p], perPartition)
		}
	}
}

// feedFrom registers n records of track from offset from on, valued "src/<partition>@<offset>",
// and pushes them into inbox as one batch, as the source hands over a fetched batch.
func feedFrom(t *testing.T, inbox *ring.Queue[*record.Batch], track *offsets.Partition, from int64, n int) {
	t.Helper()
	var rs []*record.Record
	for off := from; off < from+int64(n); off++ {
		m := &sarama.ConsumerMessage{Topic: track.Topic(), Partition: track.Partition(), Offset: off,
			Value: fmt.Appendf(nil, "src/%d@%d", track.Partition(), off)}
		r := record.From(m, "dst", track, 0)
		seq, err := track.Register(m.Offset)
		if err != nil {
			t.Fatal(err)
		}
		r.Seq = seq
		rs = append(rs, r)
	}
	push(t, inbox, rs, n)
}
