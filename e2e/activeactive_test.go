//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/config"
)

// Active-active: applications in europe and in us each write locally and read everything, and
// two kmirror processes copy europe→us and us→europe, each with its own configuration, consumer
// group (on its own source) and offset-map topic (on its own target, named after its source).
// Neither may loop: after the writers stop and the mirrors caught up, each cluster holds exactly
// the union of what was written, per partition, and nothing moves any more.

const (
	aaPartitions = 3
	aaWriteFor   = 20 * time.Second
	aaPerSecond  = 600 // per site
	aaStable     = 10 * time.Second
)

// freeAddr returns a loopback address nothing listens on, for a kmirror's telemetry.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// aaFlow is one kmirror process of the pair.
type aaFlow struct {
	name      string
	cfgPath   string
	telemetry string
	k         *kmirror
}

// aaConfig is the configuration of a flow from the cluster srcAlias at srcBoot to dstAlias at
// dstBoot: its own group and telemetry address; topics holds extra lines of the topics section.
func aaConfig(srcAlias string, srcBoot []string, dstAlias string, dstBoot []string, group, telemetry, include, topics string) string {
	return fmt.Sprintf(`
source:
  alias: %s
  bootstrap: [%s]
  metadata_refresh: 2s
target:
  alias: %s
  bootstrap: [%s]
topics:
  include: [%q]
  refresh_interval: 2s
%sconsumer:
  group_id: %s
  session_timeout: 10s
  heartbeat_interval: 1s
commit:
  interval: 500ms
telemetry:
  listen: %q
log:
  format: json
`, srcAlias, quoted(srcBoot), dstAlias, quoted(dstBoot), include, topics, group, telemetry)
}

// quoted writes a YAML flow list of strings, each quoted ("[::ffff:127.0.0.1]:9092" has brackets).
func quoted(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// startFlows starts europe→us and us→europe over include, with the extra topics lines, and
// waits until both are ready.
func startFlows(t *testing.T, europe, us *cluster, include, topics string) (eu2us, us2eu *aaFlow) {
	t.Helper()
	var flows []*aaFlow
	for _, f := range []struct {
		name     string
		src, dst *cluster
		group    string
	}{{"europe→us", europe, us, "kmirror-eu2us"}, {"us→europe", us, europe, "kmirror-us2eu"}} {
		addr := freeAddr(t)
		body := aaConfig(f.src.name, f.src.bootstrap, f.dst.name, f.dst.bootstrap, f.group, addr, include, topics)
		fl := &aaFlow{name: f.name, cfgPath: writeConfig(t, body), telemetry: addr}
		fl.k = startKmirror(t, fl.cfgPath)
		flows = append(flows, fl)
	}
	for _, fl := range flows {
		waitFor(t, fl.name+" ready", 2*time.Minute, func() bool {
			if done, how := fl.k.exited(); done {
				t.Fatalf("%s: %s\n%s", fl.name, how, fl.k.errors())
			}
			return httpStatus("http://"+fl.telemetry+"/readyz") == 200
		})
	}
	return flows[0], flows[1]
}

var probe = http.Client{Timeout: 5 * time.Second}

func httpStatus(url string) int {
	resp, err := probe.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// groupOffsets returns group's committed offsets of topic on c.
func (c *cluster) groupOffsets(t *testing.T, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := c.admin(t).FetchOffsets(ctx, group)
	if err != nil {
		return nil
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// metric returns the sum of a metric's samples in a scrape of the flow (0 when absent).
func (f *aaFlow) metric(t *testing.T, name string) float64 {
	return f.metricOf(t, name, "")
}

// metricOf is metric over the series whose labels contain label (e.g. `topic="orders"`); ""
// sums every series.
func (f *aaFlow) metricOf(t *testing.T, name, label string) float64 {
	t.Helper()
	var sum float64
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	for _, m := range re.FindAllStringSubmatch(scrape(t, "http://"+f.telemetry+"/metrics"), -1) {
		if label != "" && !strings.Contains(m[1], label) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// siteLoad writes numbered records into topic on one site with franz-go, each to partition
// i%aaPartitions, at a steady rate until stopped, and keeps what the cluster acknowledged, by
// partition, in offset order: the exact record of what each site wrote.
type siteLoad struct {
	site    string
	mu      sync.Mutex
	written map[int32][]*kgo.Record
	errs    []error
	stop    chan struct{}
	done    chan struct{}
}

func startSiteLoad(t *testing.T, c *cluster, topic string) *siteLoad {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	l := &siteLoad{site: c.name, written: map[int32][]*kgo.Record{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer cl.Close()
		ctx := context.Background()
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				_ = cl.Flush(ctx)
				return
			default:
			}
			if i%50 == 0 {
				time.Sleep(time.Until(start.Add(time.Duration(float64(i) / aaPerSecond * float64(time.Second)))))
			}
			id := fmt.Sprintf("%s-%07d", c.name, i)
			r := &kgo.Record{Partition: int32(i % aaPartitions), Key: []byte("k-" + id), Value: []byte("order " + id + " " + strings.Repeat("x", 100)),
				Headers: []kgo.RecordHeader{{Key: "id", Value: []byte(id)}, {Key: "site", Value: []byte(c.name)}}}
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.errs = append(l.errs, err)
					return
				}
				l.written[r.Partition] = append(l.written[r.Partition], r)
			})
		}
	}()
	return l
}

// halt stops the writer and returns how many records the cluster acknowledged.
func (l *siteLoad) halt(t *testing.T) int {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("writing on %s: %d errors, first: %v", l.site, len(l.errs), l.errs[0])
	}
	n := 0
	for p, rs := range l.written {
		slices.SortFunc(rs, func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) })
		l.written[p] = rs
		n += len(rs)
	}
	return n
}

