package mirror

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/preflight"
	"github.com/kmirror/kmirror/pkg/verify"
)

// flow is one direction of an active-active pair, running in the test process with metrics of
// its own.
type flow struct {
	name string
	cfg  *config.Config
	reg  *prometheus.Registry
	run  *running
}

// twoWay returns the configurations of europe→us and us→europe over include: each its own
// consumer group (and so its own offset-map topic, named after its source) on its own source.
func (p *pair) twoWay(policy string, provenance bool, include ...string) (eu2us, us2eu *config.Config) {
	eu2us = p.config(include...)
	eu2us.Consumer.GroupID = "eu2us"
	eu2us.Topics.ReplicationPolicy = policy
	eu2us.Topics.ProvenanceHeader = provenance
	us2eu = p.config(include...)
	us2eu.Consumer.GroupID = "us2eu"
	us2eu.Topics.ReplicationPolicy = policy
	us2eu.Topics.ProvenanceHeader = provenance
	us2eu.Source.Alias, us2eu.Target.Alias = "us", "europe"
	us2eu.Source.Bootstrap, us2eu.Target.Bootstrap = p.us.Addrs(), p.europe.Addrs()
	for _, c := range []*config.Config{eu2us, us2eu} {
		if err := c.Validate(); err != nil {
			p.t.Fatal(err)
		}
	}
	return eu2us, us2eu
}

func startFlow(t *testing.T, name string, cfg *config.Config) *flow {
	t.Helper()
	f := &flow{name: name, cfg: cfg, reg: prometheus.NewRegistry()}
	f.run, _ = startObserved(t, cfg, f.reg)
	return f
}

func (f *flow) counter(t *testing.T, name string) float64 { return counter(t, f.reg, name) }

// siteWriter writes numbered records of one site into topic, spread over its partitions in
// batches, until stopped; it remembers what it wrote, by partition, in order.
type siteWriter struct {
	site    string
	mu      sync.Mutex
	written map[int32][]*kgo.Record
	stop    chan struct{}
	done    chan struct{}
}

func startWriter(t *testing.T, c *embedded.Cluster, topic string, partitions int32) *siteWriter {
	t.Helper()
	w := &siteWriter{site: c.Name, written: map[int32][]*kgo.Record{}, stop: make(chan struct{}), done: make(chan struct{})}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		defer cl.Close()
		base := time.UnixMilli(1_700_000_000_000)
		for i := 0; ; {
			select {
			case <-w.stop:
				return
			default:
			}
			var batch []*kgo.Record
			for range 40 {
				s := fmt.Sprintf("%s-%06d", w.site, i)
				batch = append(batch, &kgo.Record{
					Topic: topic, Partition: int32(i) % partitions, Key: []byte("k-" + s), Value: []byte("value-" + s),
					Headers:   []kgo.RecordHeader{{Key: "n", Value: []byte(s)}, {Key: "site", Value: []byte(w.site)}},
					Timestamp: base.Add(time.Duration(i) * time.Millisecond),
				})
				i++
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.ProduceSync(ctx, batch...).FirstErr()
			cancel()
			if err != nil {
				t.Errorf("write to %s: %v", w.site, err)
				return
			}
			w.mu.Lock()
			for _, r := range batch {
				w.written[r.Partition] = append(w.written[r.Partition], r)
			}
			w.mu.Unlock()
			time.Sleep(15 * time.Millisecond)
		}
	}()
	return w
}

// halt stops the writer and returns how many records it wrote.
func (w *siteWriter) halt() int {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, rs := range w.written {
		n += len(rs)
	}
	return n
}

// shape is a record as a reader sees it: key, value, headers in order, timestamp.
func shape(key, value []byte, headers []kgo.RecordHeader, ts time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q=%q@%d", key, value, ts.UnixMilli())
	for _, h := range headers {
		fmt.Fprintf(&b, " %q:%q", h.Key, h.Value)
	}
	return b.String()
}

