package groups_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/groups"
	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// pair is a source (europe) and a target (us) in-process cluster, with the sarama admins and
// client a Syncer needs. Source topics orders (3 partitions) and payments (2) are mirrored as
// europe.orders and europe.payments; audit (1) is not mirrored.
type pair struct {
	t          *testing.T
	europe, us *embedded.Cluster
	version    sarama.KafkaVersion
	srcAdmin   sarama.ClusterAdmin
	dstAdmin   sarama.ClusterAdmin
	dstClient  sarama.Client
}

func newPair(t *testing.T, version sarama.KafkaVersion) *pair {
	t.Helper()
	return newPairOf(t, version, 1)
}

// newPairOf is newPair with a target of targetBrokers brokers (so that its group coordinators
// can move).
func newPairOf(t *testing.T, version sarama.KafkaVersion, targetBrokers int) *pair {
	t.Helper()
	p := &pair{t: t, version: version}
	var err error
	if p.europe, err = embedded.Start("europe", 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.europe.Close)
	if p.us, err = embedded.Start("us", targetBrokers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.us.Close)
	createTopic(t, p.europe, "orders", 3)
	createTopic(t, p.europe, "payments", 2)
	createTopic(t, p.europe, "audit", 1)
	createTopic(t, p.us, "europe.orders", 3)
	createTopic(t, p.us, "europe.payments", 2)

	if p.srcAdmin, err = sarama.NewClusterAdmin(p.europe.Addrs(), p.saramaConfig()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.srcAdmin.Close() })
	if p.dstAdmin, err = sarama.NewClusterAdmin(p.us.Addrs(), p.saramaConfig()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.dstAdmin.Close() })
	if p.dstClient, err = sarama.NewClient(p.us.Addrs(), p.saramaConfig()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.dstClient.Close() })
	return p
}

func (p *pair) saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = p.version
	c.ClientID = "groups-test"
	return c
}

// config is a Syncer's configuration syncing app-.* and kmirror (kmirror's own group, which the
// Syncer must leave alone anyway) but not app-b, translating with translate.
func (p *pair) config(translate groups.Translator) groups.Config {
	return groups.Config{
		Source: p.srcAdmin, Target: p.dstAdmin, TargetClient: p.dstClient,
		Include: []string{"app-.*", "kmirror"}, Exclude: []string{"app-b"}, Own: "kmirror",
		Topics: func(s string) (string, bool) {
			return "europe." + s, s == "orders" || s == "payments" || s == "refunds"
		},
		Translate: translate,
	}
}

func (p *pair) syncer(cfg groups.Config) *groups.Syncer {
	p.t.Helper()
	s, err := groups.New(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func kadmin(t *testing.T, c *embedded.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func createTopic(t *testing.T, c *embedded.Cluster, topic string, partitions int32) {
	t.Helper()
	resp, err := kadmin(t, c).CreateTopic(context.Background(), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s on %s: %v", topic, c.Name, err)
	}
}

// offsets is a group's committed offsets: "topic/partition" → offset.
type offsets map[string]int64

// commit commits offs for group on c, as an admin commit (the group has no members).
func commit(t *testing.T, c *embedded.Cluster, group string, offs offsets) {
	t.Helper()
	var o kadm.Offsets
	for tp, off := range offs {
		var topic string
		var part int32
		if _, err := fmt.Sscanf(strings.Replace(tp, "/", " ", 1), "%s %d", &topic, &part); err != nil {
			t.Fatalf("bad topic/partition %q", tp)
		}
		o.AddOffset(topic, part, off, -1)
	}
	resp, err := kadmin(t, c).CommitOffsets(context.Background(), group, o)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit %v for %s on %s: %v", offs, group, c.Name, err)
	}
}

// committed returns group's committed offsets on c.
func committed(t *testing.T, c *embedded.Cluster, group string) offsets {
	t.Helper()
	resp, err := kadmin(t, c).FetchOffsets(context.Background(), group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return offsets{}
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s on %s: %v", group, c.Name, err)
	}
	out := offsets{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.At
		}
	})
	return out
}

