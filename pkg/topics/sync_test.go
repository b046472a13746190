package topics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
)

// fakeAdmin is a cluster as the syncer sees it: topics with their non-default configs (what
// ListTopics reports) and their effective configs (what DescribeConfig reports).
type fakeAdmin struct {
	mu        sync.Mutex
	topics    map[string]sarama.TopicDetail
	effective map[string]map[string]string
	created   map[string]*sarama.TopicDetail
	describes int
	alters    []map[string]string // each IncrementalAlterConfig call's values
	acls      []sarama.ResourceAcls
	// dropACLs makes CreateACLs succeed without creating anything, as sarama reports a
	// creation the broker refused.
	dropACLs bool
	brokers  int
	rf       int16 // replication factor ListTopics reports
	// unknown are configs the cluster does not know (an older Kafka): creating a topic with
	// one fails with INVALID_CONFIG.
	unknown []string
	// lagging is how many describes of a topic created here answer UNKNOWN_TOPIC_OR_PARTITION
	// first, as a broker that has not applied the topic's metadata yet does.
	lagging  int
	laggedBy map[string]int
	// createErrs are the errors CreateTopics answers for a topic, by name, one per request in
	// turn; TOPIC_ALREADY_EXISTS comes with the topic, as another replica created it.
	createErrs map[string][]error
	// createRequests and describeRequests count the requests (describes counts the topics
	// described).
	createRequests, describeRequests int
	// createACLRequests and listACLRequests count CreateACLs and ListAcls calls.
	createACLRequests, listACLRequests int
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{topics: map[string]sarama.TopicDetail{}, effective: map[string]map[string]string{},
		created: map[string]*sarama.TopicDetail{}}
}

func (f *fakeAdmin) add(name string, partitions int32, overrides, defaults map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	entries := map[string]*string{}
	eff := map[string]string{}
	for k, v := range defaults {
		eff[k] = v
	}
	for k, v := range overrides {
		entries[k] = &v
		eff[k] = v
	}
	f.topics[name] = sarama.TopicDetail{NumPartitions: partitions, ConfigEntries: entries}
	f.effective[name] = eff
}

func (f *fakeAdmin) ListTopics() (map[string]sarama.TopicDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]sarama.TopicDetail, len(f.topics))
	for k, v := range f.topics {
		v.ReplicationFactor = f.rf
		out[k] = v
	}
	return out, nil
}

func (f *fakeAdmin) IncrementalAlterConfig(_ sarama.ConfigResourceType, name string, entries map[string]sarama.IncrementalAlterConfigsEntry, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.topics[name]
	if !ok {
		return sarama.ErrUnknownTopicOrPartition
	}
	set := map[string]string{}
	for k, e := range entries {
		v := *e.Value
		d.ConfigEntries[k] = &v
		f.effective[name][k] = v
		set[k] = v
	}
	f.alters = append(f.alters, set)
	return nil
}

func (f *fakeAdmin) ListAcls(filter sarama.AclFilter) ([]sarama.ResourceAcls, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listACLRequests++
	var out []sarama.ResourceAcls
	for _, r := range f.acls {
		if filter.ResourceName != nil && *filter.ResourceName != r.ResourceName {
			continue
		}
		if filter.ResourcePatternTypeFilter != sarama.AclPatternAny && filter.ResourcePatternTypeFilter != r.ResourcePatternType {
			continue
		}
		out = append(out, sarama.ResourceAcls{Resource: r.Resource, Acls: slices.Clone(r.Acls)})
	}
	return out, nil
}

func (f *fakeAdmin) CreateACLs(acls []*sarama.ResourceAcls) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.createACLRequests++
	if f.dropACLs {
		return nil
	}
	for _, r := range acls {
		f.acls = append(f.acls, sarama.ResourceAcls{Resource: r.Resource, Acls: slices.Clone(r.Acls)})
	}
	return nil
}

func (f *fakeAdmin) CreateTopics(details map[string]*sarama.TopicDetail) (map[string]error, error) {
	f.mu.Lock()
	f.createRequests++
	f.mu.Unlock()
	out := make(map[string]error, len(details))
	for topic, detail := range details {
		out[topic] = f.createTopic(topic, detail)
	}
	return out, nil
}

