package topics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
)

// kafkaCluster is an embedded cluster with a franz-go admin (the independent client) and a
// count of the requests it answered, by key.
type kafkaCluster struct {
	*embedded.Cluster
	adm      *kadm.Client
	requests map[kmsg.Key]*atomic.Int64
}

// startCounted starts a one-broker embedded cluster that counts the requests of keys.
func startCounted(t *testing.T, name string, keys ...kmsg.Key) *kafkaCluster {
	t.Helper()
	c, err := embedded.Start(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kc := &kafkaCluster{Cluster: c, requests: map[kmsg.Key]*atomic.Int64{}}
	for _, k := range keys {
		n := new(atomic.Int64)
		kc.requests[k] = n
		fake := c.Fake()
		fake.ControlKey(k.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			n.Add(1)
			return nil, nil, false // answered by the cluster as usual
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	kc.adm = kadm.NewClient(cl)
	return kc
}

func (c *kafkaCluster) count(k kmsg.Key) int64 { return c.requests[k].Load() }

// saramaAdmin is the admin the daemon gives the syncer for the cluster.
func saramaAdmin(t *testing.T, c *kafkaCluster) Admin {
	t.Helper()
	conf := sarama.NewConfig()
	conf.Version = sarama.V3_6_0_0
	a, err := sarama.NewClusterAdmin(c.Addrs(), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return NewAdmin(a, conf)
}

// createSourceTopics creates n topics of partitions each, 100 per request.
func createSourceTopics(t *testing.T, c *kafkaCluster, n int, partitions int32, configs map[string]*string) []string {
	t.Helper()
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("orders.%04d", i))
	}
	for i := 0; i < n; i += 100 {
		res, err := c.adm.CreateTopics(context.Background(), partitions, 1, configs, names[i:min(i+100, n)]...)
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func ceilDiv(a, b int) int64 { return int64((a + b - 1) / b) }

// TestAThousandTopicsAreCreatedInFewRequests: a first start that mirrors 1,000 topics of 10
// partitions creates their targets in at most ceil(1000/topicsPerCreate) CreateTopics requests,
// reads the source's configs and the created topics' configs in a few DescribeConfigs requests
// (not one per topic), and every target topic exists with the source's partition count and
// configs and is ready, with what the target accepts read.
func TestAThousandTopicsAreCreatedInFewRequests(t *testing.T) {
	src := startCounted(t, "europe", kmsg.DescribeConfigs)
	tgt := startCounted(t, "us", kmsg.CreateTopics, kmsg.DescribeConfigs)
	retention := "3600000"
	const n = 1000
	names := createSourceTopics(t, src, n, 10, map[string]*string{"retention.ms": &retention})

	f, err := NewFilter([]string{`orders\..*`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	namer, _ := NewNamer(config.PolicyIdentity, "europe")
	s := NewSyncer(saramaAdmin(t, src), saramaAdmin(t, tgt), SyncerConfig{Filter: f, Name: namer, Create: true, ReplicationFactor: 1,
		SyncConfigs: config.Default().Topics.SyncConfigs, DefaultMaxMessageBytes: 1000012})
	start := time.Now()
	ready, err := s.Refresh(context.Background())
	took := time.Since(start)
	if err != nil || len(ready) != n {
		t.Fatalf("refresh: %d topics ready, error %v; want %d and no error", len(ready), err, n)
	}
	creates, srcDescribes, tgtDescribes := tgt.count(kmsg.CreateTopics), src.count(kmsg.DescribeConfigs), tgt.count(kmsg.DescribeConfigs)

	described, err := tgt.adm.DescribeTopicConfigs(context.Background(), names...)
	if err != nil {
		t.Fatal(err)
	}
	details, err := tgt.adm.ListTopics(context.Background(), names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if d, ok := details[name]; !ok || d.Err != nil || len(d.Partitions) != 10 {
			t.Fatalf("target topic %s: %+v; want it with 10 partitions", name, d)
		}
		rc, err := described.On(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				got = *c.Value
			}
		}
		if got != retention {
			t.Fatalf("target topic %s retention.ms = %q, want the source's %s", name, got, retention)
		}
		if topic, ok := s.Lookup(name); !ok || topic.Partitions != 10 || topic.MaxMessageBytes == 0 {
			t.Fatalf("Lookup(%s) = %+v, %v; want ready with 10 partitions and max.message.bytes read", name, topic, ok)
		}
	}

	t.Logf("1,000 topics ready in %s: %d CreateTopics requests, %d DescribeConfigs to the source, %d to the target",
		took.Round(time.Millisecond), creates, srcDescribes, tgtDescribes)
	if most := ceilDiv(n, topicsPerCreate); creates > most {
		t.Errorf("%d CreateTopics requests for %d topics, want at most %d (%d topics per request)", creates, n, most, topicsPerCreate)
	}
	// sarama's ListTopics sends one DescribeConfigs of every topic itself.
	if most := 1 + ceilDiv(n, topicsPerDescribe); srcDescribes > most || tgtDescribes > most {
		t.Errorf("DescribeConfigs requests: %d to the source, %d to the target for %d topics, want at most %d each (the listing's, and %d topics per request)",
			srcDescribes, tgtDescribes, n, most, topicsPerDescribe)
	}
}

// TestARestartWithAThousandTopicsReadsTheirConfigsInFewRequests: at a start where the 1,000
// target topics exist, what each topic's configs are on both clusters is read in a few
// DescribeConfigs requests, with continuous config sync on (the default: the plan compares
// them) and off (the targets are read once, to learn what they accept, and compared with the
// source), and nothing is created.
func TestARestartWithAThousandTopicsReadsTheirConfigsInFewRequests(t *testing.T) {
	for _, syncExisting := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync_existing_configs=%v", syncExisting), func(t *testing.T) {
			src := startCounted(t, "europe", kmsg.DescribeConfigs)
			tgt := startCounted(t, "us", kmsg.CreateTopics, kmsg.DescribeConfigs)
			const n = 1000
			names := createSourceTopics(t, src, n, 2, nil)
			createSourceTopics(t, tgt, n, 2, nil)
			base := map[*kafkaCluster]int64{src: src.count(kmsg.DescribeConfigs), tgt: tgt.count(kmsg.DescribeConfigs)}
			creates := tgt.count(kmsg.CreateTopics)

			f, err := NewFilter([]string{`orders\..*`}, nil)
			if err != nil {
				t.Fatal(err)
			}
			namer, _ := NewNamer(config.PolicyIdentity, "europe")
			s := NewSyncer(saramaAdmin(t, src), saramaAdmin(t, tgt), SyncerConfig{Filter: f, Name: namer, Create: true, ReplicationFactor: 1,
				SyncConfigs: config.Default().Topics.SyncConfigs, SyncExistingConfigs: syncExisting, DefaultMaxMessageBytes: 1000012})
			ready, err := s.Refresh(context.Background())
			if err != nil || len(ready) != n {
				t.Fatalf("refresh: %d topics ready, error %v; want %d and no error", len(ready), err, n)
			}
			if topic, ok := s.Lookup(names[n-1]); !ok || topic.MaxMessageBytes == 0 {
				t.Fatalf("Lookup(%s) = %+v, %v; want ready with max.message.bytes read", names[n-1], topic, ok)
			}
			srcDescribes, tgtDescribes := src.count(kmsg.DescribeConfigs)-base[src], tgt.count(kmsg.DescribeConfigs)-base[tgt]
			t.Logf("%d DescribeConfigs requests to the source, %d to the target", srcDescribes, tgtDescribes)
			if got := tgt.count(kmsg.CreateTopics) - creates; got != 0 {
				t.Errorf("%d CreateTopics requests for topics that exist", got)
			}
			if most := 1 + ceilDiv(n, topicsPerDescribe); srcDescribes > most || tgtDescribes > most {
				t.Errorf("DescribeConfigs requests: %d to the source, %d to the target for %d topics, want at most %d each (the listing's, and %d topics per request)",
					srcDescribes, tgtDescribes, n, most, topicsPerDescribe)
			}
		})
	}
}

// TestAPolicyViolationNamesItsTopicAndStopsNoOther: a target whose create policy refuses one
// topic of a request (POLICY_VIOLATION) leaves that topic out, with an error naming it and the
// broker's code, and creates every other topic of the same request; the refused topic is not
// sent again within the refresh (a policy does not change its mind).
func TestAPolicyViolationNamesItsTopicAndStopsNoOther(t *testing.T) {
	src := startCounted(t, "europe")
	tgt := startCounted(t, "us", kmsg.CreateTopics)
	names := createSourceTopics(t, src, 10, 3, nil)
	refused := names[3]
	tgt.Fake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.CreateTopics}, Topic: refused, Err: kerr.PolicyViolation, Count: -1})

	f, _ := NewFilter([]string{`orders\..*`}, nil)
	namer, _ := NewNamer(config.PolicyIdentity, "europe")
	s := NewSyncer(saramaAdmin(t, src), saramaAdmin(t, tgt), SyncerConfig{Filter: f, Name: namer, Create: true, ReplicationFactor: 1,
		DefaultMaxMessageBytes: 1000012})
	ready, err := s.Refresh(context.Background())
	if len(ready) != 9 || slices.Contains(ready, refused) {
		t.Fatalf("ready %v; want the 9 topics but %s", ready, refused)
	}
	if !errors.Is(err, sarama.ErrPolicyViolation) || !strings.Contains(err.Error(), fmt.Sprintf("%q", refused)) {
		t.Fatalf("refresh error %v; want POLICY_VIOLATION naming %s", err, refused)
	}
	if got := tgt.count(kmsg.CreateTopics); got != 1 {
		t.Errorf("%d CreateTopics requests, want 1", got)
	}
	listed, lerr := tgt.adm.ListTopics(context.Background())
	if lerr != nil {
		t.Fatal(lerr)
	}
	for _, name := range names {
		if _, ok := listed[name]; ok == (name == refused) {
			t.Errorf("target topic %s exists: %v", name, ok)
		}
	}
}