func equal(a, b offsets) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// plus1000 translates every position to source + 1000, except those named in other, which get
// that status.
func plus1000(other map[string]offsetmap.Status) groups.Translator {
	return func(_ context.Context, topic string, partition int32, off int64) (offsetmap.Translation, error) {
		tr := offsetmap.Translation{Topic: topic, Partition: partition, Source: off, Target: off + 1000, Status: offsetmap.Exact, Mirrored: off}
		switch other[fmt.Sprintf("%s/%d", topic, partition)] {
		case offsetmap.NotYet:
			tr.Status, tr.Target, tr.Mirrored, tr.Behind, tr.Reason = offsetmap.NotYet, -1, off-5, 5, "not mirrored yet"
		case offsetmap.Unknown:
			tr.Status, tr.Target, tr.Reason = offsetmap.Unknown, -1, "before the map"
		}
		return tr, nil
	}
}

// actions returns a report's actions by "topic/partition".
func actions(r groups.Report) map[string]string {
	out := make(map[string]string)
	for _, p := range r.Partitions {
		out[fmt.Sprintf("%s/%d", p.Topic, p.Partition)] = p.Action
	}
	return out
}

func TestMatchingGroupIsCommittedOnTargetForMirroredTopicsOnly(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	src := offsets{"orders/0": 10, "orders/1": 20, "orders/2": 30, "payments/0": 5, "audit/0": 7}
	for _, g := range []string{"app-a", "app-b", "other", "kmirror"} {
		commit(t, p.europe, g, src)
	}
	s := p.syncer(p.config(plus1000(nil)))
	ctx := context.Background()

	matching, err := s.Matching(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(matching) != "[app-a]" {
		t.Fatalf("Matching = %v, want [app-a] (app-b excluded, other not included, kmirror is kmirror's own)", matching)
	}
	reports, err := s.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].Group != "app-a" {
		t.Fatalf("Round reports %+v, want app-a only", reports)
	}
	want := offsets{"europe.orders/0": 1010, "europe.orders/1": 1020, "europe.orders/2": 1030, "europe.payments/0": 1005}
	if got := committed(t, p.us, "app-a"); !equal(got, want) {
		t.Errorf("target app-a = %v, want %v", got, want)
	}
	r := reports[0]
	if r.Committed() != 4 || r.Active || r.TargetState != groups.StateDead {
		t.Errorf("report: committed %d, active %v, state %q; want 4, false, Dead (the group did not exist)", r.Committed(), r.Active, r.TargetState)
	}
	for _, g := range []string{"app-b", "other", "kmirror"} {
		if got := committed(t, p.us, g); len(got) != 0 {
			t.Errorf("target %s = %v, want untouched", g, got)
		}
	}

	// A second round finds the target where it should be.
	reports, err = s.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for tp, a := range actions(reports[0]) {
		if a != groups.ActionUnchanged {
			t.Errorf("second round: %s %q, want %q", tp, a, groups.ActionUnchanged)
		}
	}
	for _, p := range reports[0].Partitions {
		if p.TargetCommitted != p.Target {
			t.Errorf("second round: %s/%d target committed %d, want %d", p.Topic, p.Partition, p.TargetCommitted, p.Target)
		}
	}

	// One topic; a topic that is not mirrored; kmirror's own group.
	r, err = s.Plan(ctx, "app-a", "payments")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Partitions) != 1 || r.Partitions[0].TargetTopic != "europe.payments" || r.Partitions[0].Target != 1005 {
		t.Errorf("Plan(app-a, payments) = %+v, want europe.payments/0 at 1005", r.Partitions)
	}
	if _, err := s.Plan(ctx, "app-a", "audit"); err == nil || !strings.Contains(err.Error(), `"audit" is not mirrored`) {
		t.Errorf("Plan(app-a, audit) error = %v, want not mirrored", err)
	}
	if _, err := s.Plan(ctx, "kmirror", ""); !errors.Is(err, groups.ErrOwnGroup) {
		t.Errorf("Plan(kmirror) error = %v, want ErrOwnGroup", err)
	}
	if _, err := s.Apply(ctx, groups.Report{Group: "kmirror"}); !errors.Is(err, groups.ErrOwnGroup) {
		t.Errorf("Apply(kmirror) error = %v, want ErrOwnGroup", err)
	}
}