// recordShape is a record as a reader compares it: key, value, headers in order, timestamp.
func recordShape(r *kgo.Record, headers []kgo.RecordHeader) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q=%q@%d", r.Key, r.Value, r.Timestamp.UnixMilli())
	for _, h := range headers {
		fmt.Fprintf(&b, " %q:%q", h.Key, h.Value)
	}
	return b.String()
}

func shapes(rs []*kgo.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = recordShape(r, r.Headers)
	}
	return out
}

// firstDiff describes where two lists of shapes part.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at #%d: got %s, want %s", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d, want %d", len(got), len(want))
}

// settle waits until sizes reports want, then fails if sizes, or ends when given (the topics'
// end offsets, transaction markers included), move in the next aaStable: a record going round.
func settle(t *testing.T, what string, sizes func() []int64, want []int64, ends func() []int64) {
	t.Helper()
	waitFor(t, what, 3*time.Minute, func() bool { return slices.Equal(sizes(), want) })
	if ends == nil {
		ends = sizes
	}
	at := ends()
	caught := time.Now()
	for time.Since(caught) < aaStable {
		time.Sleep(time.Second)
		if got := ends(); !slices.Equal(got, at) {
			t.Fatalf("%s: end offsets moved from %v to %v %s after the mirrors caught up: something goes round",
				what, at, got, time.Since(caught).Round(time.Second))
		}
	}
	if got := sizes(); !slices.Equal(got, want) {
		t.Fatalf("%s: %v after %s, want %v", what, got, aaStable, want)
	}
	t.Logf("%s: %v, unchanged for %s after the mirrors caught up", what, want, aaStable)
}

// committedRecords counts the committed records of topic on c (transaction markers and aborted
// records left out).
func committedRecords(t *testing.T, c *cluster, topic string) int64 {
	t.Helper()
	var n int64
	for _, rs := range readRecords(t, c, topic) {
		n += int64(len(rs))
	}
	return n
}