func (f *fakeAdmin) createTopic(topic string, detail *sarama.TopicDetail) error {
	f.mu.Lock()
	var err error
	if errs := f.createErrs[topic]; len(errs) > 0 {
		err, f.createErrs[topic] = errs[0], errs[1:]
	}
	f.mu.Unlock()
	if err != nil {
		if errors.Is(err, sarama.ErrTopicAlreadyExists) {
			f.add(topic, detail.NumPartitions, nil, map[string]string{"max.message.bytes": "1048588"})
		}
		return err
	}
	for k := range detail.ConfigEntries {
		if slices.Contains(f.unknown, k) {
			return &sarama.TopicError{Err: sarama.ErrInvalidConfig}
		}
	}
	overrides := map[string]string{}
	for k, v := range detail.ConfigEntries {
		overrides[k] = *v
	}
	f.add(topic, detail.NumPartitions, overrides, map[string]string{"max.message.bytes": "1048588"})
	f.mu.Lock()
	f.created[topic] = detail
	f.mu.Unlock()
	return nil
}

func (f *fakeAdmin) CreatePartitions(string, int32, [][]int32, bool) error { return nil }

func (f *fakeAdmin) DescribeConfigs(rs []*sarama.ConfigResource, _ sarama.DescribeConfigsOptions) ([]*sarama.ConfigResourceResult, error) {
	f.mu.Lock()
	f.describeRequests++
	f.mu.Unlock()
	var out []*sarama.ConfigResourceResult
	for _, r := range rs {
		res := &sarama.ConfigResourceResult{Type: r.Type, Name: r.Name}
		entries, err := f.describe(*r)
		if err != nil {
			res.ErrorCode = err.(sarama.KError)
		}
		res.Configs = entries
		out = append(out, res)
	}
	return out, nil
}

func (f *fakeAdmin) describe(r sarama.ConfigResource) ([]sarama.ConfigEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	eff, ok := f.effective[r.Name]
	if _, created := f.created[r.Name]; created && f.laggedBy[r.Name] < f.lagging {
		if f.laggedBy == nil {
			f.laggedBy = map[string]int{}
		}
		f.laggedBy[r.Name]++
		ok = false
	}
	if !ok {
		return nil, sarama.ErrUnknownTopicOrPartition
	}
	var out []sarama.ConfigEntry
	for k, v := range eff {
		if r.ConfigNames == nil || slices.Contains(r.ConfigNames, k) {
			out = append(out, sarama.ConfigEntry{Name: k, Value: v})
		}
	}
	return out, nil
}

func (f *fakeAdmin) DescribeCluster() ([]*sarama.Broker, int32, error) {
	n := max(f.brokers, 1)
	var out []*sarama.Broker
	for i := range n {
		out = append(out, sarama.NewBroker(fmt.Sprintf("127.0.0.1:%d", i+1)))
	}
	return out, 1, nil
}

