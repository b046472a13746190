//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// produceRecords writes records with franz-go, each to the partition it names, in one call
// (records of one partition go out in as few batches as franz-go makes).
func produceRecords(t *testing.T, c *cluster, records ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", c.name, err)
	}
}

// readRecords returns every committed record of topic, by partition, in log order.
func readRecords(t *testing.T, c *cluster, topic string) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[int32][]*kgo.Record{}
	if err := verify.ReadRecords(ctx, c.bootstrap, topic, func(r *kgo.Record) {
		out[r.Partition] = append(out[r.Partition], r)
	}, nil); err != nil {
		t.Fatalf("read %s on %s: %v", topic, c.name, err)
	}
	return out
}

// topicConfig returns one config of a topic as the cluster reports it.
func topicConfig(t *testing.T, c *cluster, topic, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := c.admin(t).DescribeTopicConfigs(ctx, topic)
	if err != nil || len(rc) == 0 || rc[0].Err != nil {
		t.Fatalf("describe %s on %s: %v", topic, c.name, err)
	}
	for _, cfg := range rc[0].Configs {
		if cfg.Key == key && cfg.Value != nil {
			return *cfg.Value
		}
	}
	return ""
}

// mirrorOnce runs kmirror over include until the target holds want records of each topic,
// then stops it cleanly.
func mirrorOnce(t *testing.T, europe, us *cluster, cfg string, want map[string]int64) {
	t.Helper()
	k := startKmirror(t, writeConfig(t, cfg))
	waitFor(t, "every record on the target", 2*time.Minute, func() bool {
		for topic, n := range want {
			if us.count(t, topic) < n {
				return false
			}
		}
		return true
	})
	k.stop()
}

