package heartbeat

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestOriginReadsTheAliasBehindAnyPrefixes(t *testing.T) {
	for topic, want := range map[string]string{
		"kmirror.heartbeats.europe":                       "europe",
		"us.kmirror.heartbeats.europe":                    "europe", // prefix policy
		"asia.us.kmirror.heartbeats.eu-west_1":            "eu-west_1",
		"kmirror.heartbeats":                              "", // no origin
		"kmirror.heartbeats.":                             "",
		"kmirror.heartbeats.europe.orders":                "", // an alias has no "."
		"mykmirror.heartbeats.europe":                     "", // not the base, a name ending in it
		"orders":                                          "",
		"kmirror.heartbeats.us.kmirror.heartbeats.europe": "europe", // the last base wins
	} {
		got, ok := Origin("kmirror.heartbeats", topic)
		if got != want || ok != (want != "") {
			t.Errorf("Origin(%q) = %q, %v; want %q", topic, got, ok, want)
		}
	}
}

// Two flows europe→us and us→europe, each with topics.include matching every topic: under either
// replication policy, what each flow mirrors of the heartbeat topics never sends heartbeats home.
func TestActiveActiveFlowsNeverSendHeartbeatsHome(t *testing.T) {
	eu := Rule{Base: "kmirror.heartbeats", Source: "europe", Target: "us"}
	us := Rule{Base: "kmirror.heartbeats", Source: "us", Target: "europe"}
	type want struct{ mirrored, decided bool }
	cases := []struct {
		name  string
		rule  Rule
		topic string
		want  want
	}{
		{"own topic, even if include misses it", eu, "kmirror.heartbeats.europe", want{true, true}},
		{"identity: the other flow's copy of europe's heartbeats on us", us, "kmirror.heartbeats.europe", want{false, true}},
		{"prefix: the other flow's copy of europe's heartbeats on us", us, "europe.kmirror.heartbeats.europe", want{false, true}},
		{"own topic of us", us, "kmirror.heartbeats.us", want{true, true}},
		{"identity: us's heartbeats on europe", eu, "kmirror.heartbeats.us", want{false, true}},
		{"prefix: us's heartbeats on europe", eu, "us.kmirror.heartbeats.us", want{false, true}},
		{"a third origin follows include/exclude", eu, "kmirror.heartbeats.asia", want{false, false}},
		{"a business topic follows include/exclude", eu, "orders", want{false, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, d := c.rule.Decide(c.topic)
			if (want{m, d}) != c.want {
				t.Errorf("Decide(%q) = mirrored %v decided %v, want %+v", c.topic, m, d, c.want)
			}
		})
	}
}

func TestHeartbeatRecordReadsBack(t *testing.T) {
	at := time.Date(2026, 11, 25, 7, 52, 0, 123_456_789, time.FixedZone("CET", 3600))
	h := New("europe", "us", at)
	if string(h.Key()) != "europe->us" {
		t.Errorf("key %q", h.Key())
	}
	if want := `{"origin":"europe","target":"us","emitted":"2026-11-25T06:52:00.123Z","emitted_ms":1795589520123}`; string(h.Value()) != want {
		t.Errorf("value %s\nwant  %s", h.Value(), want)
	}
	got, err := Parse(h.Key(), h.Value())
	if err != nil || got != h || !got.Time().Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("Parse = %+v, %v; want %+v", got, err, h)
	}
	for _, bad := range []struct{ key, value string }{
		{"europe->us", "not json"},
		{"europe->us", `{"origin":"europe","target":"us"}`},
		{"us->europe", string(h.Value())}, // key and value disagree
	} {
		if _, err := Parse([]byte(bad.key), []byte(bad.value)); err == nil {
			t.Errorf("Parse(%q, %q) accepted it", bad.key, bad.value)
		}
	}
}

// fakeProducer is a sarama.SyncProducer that keeps what it is sent, or fails while err is set.
type fakeProducer struct {
	sarama.SyncProducer
	sent []*sarama.ProducerMessage
	err  error
}

func (p *fakeProducer) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	if p.err != nil {
		return 0, 0, p.err
	}
	p.sent = append(p.sent, m)
	return 0, int64(len(p.sent) - 1), nil
}

