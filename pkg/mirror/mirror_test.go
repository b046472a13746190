package mirror

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
)

// TestEveryRecordShapeRoundTripsByteIdentical mirrors records with null and empty keys and
// values, tombstones, many headers (null and empty values among them) and old timestamps, and
// compares every field on the target.
func TestEveryRecordShapeRoundTripsByteIdentical(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "shapes", 3, nil)
	base := time.UnixMilli(1_600_000_000_123)
	var many []kgo.RecordHeader
	for i := 0; i < 40; i++ {
		many = append(many, kgo.RecordHeader{Key: "h" + strings.Repeat("x", i), Value: []byte{byte(i), 0, 255}})
	}
	records := []*kgo.Record{
		{Key: nil, Value: []byte("null key")},
		{Key: []byte{}, Value: []byte("empty key")},
		{Key: []byte("tombstone"), Value: nil},
		{Key: []byte("empty value"), Value: []byte{}},
		{Key: nil, Value: nil},
		{Key: []byte("headers"), Value: []byte("v"), Headers: many},
		{Key: []byte("null header"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "n", Value: nil}, {Key: "e", Value: []byte{}}, {Key: "n", Value: []byte("dup key")}}},
		{Key: []byte("binary"), Value: []byte{0, 1, 2, 3, 0xff, 0xfe}},
		{Key: []byte("big"), Value: []byte(strings.Repeat("z", 200_000))},
	}
	for i, r := range records {
		r.Topic = "shapes"
		r.Partition = int32(i % 3)
		r.Timestamp = base.Add(time.Duration(i) * time.Hour)
	}
	produce(t, p.europe, records...)

	m := start(t, p.config("shapes"))
	waitFor(t, "all records on the target", 30*time.Second, func() bool {
		return endOffsets(t, p.us, "shapes") == int64(len(records))
	})
	if err := m.stop(t); err != nil {
		t.Fatalf("mirror: %v", err)
	}

	// Field by field, not just by digest, so a failure says what changed.
	got := make(map[string]*kgo.Record)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(p.us.Addrs()...), kgo.ConsumeTopics("shapes"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	for n < len(records) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %d of %d records", n, len(records))
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[describe(r.Key)+"|"+describe(r.Value)] = r
			n++
		})
	}
	for _, want := range records {
		r, ok := got[describe(want.Key)+"|"+describe(want.Value)]
		if !ok {
			t.Errorf("record key=%s value=%.20s missing or changed on the target", describe(want.Key), describe(want.Value))
			continue
		}
		if (r.Key == nil) != (want.Key == nil) || (r.Value == nil) != (want.Value == nil) {
			t.Errorf("null-ness changed: key %v→%v value %v→%v", want.Key == nil, r.Key == nil, want.Value == nil, r.Value == nil)
		}
		if r.Partition != want.Partition {
			t.Errorf("%s: partition %d, want %d", describe(want.Key), r.Partition, want.Partition)
		}
		if !r.Timestamp.Equal(want.Timestamp) {
			t.Errorf("%s: timestamp %v, want %v", describe(want.Key), r.Timestamp, want.Timestamp)
		}
		if len(r.Headers) != len(want.Headers) {
			t.Fatalf("%s: %d headers, want %d", describe(want.Key), len(r.Headers), len(want.Headers))
		}
		for i, h := range want.Headers {
			g := r.Headers[i]
			if g.Key != h.Key || string(g.Value) != string(h.Value) || (g.Value == nil) != (h.Value == nil) {
				t.Errorf("%s: header %d = %q:%v, want %q:%v", describe(want.Key), i, g.Key, g.Value, h.Key, h.Value)
			}
		}
	}
	if rep := compare(t, p, map[string]string{"shapes": "shapes"}); !rep.Exact() {
		t.Fatalf("digest comparison: %s", rep)
	}
}

func describe(b []byte) string {
	switch {
	case b == nil:
		return "<null>"
	case len(b) == 0:
		return "<empty>"
	default:
		return string(b)
	}
}

// TestRestartResumesFromCommittedOffsets stops the mirror, produces more, starts a new mirror in
// the same group and expects every record exactly once: the first run committed what it mirrored.
func TestRestartResumesFromCommittedOffsets(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 6, nil)
	produce(t, p.europe, numbered("orders", 6, 0, 3000)...)
	cfg := p.config("orders")

	first := start(t, cfg)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 3000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, o := range committed(t, p.europe, "kmirror", "orders") {
		total += o
	}
	if total != 3000 {
		t.Fatalf("committed offsets sum to %d after a clean stop, want 3000", total)
	}

	produce(t, p.europe, numbered("orders", 6, 3000, 2000)...)
	second := start(t, cfg)
	waitFor(t, "second batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") >= 5000 })
	time.Sleep(500 * time.Millisecond) // give a wrong re-read time to show up as duplicates
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"orders": "orders"})
	if !rep.Exact() {
		t.Fatalf("after a restart: %s", rep)
	}
}

