package deadletter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/topics"
)

// TestDeadLettersKeepTheRecordAndSayWhereItCameFromAndWhy writes refused records to an
// in-process target through a real sarama producer and reads them back with franz-go: the topic
// is created (delete policy, room for large records), key, value and original headers are
// byte-identical (nulls, empties, duplicates and case kept), the kmirror.dlq.* headers follow
// them, and the dead letter carries the time it was written.
func TestDeadLettersKeepTheRecordAndSayWhereItCameFromAndWhy(t *testing.T) {
	us, err := embedded.Start("us", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.MaxMessageBytes = 4 << 20
	producer, err := sarama.NewSyncProducer(us.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	adm, err := sarama.NewClusterAdmin(us.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	w, err := New(Config{Producer: producer, Admin: adm, SourceAlias: "europe", ReplicationFactor: 3,
		MaxMessageBytes: 2 << 20, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if w.Topic() != "__kmirror.dead-letter.europe" {
		t.Fatalf("topic %q, want __kmirror.dead-letter.europe", w.Topic())
	}

	future := (topics.Topic{Target: "orders", TimestampAfterMax: time.Hour}).Refusal([]byte("k"),
		time.UnixMilli(1_800_007_200_000), time.UnixMilli(1_800_000_000_000))
	keyless := (topics.Topic{Target: "users", Compacted: true}).Refusal(nil, time.Time{}, time.Now())
	if future == nil || keyless == nil {
		t.Fatal("the refusals to write are nil")
	}
	big := []byte(strings.Repeat("b", 1_500_000))
	dead := []DeadRecord{
		{Topic: "orders", Partition: 2, Offset: 41, Key: []byte("k"), Value: []byte("v"),
			Headers: []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte("a")}, {Key: []byte("TraceParent"), Value: []byte("b")},
				{Key: []byte("traceparent"), Value: []byte("a")}, {Key: []byte("null"), Value: nil}, {Key: []byte("empty"), Value: []byte{}}},
			Timestamp: time.UnixMilli(1_800_007_200_000), Reason: future},
		{Topic: "users", Partition: 0, Offset: 7, Key: nil, Value: nil, Reason: keyless},
		{Topic: "users", Partition: 1, Offset: 9, Key: []byte{}, Value: big, Timestamp: time.UnixMilli(-1), Reason: keyless},
	}
	before := time.Now().Truncate(time.Millisecond)
	for _, d := range dead {
		if err := w.Write(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()

	cl, err := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...), kgo.ConsumeTopics(w.Topic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < len(dead) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d dead letters", len(got), len(dead))
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}

	wantTS := []string{"1800007200000", "-1", "-1"}
	for i, d := range dead {
		r := got[i]
		if !same(r.Key, d.Key) || !same(r.Value, d.Value) {
			t.Errorf("dead letter %d: key %q value %.20q, want %q %.20q (nulls kept)", i, r.Key, r.Value, d.Key, d.Value)
		}
		if r.Timestamp.Before(before) || r.Timestamp.After(after) {
			t.Errorf("dead letter %d: timestamp %v, want the time of writing (%v to %v)", i, r.Timestamp, before, after)
		}
		if len(r.Headers) != len(d.Headers)+5 {
			t.Fatalf("dead letter %d: %d headers, want %d", i, len(r.Headers), len(d.Headers)+5)
		}
		for j, h := range d.Headers {
			if g := r.Headers[j]; g.Key != string(h.Key) || !same(g.Value, h.Value) {
				t.Errorf("dead letter %d header %d: %q=%q, want %q=%q", i, j, g.Key, g.Value, h.Key, h.Value)
			}
		}
		added := map[string]string{}
		for _, h := range r.Headers[len(d.Headers):] {
			added[h.Key] = string(h.Value)
		}
		want := map[string]string{
			HeaderSourceTopic: d.Topic, HeaderSourcePartition: itoa(int64(d.Partition)), HeaderSourceOffset: itoa(d.Offset),
			HeaderSourceTimestamp: wantTS[i], HeaderReason: d.Reason.Error(),
		}
		for k, v := range want {
			if added[k] != v {
				t.Errorf("dead letter %d: %s = %q, want %q", i, k, added[k], v)
			}
		}
	}
	if !strings.Contains(string(got[0].Headers[len(dead[0].Headers)+4].Value), "message.timestamp.after.max.ms is 3600000") {
		t.Errorf("reason header %q does not name the config", got[0].Headers[len(dead[0].Headers)+4].Value)
	}

	rc, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), w.Topic())
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Value != nil {
			cfgs[c.Key] = *c.Value
		}
	}
	if cfgs["cleanup.policy"] != "delete" || cfgs["max.message.bytes"] != itoa(2<<20+headroom) {
		t.Fatalf("dead-letter topic configs %v, want cleanup.policy delete and max.message.bytes %d", cfgs, 2<<20+headroom)
	}
}

func TestWriteFailsWhenTheTopicCannotBeCreatedAndNamesIt(t *testing.T) {
	w, err := New(Config{Producer: nopProducer{}, Admin: failingAdmin{}, Topic: "__dlq"})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Write(context.Background(), DeadRecord{Topic: "t", Offset: 3})
	if !errors.Is(err, sarama.ErrTopicAuthorizationFailed) || !strings.Contains(err.Error(), `"__dlq"`) {
		t.Fatalf("Write = %v, want the authorisation error naming the topic", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a producer succeeded")
	}
}

type failingAdmin struct{}

func (failingAdmin) CreateTopic(string, *sarama.TopicDetail, bool) error {
	return sarama.ErrTopicAuthorizationFailed
}
func (failingAdmin) DescribeCluster() ([]*sarama.Broker, int32, error) { return nil, 0, nil }

type nopProducer struct{ sarama.SyncProducer }

// capturing is a SyncProducer that keeps what it is given.
type capturing struct {
	sarama.SyncProducer
	msgs []*sarama.ProducerMessage
}

func (c *capturing) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	c.msgs = append(c.msgs, m)
	return 0, 0, nil
}

// TestWriteRecordTakesARecordInTransitAsItCame: the worker hands over the record it holds; the
// dead letter carries its source position from the tracker, its bytes and headers as they came,
// and -1 for a source record without a timestamp.
func TestWriteRecordTakesARecordInTransitAsItCame(t *testing.T) {
	p := &capturing{}
	w, err := New(Config{Producer: p, Topic: "__dlq", Now: func() time.Time { return time.UnixMilli(42) }})
	if err != nil {
		t.Fatal(err)
	}
	track := offsets.NewPartition("orders", 3, 100, 4)
	for _, tc := range []struct {
		m      *sarama.ConsumerMessage
		wantTS string
	}{
		{&sarama.ConsumerMessage{Topic: "orders", Partition: 3, Offset: 120, Key: []byte("k"), Value: nil, Timestamp: time.UnixMilli(1_700_000_000_000),
			Headers: []*sarama.RecordHeader{{Key: []byte("TraceParent"), Value: []byte("x")}, {Key: []byte("TraceParent"), Value: nil}}}, "1700000000000"},
		{&sarama.ConsumerMessage{Topic: "orders", Partition: 3, Offset: 121, Key: nil, Value: []byte{}, Timestamp: time.UnixMilli(-1)}, "-1"},
	} {
		r := record.From(tc.m, "orders", track, 0)
		if err := w.WriteRecord(context.Background(), r, errors.New("refused")); err != nil {
			t.Fatal(err)
		}
		msg := p.msgs[len(p.msgs)-1]
		enc := func(e sarama.Encoder) []byte {
			if e == nil {
				return nil
			}
			b, _ := e.Encode()
			return b
		}
		if !same(enc(msg.Key), tc.m.Key) || !same(enc(msg.Value), tc.m.Value) || !msg.Timestamp.Equal(time.UnixMilli(42)) {
			t.Fatalf("offset %d: key %q value %q ts %v, want %q %q and the writer's clock", tc.m.Offset, enc(msg.Key), enc(msg.Value), msg.Timestamp, tc.m.Key, tc.m.Value)
		}
		for i, h := range tc.m.Headers {
			if string(msg.Headers[i].Key) != string(h.Key) || !same(msg.Headers[i].Value, h.Value) {
				t.Fatalf("offset %d: header %d changed", tc.m.Offset, i)
			}
		}
		got := map[string]string{}
		for _, h := range msg.Headers[len(tc.m.Headers):] {
			got[string(h.Key)] = string(h.Value)
		}
		want := map[string]string{HeaderSourceTopic: "orders", HeaderSourcePartition: "3", HeaderSourceOffset: itoa(tc.m.Offset),
			HeaderSourceTimestamp: tc.wantTS, HeaderReason: "refused"}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("offset %d: %s = %q, want %q", tc.m.Offset, k, got[k], v)
			}
		}
	}
}

func same(a, b []byte) bool { return (a == nil) == (b == nil) && string(a) == string(b) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