type fakeAdmin struct {
	brokers int
	created map[string]*sarama.TopicDetail
	err     error
}

func (a *fakeAdmin) DescribeCluster() ([]*sarama.Broker, int32, error) {
	return make([]*sarama.Broker, a.brokers), 1, nil
}

func (a *fakeAdmin) CreateTopic(topic string, d *sarama.TopicDetail, validateOnly bool) error {
	if a.err != nil {
		return a.err
	}
	if _, ok := a.created[topic]; ok {
		return sarama.ErrTopicAlreadyExists
	}
	a.created[topic] = d
	return nil
}

func TestEmitterCreatesItsTopicAndWritesTimestampedHeartbeats(t *testing.T) {
	p, a := &fakeProducer{}, &fakeAdmin{brokers: 1, created: map[string]*sarama.TopicDetail{}}
	now := time.UnixMilli(1_800_000_000_000)
	emitted := 0
	e, err := NewEmitter(EmitterConfig{
		Topic: "kmirror.heartbeats.europe", Origin: "europe", Target: "us", Interval: time.Second,
		Producer: p, Admin: a, ReplicationFactor: 3, Observer: Observer{Emitted: func() { emitted++ }},
		Now: func() time.Time { now = now.Add(time.Second); return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.Emit(); err != nil {
			t.Fatal(err)
		}
	}
	d := a.created["kmirror.heartbeats.europe"]
	if d == nil || d.NumPartitions != 1 || d.ReplicationFactor != 1 || *d.ConfigEntries["cleanup.policy"] != "compact" ||
		*d.ConfigEntries["max.compaction.lag.ms"] != "3600000" {
		t.Fatalf("topic created as %+v, want 1 partition, replication factor capped at 1 broker, compacted within the hour", d)
	}
	if len(p.sent) != 3 || emitted != 3 {
		t.Fatalf("%d heartbeats sent, %d counted; want 3", len(p.sent), emitted)
	}
	for i, m := range p.sent {
		k, _ := m.Key.Encode()
		v, _ := m.Value.Encode()
		h, err := Parse(k, v)
		if err != nil {
			t.Fatal(err)
		}
		want := time.UnixMilli(1_800_000_000_000).Add(time.Duration(i+1) * time.Second)
		if m.Topic != "kmirror.heartbeats.europe" || m.Partition != 0 || !m.Timestamp.Equal(want) || !h.Time().Equal(want) {
			t.Errorf("heartbeat %d: topic %s partition %d timestamp %v value %s; want emitted at %v", i, m.Topic, m.Partition, m.Timestamp, v, want)
		}
	}
}

func TestEmitterCountsFailuresLogsOnceAndRecovers(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	p, a := &fakeProducer{}, &fakeAdmin{brokers: 3, created: map[string]*sarama.TopicDetail{}, err: sarama.ErrTopicAuthorizationFailed}
	failed := 0
	e, _ := NewEmitter(EmitterConfig{
		Topic: "kmirror.heartbeats.europe", Origin: "europe", Target: "us", Interval: time.Second,
		Producer: p, Admin: a, ReplicationFactor: 3, Observer: Observer{Failed: func(error) { failed++ }}, Log: zap.New(core),
	})
	for range 3 {
		if err := e.Emit(); !errors.Is(err, sarama.ErrTopicAuthorizationFailed) {
			t.Fatalf("Emit = %v, want the refused creation", err)
		}
	}
	a.err = nil
	p.err = sarama.ErrNotEnoughReplicas
	if err := e.Emit(); !errors.Is(err, sarama.ErrNotEnoughReplicas) || !strings.Contains(err.Error(), "kmirror.heartbeats.europe") {
		t.Fatalf("Emit = %v, want the refused write naming the topic", err)
	}
	p.err = nil
	if err := e.Emit(); err != nil {
		t.Fatal(err)
	}
	if failed != 4 || len(p.sent) != 1 {
		t.Errorf("%d failures counted, %d sent; want 4 and 1", failed, len(p.sent))
	}
	if n := logs.FilterMessageSnippet("cannot write heartbeats").Len(); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
	if l := logs.FilterMessage("heartbeats are written again").All(); len(l) != 1 || l[0].ContextMap()["failed"] != int64(4) {
		t.Errorf("recovery logged as %v, want once with failed=4", l)
	}
}