// readTopic returns the committed records of topic on c by partition, in log order.
func readTopic(t *testing.T, c *embedded.Cluster, topic string) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[int32][]*kgo.Record{}
	if err := verify.ReadRecords(ctx, c.Addrs(), topic, func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) }, nil); err != nil {
		t.Fatalf("read %s on %s: %v", topic, c.Name, err)
	}
	return out
}

// checkUnion checks that topic on c holds, in each partition, exactly the records written
// there locally (without a provenance header, in the order written) and exactly one copy of
// each record written on the other site into the same partition (in that site's order, each
// with its own headers byte for byte and the provenance header naming the other site after
// them), and nothing else.
func checkUnion(t *testing.T, c *embedded.Cluster, topic string, parts int32, local, remote *siteWriter) {
	t.Helper()
	got := readTopic(t, c, topic)
	if len(got) > int(parts) {
		t.Fatalf("%s %s has records in %d partitions, want at most %d", c.Name, topic, len(got), parts)
	}
	for part := range parts {
		var mine, copies []string
		for _, r := range got[part] {
			n := len(r.Headers)
			if n > 0 && r.Headers[n-1].Key == config.OriginHeader {
				if origin := string(r.Headers[n-1].Value); origin != remote.site {
					t.Fatalf("%s %s/%d offset %d: provenance %q, want %q (a record came back to where it was written)",
						c.Name, topic, part, r.Offset, origin, remote.site)
				}
				copies = append(copies, shape(r.Key, r.Value, r.Headers[:n-1], r.Timestamp))
				continue
			}
			for _, h := range r.Headers {
				if h.Key == config.OriginHeader {
					t.Fatalf("%s %s/%d offset %d: a provenance header not after the record's own: %v", c.Name, topic, part, r.Offset, r.Headers)
				}
			}
			mine = append(mine, shape(r.Key, r.Value, r.Headers, r.Timestamp))
		}
		var wantMine, wantCopies []string
		for _, r := range local.written[part] {
			wantMine = append(wantMine, shape(r.Key, r.Value, r.Headers, r.Timestamp))
		}
		for _, r := range remote.written[part] {
			wantCopies = append(wantCopies, shape(r.Key, r.Value, r.Headers, r.Timestamp))
		}
		if !slices.Equal(mine, wantMine) {
			t.Fatalf("%s %s/%d: %d local records, want the %d written there, in order", c.Name, topic, part, len(mine), len(wantMine))
		}
		if !slices.Equal(copies, wantCopies) {
			t.Fatalf("%s %s/%d: %d copies from %s, want exactly the %d written there, once each and in order",
				c.Name, topic, part, len(copies), remote.site, len(wantCopies))
		}
	}
}

