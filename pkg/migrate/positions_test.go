package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
)

// mm2Key is a key MirrorSourceConnector writes to the Connect offsets topic (JsonConverter,
// schemas off), as Kafka 4.3.1's MirrorUtils.wrapPartition makes it.
func mm2Key(connector, cluster, topic string, p int) string {
	return fmt.Sprintf(`["%s",{"cluster":"%s","partition":%d,"topic":"%s"}]`, connector, cluster, p, topic)
}

func TestDecodeOffsetRecord(t *testing.T) {
	tests := []struct {
		name, key, value string
		ok, tombstone    bool
		offset           int64
		err              string
	}{
		{name: "source connector", key: mm2Key("MirrorSourceConnector", "europe", "orders", 2), value: `{"offset":41}`, ok: true, offset: 41},
		{name: "Strimzi's connector name", key: mm2Key("europe->us.MirrorSourceConnector", "europe", "orders", 0), value: `{"offset":9007199254740993}`, ok: true, offset: 9007199254740993},
		{name: "tombstone", key: mm2Key("MirrorSourceConnector", "europe", "orders", 2), ok: true, tombstone: true},
		{name: "checkpoint connector", key: `["MirrorCheckpointConnector",{"group":"billing","partition":0,"topic":"orders"}]`, value: `{"offset":3}`},
		{name: "heartbeat connector", key: `["MirrorHeartbeatConnector",{"sourceClusterAlias":"europe","targetClusterAlias":"us"}]`, value: `{"offset":0}`},
		{name: "not JSON", key: `orders-0`, value: `41`},
		{name: "bad value", key: mm2Key("MirrorSourceConnector", "europe", "orders", 1), value: `{"position":3}`, ok: true, err: `is not MirrorMaker 2's {"offset":N}`},
		{name: "fractional offset", key: mm2Key("MirrorSourceConnector", "europe", "orders", 1), value: `{"offset":3.5}`, ok: true, err: "not a whole number"},
		{name: "bad partition", key: `["MirrorSourceConnector",{"cluster":"europe","partition":-4,"topic":"orders"}]`, value: `{"offset":3}`, err: "not a partition number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var value []byte
			if tc.value != "" {
				value = []byte(tc.value)
			}
			k, off, tomb, ok, err := DecodeOffsetRecord([]byte(tc.key), value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ok != tc.ok || tomb != tc.tombstone || off != tc.offset {
				t.Fatalf("got %+v offset %d tombstone %v ok %v err %v", k, off, tomb, ok, err)
			}
		})
	}
}