func newTestSyncer(t *testing.T, src, tgt *fakeAdmin, log *zap.Logger, syncConfigs []string) *Syncer {
	t.Helper()
	f, err := NewFilter([]string{".*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := NewNamer(config.PolicyIdentity, "europe")
	return NewSyncer(src, tgt, SyncerConfig{Filter: f, Name: n, Create: true, ReplicationFactor: 1,
		SyncConfigs: syncConfigs, DefaultMaxMessageBytes: 1048588, Log: log})
}

const longMax = "9223372036854775807"

// TestCreatedTopicAcceptsWhatTheSourceAcceptedAndKeepsCreateTime: a LogAppendTime source topic
// whose records may be 3 hours ahead (Kafka 4 defaults elsewhere) is created on the target
// without message.timestamp.type, even when sync_configs lists it, and with the source's
// effective timestamp bounds, the default before.max.ms included.
func TestCreatedTopicAcceptsWhatTheSourceAcceptedAndKeepsCreateTime(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 3,
		map[string]string{"message.timestamp.type": "LogAppendTime", "message.timestamp.after.max.ms": "10800000", "retention.ms": "1000"},
		map[string]string{"message.timestamp.before.max.ms": longMax, "cleanup.policy": "delete"})
	sync := slices.Concat(config.Default().Topics.SyncConfigs, []string{"message.timestamp.type"})
	s := newTestSyncer(t, src, tgt, zap.NewNop(), sync)
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range tgt.created["orders"].ConfigEntries {
		got[k] = *v
	}
	want := map[string]string{"message.timestamp.after.max.ms": "10800000", "message.timestamp.before.max.ms": longMax, "retention.ms": "1000"}
	if len(got) != len(want) {
		t.Fatalf("created with %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("created with %s=%q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	topic, _ := s.Lookup("orders")
	if topic.LogAppendTime || topic.TimestampAfterMax != 3*time.Hour || topic.TimestampBeforeMax != 0 || topic.MaxMessageBytes != 1048588 {
		t.Fatalf("target topic read as %+v, want CreateTime, after 3h, no before bound, 1048588 bytes", topic)
	}
	if err := topic.Refusal(nil, time.Now().Add(2*time.Hour), time.Now()); err != nil {
		t.Fatalf("the created topic refuses a record 2h ahead that the source accepted: %v", err)
	}
}

// TestKafka39DifferenceBecomesBothBounds: a Kafka 3.9 source topic bounded only by the
// deprecated message.timestamp.difference.max.ms is created with that bound in both
// directions, and without the deprecated key, which Kafka 4 refuses.
func TestKafka39DifferenceBecomesBothBounds(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("old", 1, map[string]string{"message.timestamp.difference.max.ms": "60000"},
		map[string]string{"message.timestamp.after.max.ms": longMax, "message.timestamp.before.max.ms": longMax})
	s := newTestSyncer(t, src, tgt, zap.NewNop(), config.Default().Topics.SyncConfigs)
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ce := tgt.created["old"].ConfigEntries
	if _, ok := ce["message.timestamp.difference.max.ms"]; ok {
		t.Fatal("message.timestamp.difference.max.ms sent to the target")
	}
	for _, k := range []string{"message.timestamp.after.max.ms", "message.timestamp.before.max.ms"} {
		if ce[k] == nil || *ce[k] != "60000" {
			t.Fatalf("%s = %v, want the source's difference 60000", k, ce[k])
		}
	}
}

// TestExistingTargetTopicIsReadNotAlteredAndLogAppendTimeWarnedOnce: an existing target topic
// is left as it is; what decides acceptance is read from it once, and a LogAppendTime target is
// warned about once, naming it, however often the topics are refreshed.
func TestExistingTargetTopicIsReadNotAlteredAndLogAppendTimeWarnedOnce(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("users", 2, map[string]string{"message.timestamp.after.max.ms": "86400000"}, nil)
	tgt.add("users", 2, map[string]string{"cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime"},
		map[string]string{"message.timestamp.after.max.ms": "3600000", "message.timestamp.before.max.ms": longMax, "max.message.bytes": "2000000"})
	core, logs := observer.New(zap.InfoLevel)
	s := newTestSyncer(t, src, tgt, zap.New(core), config.Default().Topics.SyncConfigs)
	for range 3 {
		if _, err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(tgt.created) != 0 {
		t.Fatalf("existing target topic re-created or altered: %v", tgt.created)
	}
	topic, _ := s.Lookup("users")
	want := Topic{Source: "users", Target: "users", Partitions: 2, MaxMessageBytes: 2000000, Compacted: true,
		LogAppendTime: true, TimestampAfterMax: time.Hour}
	if topic != want {
		t.Fatalf("target topic read as %+v, want %+v", topic, want)
	}
	if tgt.describes != 1 {
		t.Fatalf("target described %d times over 3 refreshes, want once", tgt.describes)
	}
	warned := logs.FilterMessageSnippet("LogAppendTime").All()
	if len(warned) != 1 || warned[0].ContextMap()["topic"] != "users" || warned[0].Level != zap.WarnLevel {
		t.Fatalf("LogAppendTime warnings: %+v, want one warning naming topic users", warned)
	}
	stricter := logs.FilterMessageSnippet("accepts less than its source").All()
	if len(stricter) != 1 || stricter[0].ContextMap()["topic"] != "users" {
		t.Fatalf("stricter-target warnings: %+v, want one naming topic users", stricter)
	}
	if got := stricter[0].ContextMap()["stricter_configs"]; fmt.Sprint(got) != "[cleanup.policy]" {
		// LogAppendTime accepts any timestamp: only the compaction is stricter.
		t.Fatalf("stricter configs %v, want [cleanup.policy]", got)
	}
}

// TestStricterExistingTargetIsWarnedAboutNotAltered: an existing CreateTime target topic that
// accepts timestamps at most 1 hour ahead, mirrored from a source that accepts 1 day, is left as
// it is and warned about once, naming the config.
func TestStricterExistingTargetIsWarnedAboutNotAltered(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 1, map[string]string{"message.timestamp.after.max.ms": "86400000"},
		map[string]string{"message.timestamp.before.max.ms": longMax})
	tgt.add("orders", 1, nil, map[string]string{"message.timestamp.after.max.ms": "3600000", "message.timestamp.before.max.ms": longMax})
	core, logs := observer.New(zap.InfoLevel)
	s := newTestSyncer(t, src, tgt, zap.New(core), config.Default().Topics.SyncConfigs)
	for range 2 {
		if _, err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(tgt.created) != 0 || tgt.effective["orders"]["message.timestamp.after.max.ms"] != "3600000" {
		t.Fatal("the existing target topic was altered")
	}
	w := logs.FilterMessageSnippet("accepts less than its source").All()
	if len(w) != 1 || fmt.Sprint(w[0].ContextMap()["stricter_configs"]) != "[message.timestamp.after.max.ms]" {
		t.Fatalf("warnings %+v, want one naming message.timestamp.after.max.ms", w)
	}
	topic, _ := s.Lookup("orders")
	if err := topic.Refusal([]byte("k"), time.Now().Add(2*time.Hour), time.Now()); err == nil {
		t.Fatal("a record 2h ahead passes the check for a target topic that refuses it")
	}
}

// TestTargetBefore36GetsTheSingleBound: a target that knows neither timestamp bound (Kafka
// before 3.6) gets the topic created with message.timestamp.difference.max.ms, the larger of the
// source's two bounds, instead of not at all.
func TestTargetBefore36GetsTheSingleBound(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	tgt.unknown = []string{"message.timestamp.after.max.ms", "message.timestamp.before.max.ms"}
	src.add("old", 1, map[string]string{"message.timestamp.after.max.ms": "7200000", "message.timestamp.before.max.ms": "60000"}, nil)
	s := newTestSyncer(t, src, tgt, zap.NewNop(), config.Default().Topics.SyncConfigs)
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ce := tgt.created["old"].ConfigEntries
	if d := ce["message.timestamp.difference.max.ms"]; d == nil || *d != "7200000" || len(ce) != 1 {
		t.Fatalf("created with %v, want only message.timestamp.difference.max.ms=7200000", ce)
	}
}

// TestAJustCreatedTopicIsReadSoonAfterTheBrokerKnowsIt: a topic whose describe answers
// UNKNOWN_TOPIC_OR_PARTITION three times after its creation is read on the fourth try, with
// pauses that start short (10 ms, growing): not a quarter of a second per try.
func TestAJustCreatedTopicIsReadSoonAfterTheBrokerKnowsIt(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 3, nil, nil)
	tgt.lagging = 3
	s := newTestSyncer(t, src, tgt, zap.NewNop(), nil)
	start := time.Now()
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if topic, ok := s.Lookup("orders"); !ok || topic.MaxMessageBytes != 1048588 {
		t.Fatalf("orders after the refresh: %+v, %v; want ready with the target's max.message.bytes", topic, ok)
	}
	if tgt.describes != 4 {
		t.Errorf("%d describes, want 4 (3 unknown, then the answer)", tgt.describes)
	}
	if took > 500*time.Millisecond {
		t.Errorf("the refresh took %s for 3 retries: the pauses do not start short", took)
	}
}

// TestTopicMissingFromAListingIsKeptUntilGoneAfter: a broker that has just restarted lists no
// topic while it loads its metadata; a topic known before stays mirrored (the session is not
// ended, the topic not dropped) until it has been missing for goneAfter.
func TestTopicMissingFromAListingIsKeptUntilGoneAfter(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 2, nil, nil)
	src.add("payments", 2, nil, nil)
	s := newTestSyncer(t, src, tgt, zap.NewNop(), nil)
	ctx := context.Background()
	if names, err := s.Refresh(ctx); err != nil || !slices.Equal(names, []string{"orders", "payments"}) {
		t.Fatalf("first refresh: %v, %v", names, err)
	}
	src.mu.Lock()
	loading := src.topics
	src.topics = map[string]sarama.TopicDetail{} // a broker still loading its metadata
	src.mu.Unlock()
	for i := range 2 {
		names, err := s.Refresh(ctx)
		if err != nil || !slices.Equal(names, []string{"orders", "payments"}) {
			t.Fatalf("refresh %d while the listing is empty: %v, %v; want both topics kept", i, names, err)
		}
		if _, ok := s.Lookup("orders"); !ok {
			t.Fatalf("orders no longer known")
		}
	}
	src.mu.Lock()
	src.topics = loading
	delete(src.topics, "payments") // deleted for good
	src.mu.Unlock()
	if names, _ := s.Refresh(ctx); !slices.Equal(names, []string{"orders", "payments"}) {
		t.Fatalf("within goneAfter: %v", names)
	}
	s.goneAfter = 0
	if names, _ := s.Refresh(ctx); !slices.Equal(names, []string{"orders"}) {
		t.Fatalf("after goneAfter: %v, want payments dropped", names)
	}
}