// TestRecordsArriveAsTheSourceHasThem checks, on Kafka 4.3.1 with kmirror's default
// configuration, what used to change or stop on the way: the timestamps of a LogAppendTime
// source topic, a record 2 hours ahead that its source topic allowed, records without a
// timestamp, and headers with duplicate and mixed-case trace-context keys while every record
// is traced.
func TestRecordsArriveAsTheSourceHasThem(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")

	// The source broker stamps each record with its append time; a target topic created
	// LogAppendTime (as message.timestamp.type used to be copied) would stamp the copies with
	// the target's, which the second's pause makes sure differs.
	t.Run("log-append-time-source", func(t *testing.T) {
		const topic = "ts.appendtime"
		europe.createTopic(t, topic, 2, 1, map[string]*string{"message.timestamp.type": ptr("LogAppendTime")})
		old := time.UnixMilli(1_500_000_000_000)
		var recs []*kgo.Record
		for i := range 100 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)),
				Value: []byte(fmt.Sprintf("v%d", i)), Timestamp: old.Add(time.Duration(i) * time.Millisecond)})
		}
		produceRecords(t, europe, recs...)
		time.Sleep(1500 * time.Millisecond)
		mirrorOnce(t, europe, us, baseConfig(europe, us, `ts\.appendtime`, ""), map[string]int64{topic: 100})

		src, dst := readRecords(t, europe, topic), readRecords(t, us, topic)
		equal, total := 0, 0
		for p, rs := range src {
			for i, r := range rs {
				total++
				if r.Timestamp.Before(old.Add(time.Hour)) {
					t.Fatalf("source %d/%d carries the producer's timestamp %v: the topic is not LogAppendTime", p, r.Offset, r.Timestamp)
				}
				if i < len(dst[p]) && dst[p][i].Timestamp.Equal(r.Timestamp) {
					equal++
				}
			}
		}
		t.Logf("figures: %d of %d copies carry the source's timestamp", equal, total)
		if total != 100 || equal != 100 {
			t.Fatalf("%d of %d copies carry the source record's timestamp, want 100 of 100", equal, total)
		}
		if got := topicConfig(t, us, topic, "message.timestamp.type"); got != "CreateTime" {
			t.Fatalf("target message.timestamp.type = %q, want CreateTime (never copied)", got)
		}
		if rep := compare(t, europe, us, map[string]string{topic: topic}); !rep.Exact() {
			t.Fatalf("target differs from source:\n%s", rep)
		}
	})

	// Kafka 4 refuses a timestamp more than an hour ahead by default; the source topic allows
	// 3 hours, and the topic kmirror creates must too.
	t.Run("timestamp-2h-ahead", func(t *testing.T) {
		const topic = "ts.future"
		europe.createTopic(t, topic, 2, 1, map[string]*string{"message.timestamp.after.max.ms": ptr("10800000")})
		now := time.Now()
		var recs []*kgo.Record
		for i := range 20 {
			ts := now.Add(time.Duration(i) * time.Millisecond)
			if i == 10 {
				ts = now.Add(2 * time.Hour)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)), Value: []byte("v"), Timestamp: ts})
		}
		produceRecords(t, europe, recs...)
		mirrorOnce(t, europe, us, baseConfig(europe, us, `ts\.future`, ""), map[string]int64{topic: 20})
		if got := topicConfig(t, us, topic, "message.timestamp.after.max.ms"); got != "10800000" {
			t.Fatalf("target message.timestamp.after.max.ms = %q, want the source's 10800000", got)
		}
		if rep := compare(t, europe, us, map[string]string{topic: topic}); !rep.Exact() {
			t.Fatalf("target differs from source:\n%s", rep)
		}
	})

	// franz-go writes -1 for time.UnixMilli(-1) (the zero time would mean "now"). A Kafka 4
	// CreateTime topic takes it: the broker checks no bound against a missing timestamp.
	// sarama cannot produce -1, so each copy carries the time kmirror produced it; the rest is
	// copied exactly and nothing stops.
	t.Run("no-timestamp", func(t *testing.T) {
		const topic = "ts.none"
		europe.createTopic(t, topic, 1, 1, nil)
		none, ts := time.UnixMilli(-1), time.UnixMilli(1_700_000_000_000)
		produceRecords(t, europe, &kgo.Record{Topic: topic, Key: []byte("alone"), Timestamp: none})
		produceRecords(t, europe,
			&kgo.Record{Topic: topic, Key: []byte("timed"), Timestamp: ts},
			&kgo.Record{Topic: topic, Key: []byte("untimed"), Timestamp: none},
			&kgo.Record{Topic: topic, Key: []byte("timed-again"), Timestamp: ts.Add(time.Second)})
		src := readRecords(t, europe, topic)[0]
		for _, r := range src {
			t.Logf("source offset %d %s: timestamp %d", r.Offset, r.Key, r.Timestamp.UnixMilli())
		}
		if len(src) != 4 || src[0].Timestamp.UnixMilli() != -1 || src[2].Timestamp.UnixMilli() != -1 {
			t.Fatalf("the source does not hold records without a timestamp (-1): %d records", len(src))
		}
		before := time.Now().Truncate(time.Millisecond)
		mirrorOnce(t, europe, us, baseConfig(europe, us, `ts\.none`, `
producer:
  batch_records: 1
  linger: 0s
`), map[string]int64{topic: 4})
		after := time.Now()
		dst := readRecords(t, us, topic)[0]
		if len(dst) != 4 {
			t.Fatalf("target holds %d records, want 4", len(dst))
		}
		for i, r := range dst {
			t.Logf("target offset %d %s: timestamp %d", r.Offset, r.Key, r.Timestamp.UnixMilli())
			if string(r.Key) != string(src[i].Key) {
				t.Fatalf("target offset %d is %s, want %s", i, r.Key, src[i].Key)
			}
			if src[i].Timestamp.UnixMilli() == -1 {
				if r.Timestamp.Before(before) || r.Timestamp.After(after) {
					t.Errorf("copy of %s has timestamp %v, want kmirror's clock (%v to %v)", r.Key, r.Timestamp, before, after)
				}
			} else if !r.Timestamp.Equal(src[i].Timestamp) {
				t.Errorf("copy of %s has timestamp %v, want the source's %v", r.Key, r.Timestamp, src[i].Timestamp)
			}
		}
	})

	// Tracing on at sample ratio 1 towards a port where nothing listens: every record gets a
	// recording span (spans are dropped at export). The copies keep the source's headers.
	t.Run("headers-traced", func(t *testing.T) {
		const topic = "hdr.traced"
		europe.createTopic(t, topic, 2, 1, nil)
		const (
			tp1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			tp2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		)
		shapes := [][]kgo.RecordHeader{
			{{Key: "traceparent", Value: []byte(tp1)}, {Key: "traceparent", Value: []byte(tp2)}},
			{{Key: "TraceParent", Value: []byte(tp1)}, {Key: "a", Value: []byte("1")}, {Key: "TRACESTATE", Value: []byte("vendor=x")}},
			{{Key: "tracestate", Value: []byte("k=v")}, {Key: "traceparent", Value: []byte(tp2)}, {Key: "tracestate", Value: []byte("k2=v2")},
				{Key: "Traceparent", Value: []byte(tp1)}, {Key: "empty", Value: []byte{}}, {Key: "null", Value: nil}},
			{{Key: "traceparent", Value: []byte(tp1)}},
			{{Key: "other", Value: []byte("x")}},
			nil,
		}
		var recs []*kgo.Record
		for i := range 120 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)),
				Value: []byte("v"), Headers: shapes[i%len(shapes)]})
		}
		produceRecords(t, europe, recs...)

		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		unused := l.Addr().String()
		l.Close()
		cfg := strings.Replace(baseConfig(europe, us, `hdr\.traced`, ""), "telemetry:\n  listen: \"\"\n",
			fmt.Sprintf("telemetry:\n  listen: \"\"\n  tracing:\n    endpoint: %q\n    sample_ratio: 1\n", unused), 1)
		k := startKmirror(t, writeConfig(t, cfg))
		waitFor(t, "every record on the target", 2*time.Minute, func() bool { return us.count(t, topic) >= 120 })
		k.stop()
		if !strings.Contains(k.log(), "tracing to OTLP collector") {
			t.Fatalf("kmirror did not turn tracing on:\n%s", lastLines(k.log(), 20))
		}
		rep := compare(t, europe, us, map[string]string{topic: topic})
		if !rep.Exact() {
			t.Fatalf("copies differ from the source (headers rewritten?):\n%s", rep)
		}
	})
}