// TestTwoInstancesSplitPartitionsAndALeavingMemberLosesNothing runs two mirrors in one group,
// checks both took partitions, stops one mid-stream and expects nothing lost.
func TestTwoInstancesSplitPartitionsAndALeavingMemberLosesNothing(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "events", 8, nil)
	cfg := p.config("events")
	a := start(t, cfg)
	b := start(t, cfg)

	produce(t, p.europe, numbered("events", 8, 0, 4000)...)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "events") >= 4000 })

	waitFor(t, "both members to own partitions", 30*time.Second, func() bool {
		groups, err := admin(t, p.europe).DescribeGroups(context.Background(), "kmirror")
		if err != nil {
			return false
		}
		g := groups["kmirror"]
		if len(g.Members) != 2 {
			return false
		}
		for _, mem := range g.Members {
			assigned, _ := mem.Assigned.AsConsumer()
			n := 0
			if assigned != nil {
				for _, tp := range assigned.Topics {
					n += len(tp.Partitions)
				}
			}
			if n == 0 {
				return false
			}
		}
		return true
	})

	produceDone := make(chan struct{})
	go func() {
		defer close(produceDone)
		for i := 0; i < 10; i++ {
			produce(t, p.europe, numbered("events", 8, 4000+i*400, 400)...)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(150 * time.Millisecond)
	if err := a.stop(t); err != nil {
		t.Fatalf("stopping one member: %v", err)
	}
	<-produceDone
	waitFor(t, "the survivor to mirror everything", 60*time.Second, func() bool { return endOffsets(t, p.us, "events") >= 8000 })
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"events": "events"})
	_, _, lost, dups, _ := rep.Totals()
	t.Logf("after a member left: %s", rep)
	if !rep.Complete() || lost != 0 {
		t.Fatalf("records lost or reordered when a member left: %s", rep)
	}
	_ = dups // at-least-once: duplicates are allowed, and counted above
}

// TestProduceFailureStopsWithoutCommittingPastIt makes the target refuse writes to one partition
// with a non-retriable error, and expects the mirror to exit with an error naming the record,
// having committed nothing at or beyond it; once the fault is gone a new run mirrors everything.
func TestProduceFailureStopsWithoutCommittingPastIt(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "payments", 2, nil)
	produce(t, p.europe, numbered("payments", 2, 0, 200)...)

	// Partition 1 of the target refuses every produce; partition 0 works.
	fake := p.us.Fake()
	fake.KeepControl()
	fake.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		refuse := false
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition == 1 {
					refuse = true
				}
			}
		}
		if !refuse {
			return nil, nil, false
		}
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 87 // INVALID_RECORD: not retriable
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	cfg := p.config("payments")
	m := start(t, cfg)
	var runErr error
	select {
	case runErr = <-m.done:
		m.done = nil
	case <-time.After(30 * time.Second):
		t.Fatal("mirror kept running although a partition cannot be written")
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "payments/1") || !strings.Contains(runErr.Error(), "offset") {
		t.Fatalf("Run = %v, want an error naming payments/1 and the offset", runErr)
	}
	offs := committed(t, p.europe, "kmirror", "payments")
	if got := offs[1]; got > 0 {
		t.Fatalf("committed offset %d for the failing partition, want none", got)
	}
	if got := offs[0]; got != 100 {
		t.Logf("partition 0 committed %d of 100 before the stop", got)
	}

	fake.DropControl()
	m2 := start(t, cfg)
	waitFor(t, "everything mirrored after the fault cleared", 30*time.Second, func() bool { return endOffsets(t, p.us, "payments") >= 200 })
	if err := m2.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"payments": "payments"})
	if !rep.Complete() {
		t.Fatalf("after the fault cleared: %s", rep)
	}
}