func TestNewNamesTheBadExpression(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	for _, tc := range []struct {
		include, exclude []string
		want             string
	}{
		{include: []string{"app-.*", "("}, want: `groups.include[1] "("`},
		{include: []string{"app-.*"}, exclude: []string{"[z-a]"}, want: `groups.exclude[0] "[z-a]"`},
	} {
		cfg := p.config(plus1000(nil))
		cfg.Include, cfg.Exclude = tc.include, tc.exclude
		_, err := groups.New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(include %q, exclude %q) error = %v, want one naming %s", tc.include, tc.exclude, err, tc.want)
		}
	}
	cfg := p.config(plus1000(nil))
	cfg.Translate = nil
	if _, err := groups.New(cfg); err == nil || !strings.Contains(err.Error(), "Config.Translate") {
		t.Errorf("New without Translate error = %v, want one naming Config.Translate", err)
	}
}

func TestExcludeWinsOverIncludeAndEmptyIncludeMatchesNothing(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	for _, tc := range []struct {
		include, exclude []string
		group            string
		want             bool
	}{
		{include: []string{"app-.*"}, group: "app-a", want: true},
		{include: []string{"app-.*"}, group: "my-app-a", want: false}, // anchored
		{include: []string{"app"}, group: "app-a", want: false},       // the whole id must match
		{include: []string{"app-.*"}, exclude: []string{"app-a"}, group: "app-a", want: false},
		{include: nil, group: "app-a", want: false},
		{include: []string{".*"}, group: "kmirror", want: false}, // Own
	} {
		cfg := p.config(plus1000(nil))
		cfg.Include, cfg.Exclude = tc.include, tc.exclude
		if got := p.syncer(cfg).Match(tc.group); got != tc.want {
			t.Errorf("include %q exclude %q: Match(%q) = %v, want %v", tc.include, tc.exclude, tc.group, got, tc.want)
		}
	}
}

func TestTargetAheadIsNotMovedBackUnlessForced(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20})
	commit(t, p.us, "app-a", offsets{"europe.orders/0": 5000, "europe.orders/1": 3})
	ctx := context.Background()

	reports, err := p.syncer(p.config(plus1000(nil))).Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(reports[0]), map[string]string{"orders/0": groups.ActionTargetAhead, "orders/1": groups.ActionCommitted}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("actions = %v, want %v", got, want)
	}
	if got, want := committed(t, p.us, "app-a"), (offsets{"europe.orders/0": 5000, "europe.orders/1": 1020}); !equal(got, want) {
		t.Errorf("target app-a = %v, want %v (orders/0 not moved back)", got, want)
	}

	cfg := p.config(plus1000(nil))
	cfg.Force = true
	reports, err = p.syncer(cfg).Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(reports[0]), map[string]string{"orders/0": groups.ActionCommitted, "orders/1": groups.ActionUnchanged}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("forced actions = %v, want %v", got, want)
	}
	if got, want := committed(t, p.us, "app-a"), (offsets{"europe.orders/0": 1010, "europe.orders/1": 1020}); !equal(got, want) {
		t.Errorf("forced: target app-a = %v, want %v", got, want)
	}
}