// TestEachTopicOfACreateTopicsRequestIsAnsweredForItself: in one request, a topic another
// replica created first (TOPIC_ALREADY_EXISTS) is ready like the others, one refused by a policy
// is left out with an error naming it and the broker's message, one throttled by a controller
// quota (THROTTLING_QUOTA_EXCEEDED) is sent again and created; nothing is left without an answer.
func TestEachTopicOfACreateTopicsRequestIsAnsweredForItself(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	for _, name := range []string{"a", "refused", "raced", "throttled", "z"} {
		src.add(name, 2, nil, nil)
	}
	msg := "topics need a replication factor of 3"
	tgt.createErrs = map[string][]error{
		"refused":   {&sarama.TopicError{Err: sarama.ErrPolicyViolation, ErrMsg: &msg}},
		"raced":     {&sarama.TopicError{Err: sarama.ErrTopicAlreadyExists}},
		"throttled": {&sarama.TopicError{Err: sarama.ErrThrottlingQuotaExceeded}},
	}
	core, logs := observer.New(zap.InfoLevel)
	s := newTestSyncer(t, src, tgt, zap.New(core), nil)
	ready, err := s.Refresh(context.Background())
	if want := []string{"a", "raced", "throttled", "z"}; !slices.Equal(ready, want) {
		t.Fatalf("ready %v, want %v", ready, want)
	}
	if !errors.Is(err, sarama.ErrPolicyViolation) || !strings.Contains(err.Error(), `"refused"`) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("refresh error %v; want POLICY_VIOLATION naming topic refused, with the broker's message", err)
	}
	if tgt.createRequests != 2 {
		t.Errorf("%d CreateTopics requests, want 2 (all five, then the throttled one)", tgt.createRequests)
	}
	for _, name := range ready {
		if topic, ok := s.Lookup(name); !ok || topic.MaxMessageBytes != 1048588 {
			t.Errorf("Lookup(%s) = %+v, %v; want ready with the target's max.message.bytes", name, topic, ok)
		}
	}
	var created []string
	for _, e := range logs.FilterMessage("created target topic").All() {
		created = append(created, e.ContextMap()["topic"].(string))
	}
	slices.Sort(created)
	if want := []string{"a", "throttled", "z"}; !slices.Equal(created, want) {
		t.Errorf("logged as created: %v, want %v", created, want)
	}
	notReady := logs.FilterMessage("target topic not ready; not mirroring it until it is").All()
	if len(notReady) != 1 || notReady[0].ContextMap()["topic"] != "refused" {
		t.Errorf("not-ready errors logged: %v, want one naming refused", notReady)
	}
}