// TestNewTopicsAndPartitionsAreDiscovered creates a topic and grows another while the mirror
// runs, and expects both mirrored without a restart, the target grown to match.
func TestNewTopicsAndPartitionsAreDiscovered(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "logs.app", 2, nil)
	produce(t, p.europe, numbered("logs.app", 2, 0, 100)...)
	m := start(t, p.config("logs\\..*"))
	waitFor(t, "first topic mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "logs.app") == 100 })

	createTopic(t, p.europe, "logs.db", 3, nil)
	produce(t, p.europe, numbered("logs.db", 3, 0, 90)...)
	createTopic(t, p.europe, "metrics.cpu", 1, nil) // not included
	produce(t, p.europe, numbered("metrics.cpu", 1, 0, 10)...)

	resp, err := admin(t, p.europe).CreatePartitions(context.Background(), 2, "logs.app")
	if err != nil || resp["logs.app"].Err != nil {
		t.Fatalf("grow logs.app: %v %v", err, resp["logs.app"].Err)
	}
	produce(t, p.europe, numbered("logs.app", 4, 100, 100)...)

	waitFor(t, "new topic and new partitions mirrored", 60*time.Second, func() bool {
		return endOffsets(t, p.us, "logs.db") == 90 && endOffsets(t, p.us, "logs.app") == 200
	})
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	details, err := admin(t, p.us).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["logs.app"].Partitions); n != 4 {
		t.Fatalf("target logs.app has %d partitions, want 4 like the source", n)
	}
	if details.Has("metrics.cpu") {
		t.Fatal("metrics.cpu does not match the include pattern but was mirrored")
	}
	rep := compare(t, p, map[string]string{"logs.app": "logs.app", "logs.db": "logs.db"})
	if !rep.Exact() {
		t.Fatalf("%s", rep)
	}
}

// TestTargetTopicCreatedWithSourceConfigsAndPrefixPolicy checks the prefix policy's naming, the
// partition count and the copied configs, and that internal topics are never mirrored.
func TestTargetTopicCreatedWithSourceConfigsAndPrefixPolicy(t *testing.T) {
	p := newPair(t)
	compact, retention, secret := "compact", "3600000", "1"
	createTopic(t, p.europe, "users", 5, map[string]*string{
		"cleanup.policy": &compact, "retention.ms": &retention, "preallocate": &secret,
	})
	produce(t, p.europe, numbered("users", 5, 0, 50)...)
	cfg := p.config(".*")
	cfg.Topics.ReplicationPolicy = config.PolicyPrefix
	m := start(t, cfg)
	waitFor(t, "prefixed topic mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "europe.users") == 50 })
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	adm := admin(t, p.us)
	details, err := adm.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["europe.users"].Partitions); n != 5 {
		t.Fatalf("europe.users has %d partitions, want 5", n)
	}
	for name := range details {
		if strings.HasPrefix(name, "europe.__") {
			t.Fatalf("internal topic mirrored as %s", name)
		}
	}
	rc, err := adm.DescribeTopicConfigs(context.Background(), "europe.users")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["cleanup.policy"] != "compact" || got["retention.ms"] != "3600000" {
		t.Fatalf("target configs cleanup.policy=%q retention.ms=%q, want compact and 3600000", got["cleanup.policy"], got["retention.ms"])
	}
	if rep := compare(t, p, map[string]string{"users": "europe.users"}); !rep.Exact() {
		t.Fatalf("%s", rep)
	}
}

// TestOversizedRecordPolicies sends a record larger than the target topic accepts: under fail the
// mirror stops with an error naming topic, partition, offset, size and limit; under skip it is
// counted and the rest of the partition is mirrored.
func TestOversizedRecordPolicies(t *testing.T) {
	for _, mode := range []string{config.AtLeastOnce, config.ExactlyOnce} {
		for _, policy := range []string{config.RefusedFail, config.RefusedSkip} {
			t.Run(mode+"/"+policy, func(t *testing.T) { oversizedRecordPolicy(t, mode, policy) })
		}
	}
}

// oversizedRecordPolicy: a record larger than its target topic allows, under policy and the
// delivery mode. fail stops naming the record, with the position (the source group's, or in
// exactly_once the one stored on the target) never past it; skip mirrors the rest, the position
// passing the skipped record (in exactly_once inside a transaction).
func oversizedRecordPolicy(t *testing.T, mode, policy string) {
	p := newPair(t)
	small := "10000"
	createTopic(t, p.europe, "blobs", 1, nil)
	createTopic(t, p.us, "blobs", 1, map[string]*string{"max.message.bytes": &small})
	recs := numbered("blobs", 1, 0, 5)
	recs[2].Value = []byte(strings.Repeat("x", 50_000))
	produce(t, p.europe, recs...)

	cfg := p.config("blobs")
	cfg.Producer.RefusedPolicy = policy
	position := func() int64 { return committed(t, p.europe, "kmirror", "blobs")[0] }
	if mode == config.ExactlyOnce {
		cfg = withExactlyOnce(t, cfg)
		position = func() int64 { return positionsSum(t, p, "blobs") }
	}
	m := start(t, cfg)
	if policy == config.RefusedFail {
		var err error
		select {
		case err = <-m.done:
			m.done = nil
		case <-time.After(30 * time.Second):
			t.Fatal("mirror did not stop on an oversized record")
		}
		for _, want := range []string{"blobs/0", "offset 2", "max.message.bytes 10000"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run = %v, want it to mention %q", err, want)
			}
		}
		if got := position(); got > 2 {
			t.Fatalf("position %d, past the oversized record at offset 2", got)
		}
		if mode == config.ExactlyOnce {
			// The records before it were committed in their transaction, once.
			if got := position(); got != 2 {
				t.Fatalf("position on the target %d, want 2", got)
			}
			if _, tgt, _, dups, _ := compare(t, p, map[string]string{"blobs": "blobs"}).Totals(); tgt != 2 || dups != 0 {
				t.Fatalf("target holds %d records (%d duplicates), want the 2 before the refused one", tgt, dups)
			}
		}
		return
	}
	waitFor(t, "the position passes the skipped record", 30*time.Second, func() bool { return position() == 5 })
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"blobs": "blobs"})
	if _, tgt, lost, dups, _ := rep.Totals(); tgt != 4 || lost != 1 || dups != 0 {
		t.Fatalf("skip policy: target %d records, lost %d, duplicates %d; want 4, exactly the skipped one, none", tgt, lost, dups)
	}
}