// TestActiveActiveIdentityWithProvenanceCopiesEachRecordOnce: europe→us and us→europe with the
// identity policy and the provenance header, both sites writing into orders at the same time:
// each site's orders ends with its own records and one copy of each of the other's, per
// partition and in order, and nothing goes round. Each flow counts the records it did not send
// back, and commits past them.
func TestActiveActiveIdentityWithProvenanceCopiesEachRecordOnce(t *testing.T) {
	for _, mode := range []string{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) {
			p := newPair(t)
			const parts = 3
			createTopic(t, p.europe, "orders", parts, nil)
			createTopic(t, p.us, "orders", parts, nil)
			eu2usCfg, us2euCfg := p.twoWay(config.PolicyIdentity, true, "orders")
			if mode == config.ExactlyOnce {
				eu2usCfg, us2euCfg = withExactlyOnce(t, eu2usCfg), withExactlyOnce(t, us2euCfg)
			}
			eu2us := startFlow(t, "europe→us", eu2usCfg)
			us2eu := startFlow(t, "us→europe", us2euCfg)

			weu, wus := startWriter(t, p.europe, "orders", parts), startWriter(t, p.us, "orders", parts)
			time.Sleep(3 * time.Second)
			neu, nus := weu.halt(), wus.halt()
			t.Logf("written: europe %d, us %d", neu, nus)

			caughtUp := func() bool {
				return eu2us.counter(t, "kmirror_records_mirrored_total") == float64(neu) &&
					eu2us.counter(t, "kmirror_records_from_target_skipped_total") == float64(nus) &&
					us2eu.counter(t, "kmirror_records_mirrored_total") == float64(nus) &&
					us2eu.counter(t, "kmirror_records_from_target_skipped_total") == float64(neu)
			}
			waitFor(t, "both flows to copy the other's records and leave their own copies out", 60*time.Second, caughtUp)
			ends := func() [2]int64 { return [2]int64{endOffsets(t, p.europe, "orders"), endOffsets(t, p.us, "orders")} }
			settled := ends()
			time.Sleep(2 * time.Second) // a record going round would show up by now
			if now := ends(); now != settled || !caughtUp() {
				t.Fatalf("the topics still move after both flows caught up: end offsets %v, then %v", settled, now)
			}
			if mode == config.AtLeastOnce {
				// The records from the target are committed as done: each group's position is
				// its source topic's end.
				waitFor(t, "the groups' positions at the end of their sources", 10*time.Second, func() bool {
					return sum(committed(t, p.europe, "eu2us", "orders")) == settled[0] &&
						sum(committed(t, p.us, "us2eu", "orders")) == settled[1]
				})
			} else {
				// The positions on each target pass the last record of every source partition,
				// whether it was copied or left out as come from the target (transaction markers
				// after it are no records).
				for _, side := range []struct {
					src, dst *embedded.Cluster
					group    string
				}{{p.europe, p.us, "eu2us-europe-positions"}, {p.us, p.europe, "us2eu-us-positions"}} {
					want := map[int32]int64{}
					for part, rs := range readTopic(t, side.src, "orders") {
						want[part] = rs[len(rs)-1].Offset + 1
					}
					if got := committed(t, side.dst, side.group, "orders"); fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("positions %s on %s: %v, want each source partition's last record + 1: %v", side.group, side.dst.Name, got, want)
					}
				}
			}
			for _, f := range []*flow{eu2us, us2eu} {
				if err := f.run.stop(t); err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
			}
			checkUnion(t, p.europe, "orders", parts, weu, wus)
			checkUnion(t, p.us, "orders", parts, wus, weu)
		})
	}
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestActiveActivePrefixLeavesCyclesOut: europe→us and us→europe with the prefix policy over
// every topic, both sites writing orders: europe ends with orders and us.orders, us with orders
// and europe.orders, each copy exact; neither us.europe.orders nor europe.us.orders is ever
// made, and each flow counts the one topic it left out as a cycle.
func TestActiveActivePrefixLeavesCyclesOut(t *testing.T) {
	p := newPair(t)
	const parts = 3
	createTopic(t, p.europe, "orders", parts, nil)
	createTopic(t, p.us, "orders", parts, nil)
	eu2usCfg, us2euCfg := p.twoWay(config.PolicyPrefix, false, ".*")
	eu2us := startFlow(t, "europe→us", eu2usCfg)
	us2eu := startFlow(t, "us→europe", us2euCfg)
	weu, wus := startWriter(t, p.europe, "orders", parts), startWriter(t, p.us, "orders", parts)
	time.Sleep(3 * time.Second)
	neu, nus := weu.halt(), wus.halt()

	waitFor(t, "both copies complete and both cycles seen", 60*time.Second, func() bool {
		return endOffsets(t, p.us, "europe.orders") == int64(neu) && endOffsets(t, p.europe, "us.orders") == int64(nus) &&
			eu2us.counter(t, "kmirror_cycle_topics_skipped_total") == 1 && us2eu.counter(t, "kmirror_cycle_topics_skipped_total") == 1
	})
	time.Sleep(2 * time.Second) // two refreshes more: a nested copy would be created by now
	for _, f := range []*flow{eu2us, us2eu} {
		if err := f.run.stop(t); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
	}
	for c, want := range map[*embedded.Cluster][]string{p.europe: {"orders", "us.orders"}, p.us: {"europe.orders", "orders"}} {
		if got := userTopics(t, c); !slices.Equal(got, want) {
			t.Fatalf("%s holds topics %v, want %v", c.Name, got, want)
		}
	}
	for _, tc := range []struct {
		src, dst *embedded.Cluster
		topics   map[string]string
	}{{p.europe, p.us, map[string]string{"orders": "europe.orders"}}, {p.us, p.europe, map[string]string{"orders": "us.orders"}}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rep, err := verify.Compare(ctx, tc.src.Addrs(), tc.dst.Addrs(), tc.topics)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Exact() {
			t.Fatalf("%s → %s: %s", tc.src.Name, tc.dst.Name, rep)
		}
	}
	if n := eu2us.counter(t, "kmirror_cycle_topics_skipped_total") + us2eu.counter(t, "kmirror_cycle_topics_skipped_total"); n != 2 {
		t.Fatalf("%v cycle topics counted, want 2 (us.orders by europe→us, europe.orders by us→europe, once each)", n)
	}
}