// TestCreateTopicsRequestsStayWithinTheControllersBounds: requests hold at most topicsPerCreate
// topics and recordsPerCreate records (a topic, its partitions and configs), every topic is in
// exactly one, and a topic larger than that on its own goes alone.
func TestCreateTopicsRequestsStayWithinTheControllersBounds(t *testing.T) {
	one := "1"
	for _, tc := range []struct {
		name       string
		topics     int
		partitions int32
		configs    int
		requests   int
	}{
		{"1,000 topics of 10 partitions", 1000, 10, 0, 4},
		{"1,000 topics of 10 partitions and 3 configs", 1000, 10, 3, 4},
		{"300 topics of 100 partitions", 300, 100, 0, 7},
		{"3 topics of 3,000 partitions", 3, 3000, 0, 3},
		{"a topic of 20,000 partitions", 1, 20000, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := map[string]*sarama.TopicDetail{}
			for i := range tc.topics {
				d := &sarama.TopicDetail{NumPartitions: tc.partitions, ReplicationFactor: 1, ConfigEntries: map[string]*string{}}
				for c := range tc.configs {
					d.ConfigEntries[fmt.Sprint("c", c)] = &one
				}
				all[fmt.Sprintf("t%05d", i)] = d
			}
			batches := createBatches(all)
			seen := map[string]bool{}
			for _, b := range batches {
				records := 0
				for name, d := range b {
					if seen[name] {
						t.Fatalf("%s in two requests", name)
					}
					seen[name] = true
					records += 1 + int(d.NumPartitions) + len(d.ConfigEntries)
				}
				if len(b) > topicsPerCreate || (records > recordsPerCreate && len(b) > 1) {
					t.Fatalf("a request of %d topics and %d records", len(b), records)
				}
			}
			if len(seen) != tc.topics || len(batches) != tc.requests {
				t.Fatalf("%d topics in %d requests, want %d in %d", len(seen), len(batches), tc.topics, tc.requests)
			}
		})
	}
}