// TestADistantSourceIsFetchedWithWholeBatches: with the source counted as distant
// (consumer.distant_rtt below any round trip) the consumer group fetches each partition with
// consumer.distant_fetch_partition_bytes, or the largest max.message.bytes of the mirrored
// topics when that is larger, and mirrors as before; a near source (kfake on loopback, the
// default distant_rtt) keeps consumer.fetch_partition_bytes.
func TestADistantSourceIsFetchedWithWholeBatches(t *testing.T) {
	def := config.Default().Consumer
	const large = 6 << 20 // above the default distant_fetch_partition_bytes
	for _, tc := range []struct {
		name     string
		distant  time.Duration
		maxBatch int
		want     int32
	}{
		{"near", def.DistantRTT, large, def.FetchPartitionBytes},
		{"distant, batches above the distant size", time.Nanosecond, large, large},
		{"distant, batches below the distant size", time.Nanosecond, 2 << 20, def.DistantFetchPartitionBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			size := fmt.Sprint(tc.maxBatch)
			createTopic(t, p.europe, "orders", 3, map[string]*string{"max.message.bytes": &size})
			createTopic(t, p.europe, "small", 1, nil)
			produce(t, p.europe, numbered("orders", 3, 0, 300)...)
			cfg := p.config("orders", "small")
			cfg.Consumer.DistantRTT = tc.distant
			var mu sync.Mutex
			var fetch int32
			r := startWith(t, cfg, Options{Log: zaptest.NewLogger(t), SaramaClients: func(name string, c *sarama.Config) {
				if name == "consumer" {
					mu.Lock()
					fetch = c.Consumer.Fetch.Default
					mu.Unlock()
				}
			}})
			waitFor(t, "orders mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 300 })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if fetch != tc.want {
				t.Errorf("the consumer group fetches %d bytes per partition, want %d", fetch, tc.want)
			}
			if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
				t.Fatalf("mirrored: %s", rep)
			}
		})
	}
}

// TestADistantTargetGetsTheDistantLinger: with the target counted as distant
// (consumer.distant_rtt below any round trip) batches linger producer.distant_linger, and the
// start-up log says so with the round trip; a near target (kfake on loopback, the default
// distant_rtt) keeps producer.linger and logs nothing of it. Either way the topic is mirrored
// exactly.
func TestADistantTargetGetsTheDistantLinger(t *testing.T) {
	def := config.Default()
	for _, tc := range []struct {
		name    string
		distant time.Duration
		logged  bool
	}{
		{"near", def.Consumer.DistantRTT, false},
		{"distant", time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			createTopic(t, p.europe, "orders", 2, nil)
			produce(t, p.europe, numbered("orders", 2, 0, 200)...)
			cfg := p.config("orders")
			cfg.Consumer.DistantRTT = tc.distant
			core, logs := zapobserver.New(zapcore.InfoLevel)
			r := startWith(t, cfg, Options{Log: zap.New(core)})
			waitFor(t, "orders mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 200 })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			said := logs.FilterMessageSnippet("the target is distant").All()
			if got := len(said) > 0; got != tc.logged {
				t.Fatalf("logged the distant target: %v, want %v", got, tc.logged)
			}
			if tc.logged {
				fields := said[0].ContextMap()
				if fields["linger"] != def.Producer.DistantLinger || fields["configured"] != def.Producer.Linger {
					t.Errorf("the distant target's log says %v; want linger %s for the configured %s",
						fields, def.Producer.DistantLinger, def.Producer.Linger)
				}
			}
			if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
				t.Fatalf("mirrored: %s", rep)
			}
		})
	}
}