// userTopics lists the topics of c that do not start with "__", sorted.
func userTopics(t *testing.T, c *embedded.Cluster) []string {
	t.Helper()
	td, err := admin(t, c).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range td.Names() {
		if !strings.HasPrefix(name, "__") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestIdentityWithoutProvenanceLoopsAndValidateSaysSo is the negative control: the same pair
// with the identity policy and no provenance header sends every record round and round (the
// topics grow with no one writing), and validate --connect, run for one flow while the other
// runs, fails naming the loop and the fix. With the header, the check is not needed (and not
// made).
func TestIdentityWithoutProvenanceLoopsAndValidateSaysSo(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	createTopic(t, p.us, "orders", 1, nil)
	eu2usCfg, us2euCfg := p.twoWay(config.PolicyIdentity, false, "orders")
	// run refuses a flow that sees the other way's offset map; to make the loop this control
	// needs, europe→us keeps no map and has copied (so passed its own check) before us→europe
	// starts.
	eu2usCfg.OffsetMap.Enabled = false
	produce(t, p.europe, numbered("orders", 1, 0, 10)...)
	eu2us := startFlow(t, "europe→us", eu2usCfg)
	waitFor(t, "europe→us to copy the ten records", 30*time.Second, func() bool {
		return endOffsets(t, p.us, "orders") >= 10
	})
	us2eu := startFlow(t, "us→europe", us2euCfg)
	waitFor(t, "the ten records to come back to europe again and again", 30*time.Second, func() bool {
		return endOffsets(t, p.europe, "orders") >= 100
	})
	for _, f := range []*flow{eu2us, us2eu} {
		f.run.cancel() // stop the runaway at once; each drains and commits
	}
	for _, f := range []*flow{eu2us, us2eu} {
		if err := f.run.stop(t); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if preflight.Print(&out, preflight.Run(ctx, eu2usCfg)) {
		t.Fatalf("validate --connect passed for europe→us, identity without provenance, with us→europe running:\n%s", out.String())
	}
	for _, want := range []string{"no mirror back (identity)", "FAILED", "us→europe", "__kmirror.offset-map.us",
		"topics.provenance_header: true", "distinct clusters"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate --connect output lacks %q:\n%s", want, out.String())
		}
	}
	eu2usCfg.Topics.ProvenanceHeader = true
	out.Reset()
	if !preflight.Print(&out, preflight.Run(ctx, eu2usCfg)) || strings.Contains(out.String(), "no mirror back") {
		t.Fatalf("validate --connect with the provenance header:\n%s", out.String())
	}
}

// TestRunRefusesAFlowThatLoopsWithTheReverseFlow: with us→europe running (identity, no
// provenance header), Run of europe→us with the same settings returns the error validate
// --connect reports (the reverse flow named, and the fix) before it copies or creates anything.
func TestRunRefusesAFlowThatLoopsWithTheReverseFlow(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	createTopic(t, p.us, "orders", 1, nil)
	eu2usCfg, us2euCfg := p.twoWay(config.PolicyIdentity, false, "orders")
	produce(t, p.europe, numbered("orders", 1, 0, 5)...)
	produce(t, p.us, numbered("orders", 1, 100, 5)...)
	start(t, us2euCfg)
	waitFor(t, "us→europe to copy its 5 records and write its offset map", 30*time.Second, func() bool {
		return endOffsets(t, p.europe, "orders") == 10 && endOffsets(t, p.europe, config.OffsetMapPrefix+"us") > 0
	})
	topicsOf := func(c *embedded.Cluster) []string { // the offset maps too
		td, err := admin(t, c).ListTopics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return td.Names()
	}
	beforeEU, beforeUS := topicsOf(p.europe), topicsOf(p.us)

	r := start(t, eu2usCfg)
	var err error
	select {
	case err = <-r.done:
		r.done = nil
	case <-time.After(30 * time.Second):
		t.Fatalf("europe→us runs beside us→europe, identity without the header: europe holds %d, us %d records of orders",
			endOffsets(t, p.europe, "orders"), endOffsets(t, p.us, "orders"))
	}
	for _, want := range []string{"a kmirror copies us→europe right now", "__kmirror.offset-map.us", "topics.provenance_header: true on both flows"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v, want it to say %q", err, want)
		}
	}
	time.Sleep(2 * time.Second) // what a flow that started after all would copy meanwhile
	if eu, us := endOffsets(t, p.europe, "orders"), endOffsets(t, p.us, "orders"); eu != 10 || us != 5 {
		t.Fatalf("orders holds %d records on europe and %d on us after the refusal, want 10 and 5", eu, us)
	}
	if eu, us := topicsOf(p.europe), topicsOf(p.us); !slices.Equal(eu, beforeEU) || !slices.Equal(us, beforeUS) {
		t.Fatalf("topics after the refusal: europe %v (was %v), us %v (was %v)", eu, beforeEU, us, beforeUS)
	}
}

// TestClusterMirroredIntoItselfUnderTwoNamesIsRefused: validation cannot see that two bootstrap
// lists reach one cluster; the cluster IDs can. The mirror refuses to start, whatever the policy,
// and validate --connect fails the same way.
func TestClusterMirroredIntoItselfUnderTwoNamesIsRefused(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	produce(t, p.europe, numbered("orders", 1, 0, 10)...)
	for _, policy := range []string{config.PolicyIdentity, config.PolicyPrefix} {
		cfg := p.config(".*")
		cfg.Topics.ReplicationPolicy = policy
		cfg.Target.Alias = "eu"
		cfg.Target.Bootstrap = nil
		for _, a := range p.europe.Addrs() { // the same brokers, spelt another way
			cfg.Target.Bootstrap = append(cfg.Target.Bootstrap, strings.Replace(a, "127.0.0.1", "[::ffff:127.0.0.1]", 1))
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: validation caught it after all (the test needs another spelling): %v", policy, err)
		}
		r := start(t, cfg)
		var err error
		select {
		case err = <-r.done:
			r.done = nil
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the mirror runs from a cluster into itself", policy)
		}
		for _, want := range []string{"same Kafka cluster", "cluster ID kmirror-europe", "target.bootstrap"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: Run = %v, want it to mention %q", policy, err, want)
			}
		}
		if got := userTopics(t, p.europe); !slices.Equal(got, []string{"orders"}) {
			t.Fatalf("%s: europe holds %v after the refusal, want orders alone", policy, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out bytes.Buffer
		ok := preflight.Print(&out, preflight.Run(ctx, cfg))
		cancel()
		if ok || !strings.Contains(out.String(), "distinct clusters") || !strings.Contains(out.String(), "same cluster") {
			t.Fatalf("%s: validate --connect:\n%s", policy, out.String())
		}
	}
}
