package group

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/slots"
)

// The tests run real members against an in-process kfake cluster (the classic group protocol:
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, static members, MEMBER_ID_REQUIRED). Every
// member's handler reports to one ledger, which fails the test the moment a partition would have
// two owners.

const topic = "orders"

// event is one handler call.
type event struct {
	kind       string // assigned, revoked, lost
	generation int32
	parts      Partitions
}

func (e event) String() string { return fmt.Sprintf("%s@%d%v", e.kind, e.generation, e.parts) }

// ledger records who owns what, across every member of a test.
type ledger struct {
	t  *testing.T
	mu sync.Mutex
	// owner of each partition now
	owner map[tp]string
	// events per member, in order
	events map[string][]event
	// onRevoke, when set, runs inside Revoked (e.g. to commit or to hold the drain)
	onRevoke func(member string, ps Partitions)
}

// newLedger returns a ledger whose members take drainTime to drain what they revoke, as a
// member writing to a target does: a partition handed to another member before the drain ended
// would have two writers, and the ledger sees it.
func newLedger(t *testing.T) *ledger {
	l := &ledger{t: t, owner: make(map[tp]string), events: make(map[string][]event)}
	l.onRevoke = func(string, Partitions) { time.Sleep(drainTime) }
	return l
}

const drainTime = 300 * time.Millisecond

func (l *ledger) handler(name string) *recorder { return &recorder{name: name, l: l} }

// recorder is one member's Handler.
type recorder struct {
	name string
	l    *ledger
}

func (r *recorder) Assigned(_ context.Context, gen Generation, ps Partitions) {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for x := range ps.set() {
		if o, ok := l.owner[x]; ok {
			l.t.Errorf("%s assigned %s/%d in generation %d while %s owns it", r.name, x.topic, x.partition, gen.ID, o)
		}
		l.owner[x] = r.name
	}
	l.events[r.name] = append(l.events[r.name], event{"assigned", gen.ID, ps.Clone()})
}

func (r *recorder) Revoked(_ context.Context, gen Generation, ps Partitions) {
	l := r.l
	l.mu.Lock()
	hook := l.onRevoke
	l.mu.Unlock()
	if hook != nil {
		hook(r.name, ps)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for x := range ps.set() {
		if o := l.owner[x]; o != r.name {
			l.t.Errorf("%s revoked %s/%d in generation %d, owned by %q", r.name, x.topic, x.partition, gen.ID, o)
		}
		delete(l.owner, x)
	}
	l.events[r.name] = append(l.events[r.name], event{"revoked", gen.ID, ps.Clone()})
}

func (r *recorder) Lost(_ context.Context, ps Partitions) {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for x := range ps.set() {
		if l.owner[x] == r.name {
			delete(l.owner, x)
		}
	}
	l.events[r.name] = append(l.events[r.name], event{"lost", -1, ps.Clone()})
}

// owned returns what each member owns, by the ledger.
func (l *ledger) owned() map[string]Partitions {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := make(map[string]map[tp]bool)
	for x, o := range l.owner {
		if s[o] == nil {
			s[o] = make(map[tp]bool)
		}
		s[o][x] = true
	}
	out := make(map[string]Partitions, len(s))
	for o, set := range s {
		out[o] = fromSet(set)
	}
	return out
}

func (l *ledger) eventsOf(name string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events[name])
}

// kinds counts a member's events of a kind.
func (l *ledger) count(name, kind string) int {
	n := 0
	for _, e := range l.eventsOf(name) {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// running is one member running in a goroutine.
type running struct {
	name string
	m    *Member
	cl   sarama.Client
	done chan error
}

func (r *running) close(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.m.Close()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("member %s: Run = %v", r.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("member %s did not stop within 30s", r.name)
	}
	r.done = nil
	_ = r.cl.Close()
}

type memberOpts struct {
	instance string
	slots    int
	session  time.Duration
	previous sarama.BalanceStrategy
}

func clientConfig(name string) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "group-test-" + name
	sc.Metadata.RefreshFrequency = time.Second
	return sc
}

func startMember(t *testing.T, addrs []string, group, name string, h Handler, o memberOpts) *running {
	t.Helper()
	if o.slots == 0 {
		o.slots = 8
	}
	if o.session == 0 {
		o.session = 6 * time.Second
	}
	cl, err := sarama.NewClient(addrs, clientConfig(name))
	if err != nil {
		t.Fatalf("client for %s: %v", name, err)
	}
	strategy, err := slots.NewStrategy(slots.Config{Slots: o.slots})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		Client: cl, Group: group, Topics: []string{topic}, Strategy: strategy, Handler: h, Previous: o.previous,
		InstanceID: o.instance, SessionTimeout: o.session, HeartbeatInterval: 200 * time.Millisecond,
		RebalanceTimeout: 10 * time.Second, MetadataInterval: time.Second,
		RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: 200 * time.Millisecond,
		Logger: zaptest.NewLogger(t).Named(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &running{name: name, m: m, cl: cl, done: make(chan error, 1)}
	go func() { r.done <- m.Run(context.Background()) }()
	t.Cleanup(func() { r.close(t) })
	return r
}

func startCluster(t *testing.T, partitions int32) *embedded.Cluster {
	t.Helper()
	c, err := embedded.Start("europe", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	return c
}

// waitSettled waits until the ledger shows exactly members owning all partitions, each what its
// Member says it owns, every member in one generation and nobody revoking; it returns the owners.
func waitSettled(t *testing.T, l *ledger, ms []*running, partitions int) map[string]Partitions {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		owned := l.owned()
		total, ok := 0, len(owned) <= len(ms)
		gens := make(map[int32]bool)
		for _, r := range ms {
			total += owned[r.name].Len()
			if !equal(owned[r.name], r.m.Owned()) {
				ok = false
			}
			gens[r.m.Generation().ID] = true
		}
		if ok && total == partitions && len(gens) == 1 {
			// Settled only when it stays so a little (a withheld partition is handed out one
			// generation later).
			time.Sleep(500 * time.Millisecond)
			if again := l.owned(); maps.EqualFunc(again, owned, equal) {
				return owned
			}
		}
		last = fmt.Sprintf("owned %v, generations %v", owned, slices.Collect(maps.Keys(gens)))
		if time.Now().After(deadline) {
			t.Fatalf("members did not settle owning all %d partitions: %s", partitions, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func equal(a, b Partitions) bool { return diff(a, b).Len() == 0 && diff(b, a).Len() == 0 }

// checkWholeBalanced fails unless the owners hold whole slots with counts differing by ≤ 1.
func checkWholeBalanced(t *testing.T, owned map[string]Partitions, nslots int) {
	t.Helper()
	p := make(sarama.BalanceStrategyPlan)
	counts := make(map[string]int)
	for m, ps := range owned {
		p[m] = ps
		seen := make(map[int]bool)
		for x := range ps.set() {
			seen[slots.Of(x.topic, x.partition, nslots)] = true
		}
		counts[m] = len(seen)
	}
	if err := slots.WholeSlots(p, nslots); err != nil {
		t.Errorf("owned %v: %v", owned, err)
	}
	lo, hi := nslots, 0
	for _, n := range counts {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 1 {
		t.Errorf("slots per member %v differ by %d, want ≤ 1", counts, hi-lo)
	}
}

func describe(l *ledger, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n%s: %v", n, l.eventsOf(n))
	}
	return b.String()
}
