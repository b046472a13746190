package mirror

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readAll reads every record of topic from a cluster, in partition order.
func readAll(t *testing.T, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// TestLogAppendTimeSourceTopicIsCreatedCreateTimeOnTheTarget: a LogAppendTime source topic's
// target is created without message.timestamp.type (so CreateTime), because a LogAppendTime
// target broker would overwrite every copy's timestamp with its own append time. The copies
// carry the source's timestamps.
func TestLogAppendTimeSourceTopicIsCreatedCreateTimeOnTheTarget(t *testing.T) {
	p := newPair(t)
	appendTime, retention := "LogAppendTime", "3600000"
	createTopic(t, p.europe, "appended", 2, map[string]*string{"message.timestamp.type": &appendTime, "retention.ms": &retention})
	produce(t, p.europe, numbered("appended", 2, 0, 40)...)
	m := start(t, p.config("appended"))
	waitFor(t, "records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "appended") == 40 })
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	rc, err := admin(t, p.us).DescribeTopicConfigs(context.Background(), "appended")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["message.timestamp.type"] != "CreateTime" || got["retention.ms"] != "3600000" {
		t.Fatalf("target message.timestamp.type=%q retention.ms=%q, want CreateTime (never copied) and the source's 3600000",
			got["message.timestamp.type"], got["retention.ms"])
	}
	if rep := compare(t, p, map[string]string{"appended": "appended"}); !rep.Exact() {
		t.Fatalf("%s", rep)
	}
}

// TestRecordWithoutTimestampIsCopiedWithTheProducersClock pins what becomes of a source record
// without a timestamp (-1): sarama cannot produce one, so its copy carries the time kmirror
// produced it, whether the record led its source batch (sarama's consumer reports the zero time)
// or followed a timestamped record (one millisecond before the epoch, which sarama's producer
// refuses to encode when it leads a batch: that used to stop the partition). Everything else is
// copied exactly and the mirror does not stop. One record per produce request on the target
// makes every record lead its batch.
func TestRecordWithoutTimestampIsCopiedWithTheProducersClock(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "untimed", 2, nil)
	ts := time.UnixMilli(1_700_000_000_000)
	none := time.UnixMilli(-1) // franz-go writes -1 for this; the zero time would mean "now"
	produce(t, p.europe, &kgo.Record{Topic: "untimed", Partition: 0, Key: []byte("alone"), Timestamp: none})
	produce(t, p.europe,
		&kgo.Record{Topic: "untimed", Partition: 1, Key: []byte("timed"), Timestamp: ts},
		&kgo.Record{Topic: "untimed", Partition: 1, Key: []byte("untimed-after-timed"), Timestamp: none},
		&kgo.Record{Topic: "untimed", Partition: 1, Key: []byte("timed-again"), Timestamp: ts.Add(time.Second)})
	for _, r := range readAll(t, p.europe.Addrs(), "untimed", 4) {
		if string(r.Key) != "timed" && string(r.Key) != "timed-again" && r.Timestamp.UnixMilli() != -1 {
			t.Fatalf("source %s has timestamp %d, want -1: the test does not test what it says", r.Key, r.Timestamp.UnixMilli())
		}
	}

	cfg := p.config("untimed")
	cfg.Producer.BatchRecords, cfg.Producer.Linger = 1, 0
	before := time.Now().Truncate(time.Millisecond)
	m := start(t, cfg)
	waitFor(t, "records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "untimed") == 4 })
	after := time.Now()
	if err := m.stop(t); err != nil {
		t.Fatalf("mirror stopped with %v", err)
	}
	want := map[string]time.Time{"timed": ts, "timed-again": ts.Add(time.Second)}
	for _, r := range readAll(t, p.us.Addrs(), "untimed", 4) {
		w, timed := want[string(r.Key)]
		switch {
		case timed && !r.Timestamp.Equal(w):
			t.Errorf("copy of %s has timestamp %v, want the source's %v", r.Key, r.Timestamp, w)
		case !timed && (r.Timestamp.Before(before) || r.Timestamp.After(after)):
			t.Errorf("copy of %s (no timestamp at the source) has %v, want kmirror's clock between %v and %v",
				r.Key, r.Timestamp, before, after)
		}
	}
}