// userTopicNames lists c's topics that do not start with "__", sorted.
func userTopicNames(t *testing.T, c *cluster) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := c.admin(t).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range td.Names() {
		if !strings.HasPrefix(n, "__") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TestActiveActivePrefix: with topics.replication_policy prefix both ways, europe ends with
// orders (its own) and us.orders (from us), us with orders and europe.orders, each copy exact
// per partition, and no us.europe.orders or europe.us.orders is ever made: each flow leaves the
// other's copy out as a cycle, says so once and counts it. Then the same cluster as source and
// target is refused: by validate when the bootstrap lists show it, by run (cluster IDs) when they
// do not.
func TestActiveActivePrefix(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "orders", aaPartitions, 1, nil)
	us.createTopic(t, "orders", aaPartitions, 1, nil)

	eu2us, us2eu := startFlows(t, europe, us, ".*", "  replication_policy: prefix\n")
	weu, wus := startSiteLoad(t, europe, "orders"), startSiteLoad(t, us, "orders")
	time.Sleep(aaWriteFor)
	neu, nus := weu.halt(t), wus.halt(t)
	t.Logf("written: europe %d, us %d, into orders on each, %d partitions", neu, nus, aaPartitions)

	settle(t, "records of orders, us.orders on europe and orders, europe.orders on us", func() []int64 {
		return []int64{europe.count(t, "orders"), europe.count(t, "us.orders"), us.count(t, "orders"), us.count(t, "europe.orders")}
	}, []int64{int64(neu), int64(nus), int64(nus), int64(neu)}, nil)

	// Each site also holds its own flow's heartbeat topic and, prefixed, the other's copy of its
	// own (heartbeats are on by default): never a nested one, and never the other's heartbeat
	// topic unprefixed (written there by no flow of this pair: a kmirror left over from another
	// run once did).
	nested := regexp.MustCompile(`^(europe|us)\.(europe|us)\.`)
	for c, want := range map[*cluster][]string{
		europe: {"kmirror.heartbeats.europe", "orders", "us.kmirror.heartbeats.us", "us.orders"},
		us:     {"europe.kmirror.heartbeats.europe", "europe.orders", "kmirror.heartbeats.us", "orders"},
	} {
		got := userTopicNames(t, c)
		for _, n := range got {
			if nested.MatchString(n) {
				t.Fatalf("%s holds the nested copy %s", c.name, n)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s holds topics %v, want %v (no nested copy)", c.name, got, want)
		}
	}
	// The prefixed copies hold the heartbeats written at home, in order, each once.
	for _, h := range []struct {
		home, away *cluster
		from, to   string
	}{{europe, us, "europe", "us"}, {us, europe, "us", "europe"}} {
		waitFor(t, "the heartbeats of "+h.from+" copied to "+h.to, time.Minute, func() bool {
			own, copies := h.home.count(t, "kmirror.heartbeats."+h.from), h.away.count(t, h.from+".kmirror.heartbeats."+h.from)
			return copies > 0 && copies >= own-3
		})
		copies := heartbeatsOf(t, h.away, h.from+".kmirror.heartbeats."+h.from) // first: the flow still runs
		own := heartbeatsOf(t, h.home, "kmirror.heartbeats."+h.from)
		if len(copies) > len(own) {
			t.Fatalf("%s holds %d copies of %s's %d heartbeats", h.to, len(copies), h.from, len(own))
		}
		for i := range copies {
			if copies[i] != own[i] || string(copies[i].Key()) != h.from+"->"+h.to {
				t.Fatalf("copy %d of %s's heartbeats on %s is %+v, the original %+v (key %s->%s)", i, h.from, h.to, copies[i], own[i], h.from, h.to)
			}
		}
		t.Logf("%s→%s: %d of %d heartbeats copied as %s.kmirror.heartbeats.%s, in order", h.from, h.to, len(copies), len(own), h.from, h.from)
	}
	for _, f := range []*aaFlow{eu2us, us2eu} {
		if n := f.metric(t, "kmirror_cycle_topics_skipped_total"); n != 1 {
			t.Errorf("%s: kmirror_cycle_topics_skipped_total = %v, want 1", f.name, n)
		}
	}
	for _, f := range []*aaFlow{eu2us, us2eu} {
		f.k.stop()
	}
	for _, c := range []struct {
		f     *aaFlow
		topic string
	}{{eu2us, "us.orders"}, {us2eu, "europe.orders"}} {
		var lines []string
		for _, l := range strings.Split(c.f.k.log(), "\n") {
			if strings.Contains(l, "would go round in a cycle") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], `"topic":"`+c.topic+`"`) {
			t.Errorf("%s logged %d cycle lines, want one naming %s: %v", c.f.name, len(lines), c.topic, lines)
		}
	}
	repEU := compare(t, europe, us, map[string]string{"orders": "europe.orders"})
	repUS := compare(t, us, europe, map[string]string{"orders": "us.orders"})
	if !repEU.Exact() || !repUS.Exact() {
		t.Fatalf("copies not exact:\neurope→us: %s\nus→europe: %s", repEU, repUS)
	}

	t.Run("one cluster as source and target is refused", func(t *testing.T) {
		// Named alike: validation refuses it, naming the keys and the fix.
		self := aaConfig("europe", europe.bootstrap, "eu", europe.bootstrap, "kmirror-self", "", ".*", "  replication_policy: prefix\n")
		out, code := kmirrorCLI(t, "validate", "--config", writeConfig(t, self))
		if code == 0 {
			t.Fatalf("validate accepted europe mirrored into itself with the prefix policy:\n%s", out)
		}
		// Named differently (an IPv4-mapped address of the same brokers): only the cluster IDs
		// tell; run refuses to start, and nothing is copied.
		var other []string
		for _, b := range europe.bootstrap {
			host, port, _ := net.SplitHostPort(b)
			other = append(other, net.JoinHostPort("::ffff:"+host, port))
		}
		disguised := aaConfig("europe", europe.bootstrap, "eu", other, "kmirror-self", "", ".*", "  replication_policy: prefix\n")
		path := writeConfig(t, disguised)
		if out, code := kmirrorCLI(t, "validate", "--config", path); code != 0 {
			t.Fatalf("the test needs a spelling validation cannot see through; validate said:\n%s", out)
		}
		before := userTopicNames(t, europe)
		k := startKmirror(t, path)
		if code := k.waitExit(time.Minute); code == 0 {
			t.Fatalf("kmirror run from europe into europe under another name exited 0")
		}
		if !strings.Contains(k.log(), "same Kafka cluster") {
			t.Fatalf("kmirror's log does not say source and target are the same cluster:\n%s", k.errors())
		}
		if got := userTopicNames(t, europe); !slices.Equal(got, before) {
			t.Fatalf("europe holds %v after the refusal, had %v", got, before)
		}
		t.Logf("kmirror run refused: %s", k.errors())
		out, code = kmirrorCLI(t, "validate", "--connect", "--timeout", "30s", "--config", path)
		if code == 0 || !strings.Contains(string(out), "distinct clusters") {
			t.Fatalf("validate --connect did not refuse one cluster as source and target:\n%s", out)
		}
		t.Logf("validate --connect: %s", grepLines(string(out), "distinct clusters"))
	})
	t.Logf("figures: prefix both ways, europe %d + us %d records, each copied once, 2 cycles left out, no nested topic", neu, nus)
}