// joinTarget joins a consumer to group on the target, consuming topic, until the test ends.
func joinTarget(t *testing.T, c *embedded.Cluster, group, topic string, opts ...kgo.Opt) {
	t.Helper()
	assigned := make(chan struct{})
	var once sync.Once
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.Addrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { once.Do(func() { close(assigned) }) }),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); cl.Close() })
	select {
	case <-assigned:
	case <-time.After(20 * time.Second):
		t.Fatalf("consumer of %s did not join group %s on the target", topic, group)
	}
}

func TestGroupActiveOnTargetIsNotTouched(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version sarama.KafkaVersion
		opts    []kgo.Opt
	}{
		{name: "classic", version: sarama.V3_6_0_0},
		{name: "KIP-848", version: sarama.V4_0_0_0, opts: []kgo.Opt{kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, tc.version)
			commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20, "payments/0": 5})
			joinTarget(t, p.us, "app-a", "europe.orders", tc.opts...)

			reports, err := p.syncer(p.config(plus1000(nil))).Round(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			r := reports[0]
			if !r.Active {
				t.Errorf("report says the target group is not active (state %q)", r.TargetState)
			}
			for tp, a := range actions(r) {
				if a != groups.ActionGroupActive {
					t.Errorf("%s: %q, want %q", tp, a, groups.ActionGroupActive)
				}
			}
			if got := committed(t, p.us, "app-a"); len(got) != 0 {
				t.Errorf("target app-a = %v, want nothing committed", got)
			}
		})
	}
}

// staleAdmin describes every group in the same state with no members: the view of a target group
// read just before a consumer joined it, or Kafka 4's DescribeGroups answer for a KIP-848 group
// (Dead, whatever its members).
type staleAdmin struct {
	sarama.ClusterAdmin
	state string
}

func (a staleAdmin) DescribeConsumerGroups(gs []string) ([]*sarama.GroupDescription, error) {
	var out []*sarama.GroupDescription
	for _, g := range gs {
		out = append(out, &sarama.GroupDescription{GroupId: g, State: a.state})
	}
	return out, nil
}

func TestConsumerJoiningBeforeTheCommitIsReportedNotFailed(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{name: "classic"},
		{name: "KIP-848", opts: []kgo.Opt{kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Kafka 3.6: no ConsumerGroupDescribe, so only the coordinator's refusal of the
			// commit tells that the group has members.
			p := newPair(t, sarama.V3_6_0_0)
			commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20})
			joinTarget(t, p.us, "app-a", "europe.orders", tc.opts...)
			cfg := p.config(plus1000(nil))
			cfg.Target = staleAdmin{p.dstAdmin, groups.StateEmpty}

			reports, err := p.syncer(cfg).Round(context.Background())
			if err != nil {
				t.Fatalf("Round error = %v, want none (a refused admin commit means the group is active)", err)
			}
			r := reports[0]
			if !r.Active {
				t.Error("report says the target group is not active")
			}
			for tp, a := range actions(r) {
				if a != groups.ActionGroupActive {
					t.Errorf("%s: %q, want %q", tp, a, groups.ActionGroupActive)
				}
			}
			if got := committed(t, p.us, "app-a"); len(got) != 0 {
				t.Errorf("target app-a = %v, want nothing committed", got)
			}
		})
	}
}

func TestKIP848GroupThatDescribeGroupsCallsDeadIsSeenActive(t *testing.T) {
	p := newPair(t, sarama.V4_0_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10})
	joinTarget(t, p.us, "app-a", "europe.orders", kgo.ServerSideBalancer())
	cfg := p.config(plus1000(nil))
	cfg.Target = staleAdmin{p.dstAdmin, groups.StateDead}

	r, err := p.syncer(cfg).Plan(context.Background(), "app-a", "")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Active || strings.EqualFold(r.TargetState, groups.StateDead) {
		t.Errorf("plan: active %v, state %q; want active, the state ConsumerGroupDescribe reports", r.Active, r.TargetState)
	}
}

// recorder records what a Syncer reports.
type recorder struct {
	mu             sync.Mutex
	synced         map[string]int
	rounds         int
	groups         int
	untranslatable int
	failed         map[string]error
}