func TestPositionsLatestWinsTombstonesDrop(t *testing.T) {
	var l Latest
	add := func(connector, cluster string, p int, value string) {
		var v []byte
		if value != "" {
			v = []byte(value)
		}
		k, off, tomb, ok, err := DecodeOffsetRecord([]byte(mm2Key(connector, cluster, "orders", p)), v)
		if err != nil || !ok {
			t.Fatal(err)
		}
		l.Add(k, off, tomb)
	}
	add("MirrorSourceConnector", "europe", 0, `{"offset":3}`)
	add("MirrorSourceConnector", "europe", 0, `{"offset":9}`)
	add("MirrorSourceConnector", "europe", 1, `{"offset":4}`)
	add("MirrorSourceConnector", "europe", 1, "")              // reset: no position
	add("MirrorSourceConnector", "europe", 2, `{"offset":-1}`) // Connect's "uncommitted"
	add("MirrorSourceConnector", "asia", 0, `{"offset":100}`)  // another source cluster
	got, err := l.Positions("europe", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Position{{Topic: "orders", Partition: 0, Copied: 9, Next: 10, Connector: "MirrorSourceConnector"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("positions %+v, want %+v", got, want)
	}

	add("old.MirrorSourceConnector", "europe", 0, `{"offset":5}`)
	if _, err := l.Positions("europe", ""); err == nil || !strings.Contains(err.Error(), "orders/0") || !strings.Contains(err.Error(), "--connector") {
		t.Fatalf("two connectors for one partition: error %v", err)
	}
	got, err = l.Positions("europe", "old.MirrorSourceConnector")
	if err != nil || len(got) != 1 || got[0].Next != 6 {
		t.Fatalf("--connector old.MirrorSourceConnector: %+v, %v", got, err)
	}
}

// TestSeedFromOffsetsTopic reads an offsets topic on a fake target and seeds the group on a fake
// source: each partition at the offset after MirrorMaker 2's last copy, none beyond the source's
// end, none for a partition it recorded nothing for; a second seed is refused unless forced.
func TestSeedFromOffsetsTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, tgt := startFake(t, "europe"), startFake(t, "us")
	produce(t, src, "orders", 3, map[int32][]string{0: repeat("a", 10), 1: repeat("b", 5)})
	const offsetsTopic = "mm2-offsets.europe.internal"
	records := map[int32][]string{}
	for i, kv := range [][2]string{
		{mm2Key("MirrorSourceConnector", "europe", "orders", 0), `{"offset":3}`},
		{mm2Key("MirrorSourceConnector", "europe", "orders", 0), `{"offset":6}`},
		{mm2Key("MirrorSourceConnector", "europe", "orders", 1), `{"offset":4}`},
		{`["MirrorCheckpointConnector",{"group":"billing","partition":0,"topic":"orders"}]`, `{"offset":1}`},
		{mm2Key("MirrorSourceConnector", "europe", "gone", 0), `{"offset":1}`},
	} {
		records[int32(i%2)] = append(records[int32(i%2)], kv[0]+"\x00"+kv[1])
	}
	produce(t, tgt, offsetsTopic, 2, records)

	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = src.Addrs(), tgt.Addrs()
	cfg.Topics.Include, cfg.Topics.ReplicationPolicy, cfg.Consumer.GroupID = []string{"orders"}, config.PolicyPrefix, "kmirror-europe-us"
	sc, tc := client(t, "source", cfg.Source), client(t, "target", cfg.Target)

	latest, err := ReadOffsetsTopic(ctx, tc, offsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	positions, err := latest.Positions("europe", "")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanSeed(ctx, sc, tc, &cfg, positions)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	for _, r := range plan.Rows {
		if r.TargetTopic != "europe.orders" {
			t.Errorf("orders/%d maps to %q", r.Partition, r.TargetTopic)
		}
		got[r.Partition] = r.Seed
	}
	if fmt.Sprint(got) != "map[0:7 1:5 2:-1]" || len(plan.Skipped) != 1 || !strings.Contains(plan.Skipped[0], "gone/0") {
		t.Fatalf("plan %v, skipped %v", got, plan.Skipped)
	}
	if err := Seed(ctx, sc, tc, plan, false); err != nil {
		t.Fatal(err)
	}
	if c := committed(t, src, "kmirror-europe-us"); fmt.Sprint(c) != "map[0:7 1:5]" {
		t.Fatalf("committed %v, want map[0:7 1:5]", c)
	}

	again, err := PlanSeed(ctx, sc, tc, &cfg, positions)
	if err != nil {
		t.Fatal(err)
	}
	if err := Seed(ctx, sc, tc, again, false); err == nil || !strings.Contains(err.Error(), "already has committed offsets") {
		t.Fatalf("a second seed: error %v, want a refusal", err)
	}
	if err := Seed(ctx, sc, tc, again, true); err != nil {
		t.Fatalf("--force: %v", err)
	}

	// A position past the source's end is refused, never clamped.
	beyond := append([]Position{}, positions...)
	for i := range beyond {
		if beyond[i].Topic == "orders" && beyond[i].Partition == 0 {
			beyond[i].Copied, beyond[i].Next = 10, 11 // orders/0 holds offsets 0-9
		}
	}
	if _, err := PlanSeed(ctx, sc, tc, &cfg, beyond); err == nil || !strings.Contains(err.Error(), "beyond the source's end for orders/0") {
		t.Fatalf("a position beyond the end: error %v", err)
	}
}

func startFake(t *testing.T, name string) *embedded.Cluster {
	t.Helper()
	c, err := embedded.Start(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func repeat(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d\x00v", prefix, i)
	}
	return out
}

// produce creates topic with partitions and writes "key\x00value" records to each partition.
func produce(t *testing.T, c *embedded.Cluster, topic string, partitions int32, records map[int32][]string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for p, rs := range records {
		for _, r := range rs {
			k, v, _ := strings.Cut(r, "\x00")
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte(k), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func client(t *testing.T, key string, cc config.Cluster) sarama.Client {
	t.Helper()
	c, err := cluster.New(key, cc)
	if err != nil {
		t.Fatal(err)
	}
	sc := c.Config("test")
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Return.Errors = true
	cl, err := sarama.NewClient(cc.Bootstrap, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func committed(t *testing.T, c *embedded.Cluster, group string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
	return out
}