// TestActiveActiveIdentityWithProvenance: with the identity policy and topics.provenance_header
// on both flows, both sites write into orders at the same time; each site's orders ends with its
// own records (unchanged) and one copy of each of the other's (its own headers byte for byte,
// then kmirror.origin naming where it was written), in the other site's order per partition.
// Each flow counts, in kmirror_records_from_target_skipped_total, exactly the records it did not
// send back, and its position reaches the end of its source (the group's offsets at least once,
// the positions on the target exactly once: the records left out move it in the transactions).
// The negative control: for the same pair without the header, validate --connect fails naming
// the loop while the reverse flow runs (offline validation cannot see the other flow, and
// passes).
func TestActiveActiveIdentityWithProvenance(t *testing.T) {
	for _, mode := range []string{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) { testIdentityPair(t, mode) })
	}
}

func testIdentityPair(t *testing.T, mode string) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "orders", aaPartitions, 1, nil)
	us.createTopic(t, "orders", aaPartitions, 1, nil)

	extra := "  provenance_header: true\n"
	if mode == config.ExactlyOnce {
		extra += "delivery:\n  mode: exactly_once\n"
	}
	eu2us, us2eu := startFlows(t, europe, us, "orders", extra)
	weu, wus := startSiteLoad(t, europe, "orders"), startSiteLoad(t, us, "orders")
	time.Sleep(aaWriteFor)
	neu, nus := weu.halt(t), wus.halt(t)
	t.Logf("written: europe %d, us %d, into orders on each, %d partitions", neu, nus, aaPartitions)
	total := int64(neu + nus)
	ends := func() []int64 { return []int64{europe.count(t, "orders"), us.count(t, "orders")} }
	sizes := ends
	if mode == config.ExactlyOnce {
		sizes = func() []int64 {
			return []int64{committedRecords(t, europe, "orders"), committedRecords(t, us, "orders")}
		}
	}
	settle(t, "records of orders on europe and us", sizes, []int64{total, total}, ends)

	for _, c := range []struct {
		f              *aaFlow
		copied, skiped int
	}{{eu2us, neu, nus}, {us2eu, nus, neu}} {
		if got := c.f.metricOf(t, "kmirror_records_mirrored_total", `topic="orders"`); got != float64(c.copied) {
			t.Errorf("%s: kmirror_records_mirrored_total = %v, want %d", c.f.name, got, c.copied)
		}
		if got := c.f.metric(t, "kmirror_records_from_target_skipped_total"); got != float64(c.skiped) {
			t.Errorf("%s: kmirror_records_from_target_skipped_total = %v, want %d (every copy from the other side)", c.f.name, got, c.skiped)
		}
		if got := c.f.metric(t, "kmirror_records_skipped_total"); got != 0 {
			t.Errorf("%s: kmirror_records_skipped_total = %v, want 0 (nothing refused)", c.f.name, got)
		}
	}
	// The records left out are committed as done: each flow's position is at the end of its
	// source.
	if mode == config.AtLeastOnce {
		waitFor(t, "each flow's group at the end of its source", time.Minute, func() bool {
			return sumOffsets(europe.groupOffsets(t, "kmirror-eu2us", "orders")) == total &&
				sumOffsets(us.groupOffsets(t, "kmirror-us2eu", "orders")) == total
		})
	} else {
		for _, side := range []struct {
			src, dst *cluster
			group    string
		}{{europe, us, "kmirror-eu2us-europe-positions"}, {us, europe, "kmirror-us2eu-us-positions"}} {
			want := map[int32]int64{}
			for p, rs := range readRecords(t, side.src, "orders") {
				want[p] = rs[len(rs)-1].Offset + 1
			}
			if got := side.dst.groupOffsets(t, side.group, "orders"); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("positions %s on %s: %v, want each source partition's last record + 1: %v", side.group, side.dst.name, got, want)
			}
		}
	}

	t.Run("without the header validate refuses what it can tell", func(t *testing.T) {
		body := aaConfig("europe", europe.bootstrap, "us", us.bootstrap, "kmirror-eu2us-bare", "", "orders", "")
		path := writeConfig(t, body)
		if out, code := kmirrorCLI(t, "validate", "--config", path); code != 0 {
			t.Fatalf("offline validation refused one flow on its own (it cannot see the other):\n%s", out)
		}
		out, code := kmirrorCLI(t, "validate", "--connect", "--timeout", "60s", "--config", path)
		for _, want := range []string{"no mirror back (identity)", "FAILED", "us→europe", "__kmirror.offset-map.us", "provenance_header"} {
			if code == 0 || !strings.Contains(string(out), want) {
				t.Fatalf("validate --connect of europe→us, identity without the header, while us→europe runs: exit %d, lacks %q:\n%s", code, want, out)
			}
		}
		t.Logf("validate --connect: %s", grepLines(string(out), "no mirror back"))
	})

	for _, f := range []*aaFlow{eu2us, us2eu} {
		f.k.stop()
	}
	for _, c := range []struct {
		site          *cluster
		local, remote *siteLoad
	}{{europe, weu, wus}, {us, wus, weu}} {
		got := readRecords(t, c.site, "orders")
		for p := range int32(aaPartitions) {
			var mine, copies []string
			for _, r := range got[p] {
				n := len(r.Headers)
				if n > 0 && r.Headers[n-1].Key == config.OriginHeader {
					if origin := string(r.Headers[n-1].Value); origin != c.remote.site {
						t.Fatalf("%s orders/%d offset %d has provenance %q: a record came back to where it was written",
							c.site.name, p, r.Offset, origin)
					}
					copies = append(copies, recordShape(r, r.Headers[:n-1]))
					continue
				}
				mine = append(mine, recordShape(r, r.Headers))
			}
			if want := shapes(c.local.written[p]); !slices.Equal(mine, want) {
				t.Fatalf("%s orders/%d: its own records changed: %s", c.site.name, p, firstDiff(mine, want))
			}
			if want := shapes(c.remote.written[p]); !slices.Equal(copies, want) {
				t.Fatalf("%s orders/%d: the copies of %s's records are not each once, in order, intact: %s",
					c.site.name, p, c.remote.site, firstDiff(copies, want))
			}
		}
	}
	t.Logf("figures: identity with provenance both ways (%s), europe %d + us %d records, each cluster holds %d, every record once, none sent back",
		mode, neu, nus, total)
}