func newObserver() *recorder {
	return &recorder{synced: make(map[string]int), failed: make(map[string]error)}
}

func (o *recorder) Synced(group string, partitions int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.synced[group] += partitions
}

func (o *recorder) Round(_ time.Time, groups, untranslatable int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rounds++
	o.groups, o.untranslatable = groups, untranslatable
}

func (o *recorder) Failed(group string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed[group] = err
}

func TestUntranslatablePartitionsAreNotCommittedAndCounted(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20, "orders/2": 30, "payments/0": 5})
	commit(t, p.europe, "app-c", offsets{"orders/1": 40})
	obs := newObserver()
	cfg := p.config(plus1000(map[string]offsetmap.Status{"orders/1": offsetmap.NotYet, "orders/2": offsetmap.Unknown}))
	cfg.Observer = obs

	reports, err := p.syncer(cfg).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := committed(t, p.us, "app-a"), (offsets{"europe.orders/0": 1010, "europe.payments/0": 1005}); !equal(got, want) {
		t.Errorf("target app-a = %v, want %v", got, want)
	}
	if got := committed(t, p.us, "app-c"); len(got) != 0 {
		t.Errorf("target app-c = %v, want nothing", got)
	}
	want := map[string]string{"orders/0": groups.ActionCommitted, "orders/1": groups.ActionNotTranslatable,
		"orders/2": groups.ActionNotTranslatable, "payments/0": groups.ActionCommitted}
	if got := actions(reports[0]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("app-a actions = %v, want %v", got, want)
	}
	if obs.rounds != 1 || obs.groups != 2 || obs.untranslatable != 3 {
		t.Errorf("observer: %d rounds, %d groups, %d untranslatable; want 1, 2, 3", obs.rounds, obs.groups, obs.untranslatable)
	}
	if obs.synced["app-a"] != 2 || obs.synced["app-c"] != 0 || len(obs.failed) != 0 {
		t.Errorf("observer: synced %v, failed %v; want app-a 2, app-c 0, no failure", obs.synced, obs.failed)
	}
}

func TestOwnedRestrictsThePartitions(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20, "orders/2": 30, "payments/0": 5, "payments/1": 6})
	cfg := p.config(plus1000(nil))
	cfg.Owned = func(topic string, partition int32) bool { return topic == "orders" && partition != 1 }

	reports, err := p.syncer(cfg).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(reports[0]), map[string]string{"orders/0": groups.ActionCommitted, "orders/2": groups.ActionCommitted}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("actions = %v, want %v", got, want)
	}
	if got, want := committed(t, p.us, "app-a"), (offsets{"europe.orders/0": 1010, "europe.orders/2": 1030}); !equal(got, want) {
		t.Errorf("target app-a = %v, want %v", got, want)
	}
}

func TestRefusedPartitionIsNamedAndTheOthersCommitted(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	createTopic(t, p.europe, "refunds", 1) // mirrored, but europe.refunds is missing on the target
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "refunds/0": 3})
	obs := newObserver()
	cfg := p.config(plus1000(nil))
	cfg.Observer = obs

	reports, err := p.syncer(cfg).Round(context.Background())
	if err == nil || !strings.Contains(err.Error(), `target group "app-a" on europe.refunds/0`) || !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("Round error = %v, want one naming app-a's europe.refunds/0 and UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if got, want := actions(reports[0]), map[string]string{"orders/0": groups.ActionCommitted, "refunds/0": groups.ActionFailed}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("actions = %v, want %v", got, want)
	}
	if got, want := committed(t, p.us, "app-a"), (offsets{"europe.orders/0": 1010}); !equal(got, want) {
		t.Errorf("target app-a = %v, want %v", got, want)
	}
	if obs.failed["app-a"] == nil {
		t.Error("observer was not told app-a failed")
	}
}

func (o *recorder) CommittedByOthers(string) {}