// TestRefusedRecordPolicies checks producer.refused_policy on records a pre-created, stricter
// target topic refuses although the source accepted them; the partition worker checks each
// record with topics.Topic.Refusal before sending it and applies the policy. What it asserts:
//
//   - fail: the source topic allows timestamps 3 hours ahead, the target topic (created by the
//     test) 1 hour; partition 0 gets 20 records in one batch, offset 10 two hours ahead. kmirror
//     exits non-zero; its log names offset 10 (the refused record, not offset 0, the first of
//     its batch) and message.timestamp.after.max.ms; the target's partition 0 holds exactly
//     offsets 0-9, nothing after the refused record; partition 1 is complete.
//   - skip: the same records; kmirror keeps running, kmirror_records_skipped_total{topic} is 1,
//     the log mentions the refused offset exactly once, and the target holds every other record
//     in the source's order (verify.ComparePartition of the source without the refused record is
//     exact) .
//   - dead_letter: the same records; every other record is mirrored in order, and the refused
//     one is in __kmirror.dead-letter.europe on the target with its key, value and headers,
//     kmirror.dlq.source.topic/partition/offset naming it, and a kmirror.dlq.reason naming
//     message.timestamp.after.max.ms.
//   - keyless-into-compacted: a delete-policy source topic with keyless records every fifth
//     offset, mirrored into a target topic the test created compacted, under dead_letter: the
//     keyed records are mirrored in order, each keyless one is in the dead-letter topic with a
//     reason naming cleanup.policy.
func TestRefusedRecordPolicies(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	const refusedOffset = 10

	// setup creates a lenient source topic and a strict target topic and produces 20 records to
	// each of 2 partitions, partition 0's offset 10 two hours ahead; it returns that record.
	setup := func(t *testing.T, topic string) *kgo.Record {
		europe.createTopic(t, topic, 2, 1, map[string]*string{"message.timestamp.after.max.ms": ptr("10800000")})
		us.createTopic(t, topic, 2, 1, map[string]*string{"message.timestamp.after.max.ms": ptr("3600000")})
		now := time.Now()
		var recs []*kgo.Record
		var refused *kgo.Record
		for p := range int32(2) {
			for i := range 20 {
				r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("%d-%d", p, i)), Value: []byte("v"),
					Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}, Timestamp: now.Add(time.Duration(i) * time.Millisecond)}
				if p == 0 && i == refusedOffset {
					r.Timestamp = now.Add(2 * time.Hour)
					refused = r
				}
				recs = append(recs, r)
			}
		}
		produceRecords(t, europe, recs...)
		return refused
	}
	// exactWithout checks that the target holds the source's records except the refused ones,
	// in order, once each.
	exactWithout := func(t *testing.T, topic string, refused map[verify.Digest]bool) {
		src, dst := readRecords(t, europe, topic), readRecords(t, us, topic)
		for p, rs := range src {
			var want, got []verify.Digest
			for _, r := range rs {
				if d := verify.Of(r); !refused[d] {
					want = append(want, d)
				}
			}
			for _, r := range dst[p] {
				got = append(got, verify.Of(r))
			}
			if cmp := verify.ComparePartition(topic, p, want, got); !cmp.Exact() {
				t.Fatalf("%s/%d without the refused records: %+v", topic, p, cmp)
			}
		}
	}
	// deadLetters reads the dead-letter topic's records whose source topic is topic.
	deadLetters := func(t *testing.T, topic string, n int) []*kgo.Record {
		var out []*kgo.Record
		waitFor(t, "dead letters", time.Minute, func() bool {
			out = out[:0]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := verify.ReadRecords(ctx, us.bootstrap, "__kmirror.dead-letter.europe", func(r *kgo.Record) {
				if header(r, "kmirror.dlq.source.topic") == topic {
					out = append(out, r)
				}
			}, nil)
			return err == nil && len(out) >= n // the topic may not exist yet
		})
		return out
	}

	t.Run("fail", func(t *testing.T) {
		const topic = "ref.fail"
		setup(t, topic)
		k := startKmirror(t, writeConfig(t, keepTargetConfigs(baseConfig(europe, us, `ref\.fail`, "producer:\n  refused_policy: fail\n"))))
		select {
		case <-k.done:
		case <-time.After(2 * time.Minute):
			t.Fatal("kmirror did not stop on the refused record")
		}
		if code := k.cmd.ProcessState.ExitCode(); code == 0 {
			t.Fatalf("kmirror exited 0 after a refused record under refused_policy fail")
		}
		log := k.log()
		if len(refusalLines(log, topic, refusedOffset)) == 0 {
			t.Fatalf("no line of kmirror's log names offset 10 of %s and message.timestamp.after.max.ms:\n%s", topic, lastLines(log, 20))
		}
		if regexp.MustCompile(`"partition":\s*0,\s*"offset":\s*0\b`).MatchString(log) {
			t.Fatalf("kmirror's log blames offset 0, the first of the refused record's batch:\n%s", lastLines(log, 20))
		}
		dst := readRecords(t, us, topic)
		if n := len(dst[0]); n != refusedOffset {
			t.Fatalf("target partition 0 holds %d records, want exactly the %d before the refused one", n, refusedOffset)
		}
	})

	t.Run("skip", func(t *testing.T) {
		const topic = "ref.skip"
		refused := setup(t, topic)
		cfg := strings.Replace(keepTargetConfigs(baseConfig(europe, us, `ref\.skip`, "producer:\n  refused_policy: skip\n")),
			`listen: ""`, `listen: "127.0.0.1:19465"`, 1)
		k := startKmirror(t, writeConfig(t, cfg))
		waitFor(t, "the other records on the target", 2*time.Minute, func() bool { return us.count(t, topic) >= 39 })
		metrics := scrape(t, "http://127.0.0.1:19465/metrics")
		k.stop()
		if !regexp.MustCompile(`kmirror_records_skipped_total\{topic="ref\.skip"\} 1\b`).MatchString(metrics) {
			t.Fatalf("kmirror_records_skipped_total{topic=\"ref.skip\"} is not 1:\n%s", grepLines(metrics, "skipped"))
		}
		if n := len(refusalLines(k.log(), topic, refusedOffset)); n != 1 {
			t.Fatalf("the refused record is logged %d times, want once", n)
		}
		exactWithout(t, topic, map[verify.Digest]bool{verify.Of(refused): true})
	})

	t.Run("dead_letter", func(t *testing.T) {
		const topic = "ref.dlq"
		refused := setup(t, topic)
		k := startKmirror(t, writeConfig(t, keepTargetConfigs(baseConfig(europe, us, `ref\.dlq`, "producer:\n  refused_policy: dead_letter\n"))))
		waitFor(t, "the other records on the target", 2*time.Minute, func() bool { return us.count(t, topic) >= 39 })
		dl := deadLetters(t, topic, 1)
		k.stop()
		exactWithout(t, topic, map[verify.Digest]bool{verify.Of(refused): true})
		if len(dl) != 1 {
			t.Fatalf("%d dead letters for %s, want 1", len(dl), topic)
		}
		r := dl[0]
		if string(r.Key) != string(refused.Key) || string(r.Value) != string(refused.Value) || header(r, "i") != "10" ||
			header(r, "kmirror.dlq.source.partition") != "0" || header(r, "kmirror.dlq.source.offset") != "10" ||
			header(r, "kmirror.dlq.source.timestamp") != fmt.Sprint(refused.Timestamp.UnixMilli()) ||
			!strings.Contains(header(r, "kmirror.dlq.reason"), "message.timestamp.after.max.ms") {
			t.Fatalf("dead letter %s=%s headers %v: want the refused record with its origin and reason", r.Key, r.Value, r.Headers)
		}
	})

	t.Run("keyless-into-compacted", func(t *testing.T) {
		const topic = "ref.keyless"
		europe.createTopic(t, topic, 1, 1, map[string]*string{"cleanup.policy": ptr("delete")})
		us.createTopic(t, topic, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")})
		var recs []*kgo.Record
		refused := map[verify.Digest]bool{}
		for i := range 30 {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte("v"), Timestamp: time.Now()}
			if i%5 == 0 {
				r.Key = nil
			}
			recs = append(recs, r)
		}
		produceRecords(t, europe, recs...)
		for _, r := range readRecords(t, europe, topic)[0] {
			if r.Key == nil {
				refused[verify.Of(r)] = true
			}
		}
		k := startKmirror(t, writeConfig(t, keepTargetConfigs(baseConfig(europe, us, `ref\.keyless`, "producer:\n  refused_policy: dead_letter\n"))))
		waitFor(t, "the keyed records on the target", 2*time.Minute, func() bool { return us.count(t, topic) >= 24 })
		dl := deadLetters(t, topic, 6)
		k.stop()
		exactWithout(t, topic, refused)
		for _, r := range dl {
			if r.Key != nil || !strings.Contains(header(r, "kmirror.dlq.reason"), "cleanup.policy") {
				t.Fatalf("dead letter key %q reason %q: want a keyless record refused for cleanup.policy", r.Key, header(r, "kmirror.dlq.reason"))
			}
		}
	})
}

// refusalLines returns the lines of a JSON log that name topic, offset and the config that
// refuses the record.
func refusalLines(log, topic string, offset int) []string {
	off := regexp.MustCompile(fmt.Sprintf(`"offset":\s*%d\b`, offset))
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if off.MatchString(l) && strings.Contains(l, topic) && strings.Contains(l, "message.timestamp.after.max.ms") {
			out = append(out, l)
		}
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
