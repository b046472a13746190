//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The limit tests hold kmirror, with default settings, to records and topics at the edges of
// what Kafka accepts: topic-level max.message.bytes below and above the broker default,
// compressed batches whose records are larger than the limit uncompressed, a record the target
// cannot take, and partitions added while mirroring.

// producer is a franz-go client writing to explicit partitions.
func producer(t *testing.T, c *cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.bootstrap...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produceSync(t *testing.T, cl *kgo.Client, rs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitMirrored waits until the target holds want records of each topic; when kmirror exits
// first it returns how, and what the target held.
func waitMirrored(t *testing.T, k *kmirror, dst *cluster, want map[string]int64, d time.Duration) (exited string) {
	t.Helper()
	waitFor(t, "every record on the target", d, func() bool {
		var parts []string
		done := true
		for topic, n := range want {
			c := dst.count(t, topic)
			parts = append(parts, fmt.Sprintf("%s %d of %d", topic, c, n))
			done = done && c >= n
		}
		if gone, how := k.exited(); gone && !done {
			exited = fmt.Sprintf("%s before mirroring everything (%s)", how, strings.Join(parts, ", "))
			return true
		}
		return done
	})
	return exited
}

// topicConfig reads one config of a topic.
func (c *cluster) topicConfig(t *testing.T, topic, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfgs, err := c.admin(t).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe %s on %s: %v", topic, c.name, err)
	}
	for _, rc := range cfgs {
		for _, cf := range rc.Configs {
			if cf.Key == key && cf.Value != nil {
				return *cf.Value
			}
		}
	}
	return ""
}

func (c *cluster) partitions(t *testing.T, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := c.admin(t).ListTopics(ctx, topic)
	if err != nil {
		return 0
	}
	return len(details[topic].Partitions)
}

// mirrorAndCompare starts kmirror with extra settings, waits for want records per topic, stops
// kmirror and fails unless every topic arrived complete and in order.
func mirrorAndCompare(t *testing.T, europe, us *cluster, include, extra string, want map[string]int64) {
	t.Helper()
	k := startKmirror(t, writeConfig(t, baseConfig(europe, us, include, extra)))
	start := time.Now()
	exited := waitMirrored(t, k, us, want, 3*time.Minute)
	took := time.Since(start)
	if exited == "" {
		k.stop()
	}
	topics := map[string]string{}
	for topic := range want {
		topics[topic] = topic
	}
	rep := compareReport(t, europe, us, topics)
	how := fmt.Sprintf("mirrored in %s", took.Round(100*time.Millisecond))
	if exited != "" {
		how = fmt.Sprintf("kmirror exited after %s", took.Round(100*time.Millisecond))
	}
	logFigures(t, rep, how)
	switch {
	case exited != "":
		t.Fatalf("%s\nkmirror errors:\n%s\nverify: %s", exited, k.errors(), rep)
	case !rep.Complete():
		t.Fatalf("records lost, changed or out of order:\n%s", rep)
	}
}

// TestSmallTopicLimitMirrorsEveryRecord mirrors 20,000 records of 1 KiB from a topic whose
// max.message.bytes is 65536, a limit kmirror copies to the target topic it creates: its
// batches must fit the topic's limit, not the broker default.
func TestSmallTopicLimitMirrorsEveryRecord(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "lim.small", 3, 1, map[string]*string{"max.message.bytes": ptr("65536")})
	cl := producer(t, europe, kgo.ProducerBatchMaxBytes(60_000), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var rs []*kgo.Record
	for i := 0; i < 20_000; i++ {
		v := fmt.Appendf(nil, "%09d-", i)
		v = append(v, strings.Repeat("v", 1024-len(v))...)
		rs = append(rs, &kgo.Record{Topic: "lim.small", Partition: int32(i % 3), Key: fmt.Appendf(nil, "k%d", i), Value: v})
	}
	produceSync(t, cl, rs...)
	mirrorAndCompare(t, europe, us, `lim\.small`, "", map[string]int64{"lim.small": 20_000})
	if got := us.topicConfig(t, "lim.small", "max.message.bytes"); got != "65536" {
		t.Errorf("target lim.small max.message.bytes = %q, want the source's 65536", got)
	}
}

// TestFiveMiBRecordIsMirrored mirrors one 5 MiB record, between two small ones, from a topic
// whose max.message.bytes is 6 MiB: kmirror creates the target topic with that limit and must
// produce the record whole.
func TestFiveMiBRecordIsMirrored(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "lim.big", 1, 1, map[string]*string{"max.message.bytes": ptr("6291456")})
	cl := producer(t, europe, kgo.ProducerBatchMaxBytes(6<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produceSync(t, cl,
		&kgo.Record{Topic: "lim.big", Key: []byte("before"), Value: []byte("small")},
		&kgo.Record{Topic: "lim.big", Key: []byte("big"), Value: randomBytes(t, 5<<20)},
		&kgo.Record{Topic: "lim.big", Key: []byte("after"), Value: []byte("small")})
	mirrorAndCompare(t, europe, us, `lim\.big`, "", map[string]int64{"lim.big": 3})
	if got := us.topicConfig(t, "lim.big", "max.message.bytes"); got != "6291456" {
		t.Errorf("target lim.big max.message.bytes = %q, want the source's 6291456", got)
	}
}

// TestCompressedLargeValueIsMirrored mirrors a 1.5 MiB value of repeated text, written zstd
// compressed to a topic with the default 1 MiB limit, with producer.compression: zstd set in
// kmirror: compressed, the batch fits the target's limit as it fit the source's.
func TestCompressedLargeValueIsMirrored(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "lim.zstd", 1, 1, nil)
	cl := producer(t, europe, kgo.ProducerBatchMaxBytes(2<<20), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	text := strings.Repeat("the quick brown fox jumps over the lazy dog; ", (3<<19)/45+1)[:3<<19]
	produceSync(t, cl,
		&kgo.Record{Topic: "lim.zstd", Key: []byte("before"), Value: []byte("small")},
		&kgo.Record{Topic: "lim.zstd", Key: []byte("text"), Value: []byte(text)},
		&kgo.Record{Topic: "lim.zstd", Key: []byte("after"), Value: []byte("small")})
	mirrorAndCompare(t, europe, us, `lim\.zstd`, "producer:\n  compression: zstd\n", map[string]int64{"lim.zstd": 3})
}

// TestOversizeRecordStopsItsPartitionExactly writes a 1.5 MiB record of random bytes (it does
// not compress) to partition 0 of a source topic allowing 2 MiB, at offset 50, followed by 100
// records, into a target topic created beforehand with the default 1 MiB limit. With the default
// oversize policy (fail) kmirror must exit non-zero naming the topic, partition, offset, size and
// limit, and nothing after the record may reach the target in that partition, while the other
// partitions are mirrored whole.
func TestOversizeRecordStopsItsPartitionExactly(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "lim.over", 3, 1, map[string]*string{"max.message.bytes": ptr("2097152")})
	us.createTopic(t, "lim.over", 3, 1, nil)
	cl := producer(t, europe, kgo.ProducerBatchMaxBytes(2<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	small := func(p int32, from, n int) []*kgo.Record {
		var rs []*kgo.Record
		for i := from; i < from+n; i++ {
			rs = append(rs, &kgo.Record{Topic: "lim.over", Partition: p, Key: fmt.Appendf(nil, "p%d-%d", p, i), Value: fmt.Appendf(nil, "value-%d", i)})
		}
		return rs
	}
	for p := int32(0); p < 3; p++ {
		produceSync(t, cl, small(p, 0, 50)...)
	}
	// The target topic keeps its own, smaller max.message.bytes: with topics.sync_existing_configs
	// (the default) kmirror would raise it to the source's 2 MiB and the record would fit.
	cfg := keepTargetConfigs(baseConfig(europe, us, `lim\.over`, ""))
	k := startKmirror(t, writeConfig(t, cfg))
	if exited := waitMirrored(t, k, us, map[string]int64{"lim.over": 150}, 2*time.Minute); exited != "" {
		t.Fatalf("%s, before the oversize record was written\nkmirror errors:\n%s", exited, k.errors())
	}

	const bigOffset, after = 50, 100
	big := randomBytes(t, 3<<19)
	// In one call, so that the records after it are in the log by the time kmirror fetches it
	// and can only be held back by kmirror itself.
	produceSync(t, cl, append([]*kgo.Record{{Topic: "lim.over", Partition: 0, Key: []byte("oversize"), Value: big}}, small(0, 51, after)...)...)
	select {
	case <-k.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("kmirror still runs 2 minutes after an oversize record with the default policy (fail)\n%s", lastLines(k.log(), 10))
	}
	code := k.cmd.ProcessState.ExitCode()
	if code == 0 {
		t.Errorf("kmirror exited with status 0 on an oversize record, want non-zero")
	}
	// One line must name the topic, the partition, the offset, the size (the value's bytes plus
	// the key and any record overhead) and the limit.
	hasSize := func(l string) bool {
		for _, m := range regexp.MustCompile(`\d+`).FindAllString(l, -1) {
			if n, _ := strconv.Atoi(m); n >= len(big) && n <= len(big)+200 {
				return true
			}
		}
		return false
	}
	var named string
	for _, l := range strings.Split(k.log(), "\n") {
		if strings.Contains(l, "lim.over") && (strings.Contains(l, "lim.over/0") || strings.Contains(l, `"partition":0`)) &&
			(strings.Contains(l, "offset 50") || strings.Contains(l, `"offset":50`)) && hasSize(l) && strings.Contains(l, "1048588") {
			named = l
			break
		}
	}
	if named != "" {
		t.Logf("kmirror named the record: %s", withoutStack(named))
	} else {
		t.Errorf("no log line names topic lim.over, partition 0, offset 50, the record's size (~%d) and the limit 1048588:\n%s",
			len(big), lastLines(k.log(), 8))
	}

	rep := compareReport(t, europe, us, map[string]string{"lim.over": "lim.over"})
	p0, _ := rep.Partition("lim.over", 0)
	logFigures(t, rep, fmt.Sprintf("exit status %d, partition 0 holds %d of %d records on the target", code, p0.Target, p0.Source))
	want := fmt.Sprintf("offsets %d-%d (%d records)", bigOffset, bigOffset+after, after+1)
	if len(p0.LostRanges) != 1 || p0.LostRanges[0].String() != want || p0.Foreign != 0 || p0.OutOfOrder || p0.BadReruns != 0 {
		t.Errorf("partition 0: want exactly %s missing on the target (the oversize record and all after it), got: %v",
			want, p0.Problems())
	}
	for p := int32(1); p < 3; p++ {
		if pp, _ := rep.Partition("lim.over", p); !pp.Complete() {
			t.Errorf("partition %d: %v, want it mirrored whole", p, pp.Problems())
		}
	}
}

// TestSourcePartitionGrowthIsMirrored adds two partitions to a two-partition source topic while
// kmirror copies it under load: kmirror must grow the target and mirror all four partitions in
// order, without exiting.
func TestSourcePartitionGrowthIsMirrored(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "lim.grow", 2, 1, nil, 60_000, 5_000, 5_000, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := europe.admin(t).CreatePartitions(ctx, 2, "lim.grow"); err != nil {
		t.Fatalf("grow source lim.grow to 4 partitions: %v", err)
	}
	grown := time.Now()
	t.Logf("grew source lim.grow from 2 to 4 partitions with %d records on the target", us.count(t, "lim.grow"))
	rep := r.finish(grown, 3*time.Minute, "source grown 2 to 4 partitions")
	if n := us.partitions(t, "lim.grow"); n != 4 {
		t.Fatalf("target lim.grow has %d partitions, want 4", n)
	}
	for p := int32(2); p < 4; p++ {
		if pp, _ := rep.Partition("lim.grow", p); pp.Source == 0 {
			t.Errorf("source partition %d received no records: the load did not reach the new partitions", p)
		}
	}
}

// TestTargetWithFewerPartitionsIsGrown mirrors a four-partition source topic into a target topic
// created beforehand with two: kmirror must grow the target to four and mirror every partition.
func TestTargetWithFewerPartitionsIsGrown(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "lim.fewer", 4, 1, nil)
	us.createTopic(t, "lim.fewer", 2, 1, nil)
	cl := producer(t, europe)
	var rs []*kgo.Record
	for i := 0; i < 4_000; i++ {
		rs = append(rs, &kgo.Record{Topic: "lim.fewer", Partition: int32(i % 4), Key: []byte(strconv.Itoa(i)), Value: fmt.Appendf(nil, "v%d", i)})
	}
	produceSync(t, cl, rs...)
	mirrorAndCompare(t, europe, us, `lim\.fewer`, "", map[string]int64{"lim.fewer": 4_000})
	if n := us.partitions(t, "lim.fewer"); n != 4 {
		t.Fatalf("target lim.fewer has %d partitions, want 4", n)
	}
}
