// Package baretest checks a bare mirror (bare.Run) on in-process clusters: each record reaches
// the same partition of the target topic as it is (key, value, headers, timestamp), in order,
// and a target topic with fewer partitions is refused.
package baretest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/benchmarks/bare"
)

// CopiesEachRecordToTheSamePartitionOfANewTargetTopic runs run over 600 records in 3 partitions
// and compares the target with what was sent.
func CopiesEachRecordToTheSamePartitionOfANewTargetTopic(t *testing.T, run bare.Run) {
	const topic, partitions, perPartition = "orders", 3, 200
	source, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	target, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(source.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var sent []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < perPartition; i++ {
			sent = append(sent, &kgo.Record{Topic: topic, Partition: p,
				Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d-%d", p, i),
				Headers:   []kgo.RecordHeader{{Key: "seq", Value: fmt.Appendf(nil, "%d", i)}},
				Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))})
		}
	}
	if err := prod.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	mctx, stop := context.WithCancel(ctx)
	go func() {
		done <- run(mctx, bare.Config{Source: source.ListenAddrs(), Target: target.ListenAddrs(), Topic: topic, Group: "g"})
	}()
	watch, err := kgo.NewClient(kgo.SeedBrokers(target.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	for n := int64(0); n < int64(len(sent)); {
		select {
		case err := <-done:
			t.Fatalf("the mirror stopped before copying everything: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		ends, err := kadm.NewClient(watch).ListEndOffsets(ctx, topic)
		if err != nil {
			continue
		}
		n = 0
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run after its context ended = %v, want nil", err)
	}

	copies, err := kgo.NewClient(kgo.SeedBrokers(target.ListenAddrs()...), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer copies.Close()
	var got []*kgo.Record
	for len(got) < len(sent) {
		fs := copies.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d copies: %v", len(got), len(sent), err)
		}
		got = append(got, fs.Records()...)
	}
	next := map[int32]int{} // per partition: the index of the next copy expected
	for _, c := range got {
		want := sent[int(c.Partition)*perPartition+next[c.Partition]]
		next[c.Partition]++
		if !bytes.Equal(c.Key, want.Key) || !bytes.Equal(c.Value, want.Value) || !c.Timestamp.Equal(want.Timestamp) ||
			len(c.Headers) != 1 || !bytes.Equal(c.Headers[0].Value, want.Headers[0].Value) {
			t.Fatalf("copy at %d/%d = key %q value %q ts %v headers %v; want key %q value %q ts %v headers %v",
				c.Partition, c.Offset, c.Key, c.Value, c.Timestamp, c.Headers, want.Key, want.Value, want.Timestamp, want.Headers)
		}
	}
	topics, err := kadm.NewClient(watch).ListTopics(ctx, topic)
	if err != nil || len(topics[topic].Partitions) != partitions {
		t.Fatalf("target topic: %+v, %v; want %d partitions", topics[topic], err, partitions)
	}
}

// RefusesATargetTopicWithFewerPartitions wants run to fail on a target topic with fewer
// partitions than its source.
func RefusesATargetTopicWithFewerPartitions(t *testing.T, run bare.Run) {
	source, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	target, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, bare.Config{Source: source.ListenAddrs(), Target: target.ListenAddrs(), Topic: "t", Group: "g"})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "has 2 partitions, fewer than the source's 4") {
		t.Fatalf("run = %v, want an error naming the partition counts", err)
	}
}
