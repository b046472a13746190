//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFidelity mirrors records written by kcat with every compression codec, null keys,
// tombstones and several headers, values near the target's max.message.bytes, and a
// transactional producer's committed and aborted transactions, then compares every partition
// record by record. It runs against Kafka 4.3.1 and, for protocol compatibility, 3.9.2.
func TestFidelity(t *testing.T) {
	for _, version := range []string{"4.3.1", "3.9.2"} {
		t.Run("kafka-"+version, func(t *testing.T) { testFidelity(t, version) })
	}
}

func testFidelity(t *testing.T, version string) {
	europe := startCluster(t, "europe", "--version", version)
	us := startCluster(t, "us", "--version", version)

	codecs := []string{"gzip", "snappy", "lz4", "zstd"}
	want := map[string]int64{}
	for _, codec := range codecs {
		topic := "fid." + codec
		europe.createTopic(t, topic, 3, 1, map[string]*string{"retention.ms": ptr("86400000"), "cleanup.policy": ptr("delete")})
		for p := 0; p < 3; p++ {
			var lines []string
			for i := 0; i < 200; i++ {
				switch {
				case i%10 == 0:
					lines = append(lines, fmt.Sprintf("value-without-key-%d-%d", p, i)) // no delimiter: null key
				case i%7 == 0:
					lines = append(lines, fmt.Sprintf("tomb-%d-%d\t", p, i)) // empty value + -Z: tombstone
				default:
					lines = append(lines, fmt.Sprintf("key-%d-%d\t%s", p, i, strings.Repeat(codec, 1+i%50)))
				}
			}
			kcatProduce(t, europe.bootstrap, topic, p, lines, "-z", codec, "-K", "\t", "-Z",
				"-H", "origin=europe", "-H", "codec="+codec, "-H", "empty=", "-H", "trace=abc")
		}
		want[topic] = 600
	}

	// Values near the broker's default max.message.bytes (1048588).
	europe.createTopic(t, "fid.large", 2, 1, nil)
	big, err := kgo.NewClient(kgo.SeedBrokers(europe.bootstrap...), kgo.ProducerBatchMaxBytes(2<<20),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < 6; i++ {
		v := []byte(strings.Repeat(string(rune('a'+i)), 1_040_000))
		if err := big.ProduceSync(ctx, &kgo.Record{Topic: "fid.large", Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)), Value: v}).FirstErr(); err != nil {
			t.Fatalf("produce a large record: %v", err)
		}
	}
	want["fid.large"] = 6

	// A transactional producer: two committed transactions around an aborted one.
	europe.createTopic(t, "fid.txn", 2, 1, nil)
	txn, err := kgo.NewClient(kgo.SeedBrokers(europe.bootstrap...), kgo.TransactionalID("e2e-txn"),
		kgo.DefaultProduceTopic("fid.txn"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	for round, commit := range []bool{true, false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			txn.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("r%d-%d", round, i)), Value: []byte(fmt.Sprintf("committed=%v", commit))}, nil)
		}
		if err := txn.Flush(ctx); err != nil {
			t.Fatalf("flush transaction: %v", err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
	}
	want["fid.txn"] = 200

	k := startKmirror(t, writeConfig(t, baseConfig(europe, us, `fid\..*`, `
producer:
  compression: lz4
`)))
	start := time.Now()
	waitFor(t, "every record on the target", 3*time.Minute, func() bool {
		for topic, n := range want {
			if got := us.count(t, topic); got < n {
				if time.Since(start) > 20*time.Second && time.Since(start)%(10*time.Second) < 250*time.Millisecond {
					t.Logf("waiting: target %s holds %d of %d", topic, got, n)
				}
				return false
			}
		}
		return true
	})
	t.Logf("kafka %s: %d topics mirrored in %s", version, len(want), time.Since(start).Round(time.Millisecond))
	k.stop()

	topics := map[string]string{}
	for topic := range want {
		topics[topic] = topic
	}
	rep := compare(t, europe, us, topics)
	if !rep.Exact() {
		t.Fatalf("target differs from source:\n%s", rep)
	}
	if got := us.count(t, "fid.txn"); got != 200 {
		t.Fatalf("target fid.txn holds %d records, want the 200 committed ones (aborted records must not be mirrored)", got)
	}

	// The target topics got the source's partition count and configs.
	details, err := us.admin(t).ListTopics(ctx, "fid.gzip")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["fid.gzip"].Partitions); n != 3 {
		t.Fatalf("target fid.gzip has %d partitions, want 3", n)
	}
	cfgs, err := us.admin(t).DescribeTopicConfigs(ctx, "fid.gzip")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs[0].Configs {
		if c.Key == "retention.ms" && (c.Value == nil || *c.Value != "86400000") {
			t.Fatalf("target retention.ms = %v, want the source's 86400000", c.Value)
		}
	}
}