func sumOffsets(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestRunRefusesAnIdentityPairThatLoops: us→europe runs with the identity policy and no
// provenance header; `kmirror run` of europe→us with the same settings exits 1 before it creates
// or copies anything, naming the flow it would loop with and the fix, and neither cluster's
// orders grows (5 records written on each side, us's 5 copied to europe: 10 there, 5 on us). Such
// a pair once made 13,473 records of 10 within 30 s.
func TestRunRefusesAnIdentityPairThatLoops(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "orders", 1, 1, nil)
	us.createTopic(t, "orders", 1, 1, nil)
	for _, c := range []*cluster{europe, us} {
		var lines []string
		for i := range 5 {
			lines = append(lines, fmt.Sprintf("%s-%d", c.name, i))
		}
		kcatProduce(t, c.bootstrap, "orders", 0, lines)
	}
	reverse := startKmirror(t, writeConfig(t, aaConfig("us", us.bootstrap, "europe", europe.bootstrap, "kmirror-us2eu", "", "orders", "")))
	waitFor(t, "us→europe to copy us's 5 records and write its offset map", 2*time.Minute, func() bool {
		return europe.count(t, "orders") == 10 && europe.count(t, config.OffsetMapPrefix+"us") > 0
	})
	usTopics := topicNames(t, us)

	forward := startKmirror(t, writeConfig(t, aaConfig("europe", europe.bootstrap, "us", us.bootstrap, "kmirror-eu2us", "", "orders", "")))
	select {
	case <-forward.done:
	case <-time.After(time.Minute):
		t.Fatalf("figures: europe→us runs beside us→europe, identity without the header: after 1m orders holds %d records on europe, %d on us (written 5 + 5)",
			europe.count(t, "orders"), us.count(t, "orders"))
	}
	_, how := forward.exited()
	if forward.cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("%s: want a non-zero status", how)
	}
	for _, want := range []string{"a kmirror copies us→europe right now", config.OffsetMapPrefix + "us",
		"fix: set topics.provenance_header: true on both flows", "topics.replication_policy: prefix on both"} {
		if !strings.Contains(forward.log(), want) {
			t.Fatalf("%s; its log does not say %q:\n%s", how, want, forward.errors())
		}
	}
	t.Logf("kmirror run refused: %s", forward.errors())

	time.Sleep(5 * time.Second) // what a flow that started after all would copy meanwhile
	eu, un := europe.count(t, "orders"), us.count(t, "orders")
	if eu != 10 || un != 5 {
		t.Fatalf("figures: orders holds %d records on europe and %d on us after the refusal, want 10 and 5", eu, un)
	}
	if got := topicNames(t, us); !slices.Equal(got, usTopics) {
		t.Fatalf("us holds topics %v after the refusal, had %v", got, usTopics)
	}
	if slices.Contains(topicNames(t, europe), "kmirror.heartbeats.europe") {
		t.Fatal("the refused flow created its heartbeat topic on europe")
	}
	reverse.stop()
	t.Logf("figures: %s; orders holds %d records on europe and %d on us 5s after (written 5 + 5, us→europe copied 5), nothing created on us",
		how, eu, un)
}

// topicNames lists all of c's topics, kmirror's offset maps included, sorted.
func topicNames(t *testing.T, c *cluster) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := c.admin(t).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return td.Names()
}
