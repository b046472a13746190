//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/group"
	"github.com/kmirror/kmirror/pkg/slots"
)

// groupLedger records who owns which partition, when, for every member of the test: it fails the
// test the moment a partition would have two owners, and measures how long partitions stay
// unowned.
type groupLedger struct {
	t     *testing.T
	topic string
	mu    sync.Mutex
	// owner of each partition now, and since when each unowned one has been unowned
	owner    map[int32]string
	unowned  map[int32]time.Time
	lastOf   map[int32]string // the partition's previous owner
	events   map[string][]string
	gaps     []time.Duration // unowned time of partitions handed from one member to another
	staying  time.Duration   // longest unowned time of a partition handed back to its previous owner
	revoked  map[string]int
	finalErr []error // commits made in Revoked that failed
	// flows: the records each owner reads, per partition, and the longest time between two
	// of them while one member owned the partition (reset per phase)
	flows map[int32]*flow
	// reading: the member whose reader of each partition is open (settle waits for every
	// owned partition to be read: opening a reader takes a request to the partition's leader)
	reading map[int32]string
	flowGap time.Duration
	records int
}

// flow is one member's reading of one partition, from its assignment to its revoke.
type flow struct {
	member string
	last   time.Time
}

// seen records a record of partition p read by member.
func (l *groupLedger) seen(member string, p int32, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records++
	f := l.flows[p]
	if f == nil || f.member != member {
		l.flows[p] = &flow{member: member, last: at}
		return
	}
	l.flowGap = max(l.flowGap, at.Sub(f.last))
	f.last = at
}

type ledgerMember struct {
	name     string
	l        *groupLedger
	m        *group.Member
	consumer sarama.Consumer
	readers  map[int32]*reader
}

// reader reads one owned partition from the newest offset on, as a fetch loop would.
type reader struct {
	pc   sarama.PartitionConsumer
	done chan struct{}
}

func (h *ledgerMember) read(p int32) {
	pc, err := h.consumer.ConsumePartition(h.l.topic, p, sarama.OffsetNewest)
	if err != nil {
		h.l.t.Errorf("%s: consume partition %d: %v", h.name, p, err)
		return
	}
	r := &reader{pc: pc, done: make(chan struct{})}
	h.readers[p] = r
	h.l.mu.Lock()
	h.l.reading[p] = h.name
	h.l.mu.Unlock()
	go func() {
		defer close(r.done)
		for range pc.Messages() {
			h.l.seen(h.name, p, time.Now())
		}
	}()
}

func (h *ledgerMember) unread(ps []int32) {
	for _, p := range ps {
		if r, ok := h.readers[p]; ok {
			r.pc.AsyncClose()
			<-r.done
			delete(h.readers, p)
			h.l.mu.Lock()
			delete(h.l.reading, p)
			h.l.mu.Unlock()
		}
	}
}

func (h *ledgerMember) Assigned(_ context.Context, gen group.Generation, ps group.Partitions) {
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, p := range ps[l.topic] {
		if o, ok := l.owner[p]; ok {
			l.t.Errorf("%s assigned partition %d in generation %d while %s owns it", h.name, p, gen.ID, o)
		}
		if since, ok := l.unowned[p]; ok {
			if l.lastOf[p] == h.name {
				l.staying = max(l.staying, now.Sub(since))
			} else {
				l.gaps = append(l.gaps, now.Sub(since))
			}
			delete(l.unowned, p)
		}
		l.owner[p] = h.name
	}
	l.events[h.name] = append(l.events[h.name], fmt.Sprintf("assigned@%d%v", gen.ID, ps[l.topic]))
	l.mu.Unlock()
	for _, p := range ps[l.topic] {
		h.read(p)
	}
	l.mu.Lock()
}

// Revoked drains (a pause standing for the writes in flight) and commits the partitions' final
// positions under the generation, as pkg/source will; the commit must succeed.
func (h *ledgerMember) Revoked(ctx context.Context, gen group.Generation, ps group.Partitions) {
	h.unread(ps[h.l.topic])
	time.Sleep(200 * time.Millisecond)
	var offs []group.Offset
	for _, p := range ps[h.l.topic] {
		offs = append(offs, group.Offset{Topic: h.l.topic, Partition: p, Offset: int64(gen.ID), Metadata: h.name})
	}
	err := h.m.Commit(ctx, offs)
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.finalErr = append(l.finalErr, fmt.Errorf("%s: %w", h.name, err))
	}
	now := time.Now()
	for _, p := range ps[l.topic] {
		if o := l.owner[p]; o != h.name {
			l.t.Errorf("%s revoked partition %d owned by %q", h.name, p, o)
		}
		delete(l.owner, p)
		// The flow ends with the revoke: the same member reading the partition again later (a
		// static member restarted) starts a new one, so its time away is not a gap in a flow.
		delete(l.flows, p)
		l.unowned[p], l.lastOf[p] = now, h.name
	}
	l.revoked[h.name] += len(ps[l.topic])
	l.events[h.name] = append(l.events[h.name], fmt.Sprintf("revoked@%d%v", gen.ID, ps[l.topic]))
}

func (h *ledgerMember) Lost(_ context.Context, ps group.Partitions) {
	h.unread(ps[h.l.topic])
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Errorf("%s lost %v", h.name, ps)
	for _, p := range ps[l.topic] {
		delete(l.owner, p)
		delete(l.flows, p)
	}
}

func (l *groupLedger) snapshot() (map[string][]int32, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]int32)
	for p, o := range l.owner {
		out[o] = append(out[o], p)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	counts := make(map[string]int, len(l.events))
	for n, e := range l.events {
		counts[n] = len(e)
	}
	return out, counts
}

// allRead reports whether every owned partition's reader is open, by its owner.
func (l *groupLedger) allRead() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, o := range l.owner {
		if l.reading[p] != o {
			return false
		}
	}
	return true
}

// groupRun runs members of pkg/group as goroutines against one cluster, all reporting to one
// ledger.
type groupRun struct {
	t          *testing.T
	c          *cluster
	group      string
	partitions int
	session    time.Duration
	l          *groupLedger
	strategy   *slots.Strategy
	logger     *zap.Logger
	all        map[string]*runningMember
}

type runningMember struct {
	h      *ledgerMember
	cancel context.CancelFunc
	done   chan error
	cl     sarama.Client
}

// newGroupRun creates topic on c for members of one group; session is their session timeout (0:
// the client's default, 10s).
func newGroupRun(t *testing.T, c *cluster, topic string, partitions int, rf int16, session time.Duration) *groupRun {
	c.createTopic(t, topic, int32(partitions), rf, nil)
	strategy, err := slots.NewStrategy(slots.Config{Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := zap.NewDevelopment()
	g := &groupRun{t: t, c: c, group: "e2e-" + topic, partitions: partitions, session: session, strategy: strategy, logger: logger,
		all: map[string]*runningMember{},
		l: &groupLedger{t: t, topic: topic, owner: map[int32]string{}, unowned: map[int32]time.Time{}, lastOf: map[int32]string{},
			events: map[string][]string{}, revoked: map[string]int{}, flows: map[int32]*flow{}, reading: map[int32]string{}}}
	t.Cleanup(func() {
		for name, r := range g.all {
			if !r.cl.Closed() {
				g.stop(name)
			}
		}
	})
	return g
}

func (g *groupRun) start(name, instance string) {
	t := g.t
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "e2e-group-" + name
	cl, err := sarama.NewClient(g.c.bootstrap, sc)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	h := &ledgerMember{name: name, l: g.l, consumer: consumer, readers: map[int32]*reader{}}
	h.m, err = group.New(group.Config{
		Client: cl, Group: g.group, Topics: []string{g.l.topic}, Strategy: g.strategy, Handler: h,
		// The heartbeat and rebalance timeout are the client's defaults (3s, 60s); the session is
		// the test's (newGroupRun says why when it is not the default 10s).
		InstanceID: instance, SessionTimeout: g.session, Logger: g.logger.Named(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningMember{h: h, cancel: cancel, done: make(chan error, 1), cl: cl}
	go func() { r.done <- h.m.Run(ctx) }()
	g.all[name] = r
}

func (g *groupRun) stop(name string) {
	r := g.all[name]
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			g.t.Errorf("%s: Run = %v", name, err)
		}
	case <-time.After(60 * time.Second):
		g.t.Errorf("%s did not stop", name)
	}
	_ = r.h.consumer.Close()
	_ = r.cl.Close()
}

// settle waits until exactly the named members own (and read) every partition, each what its
// Member says, all in one generation, for a second; it returns the owners.
func (g *groupRun) settle(what string, names ...string) map[string][]int32 {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		owned, _ := g.l.snapshot()
		total, gens, same := 0, map[int32]bool{}, len(owned) <= len(names)
		for _, n := range names {
			total += len(owned[n])
			gens[g.all[n].h.m.Generation().ID] = true
			if mine := g.all[n].h.m.Owned()[g.l.topic]; !slices.Equal(mine, owned[n]) {
				same = false
			}
		}
		if same && total == g.partitions && len(gens) == 1 && g.l.allRead() {
			time.Sleep(time.Second)
			if again, _ := g.l.snapshot(); maps.EqualFunc(again, owned, slices.Equal) {
				t.Logf("group stable %s: generation %v, owners %v", what, slices.Collect(maps.Keys(gens)), owned)
				return owned
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group did not settle %s: %v", what, owned)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// revoked returns how many partitions each member revoked so far.
func (g *groupRun) revoked() map[string]int {
	g.l.mu.Lock()
	defer g.l.mu.Unlock()
	return maps.Clone(g.l.revoked)
}

// phase checks one rebalance: every member that ran through it revoked exactly what moved away
// from it (so nothing that stayed), no partition went back to its owner after being unowned,
// every commit in Revoked succeeded, and no partition went a second without a record read while
// one member owned it. It logs the figures and resets the measures.
// flowing false skips the read-gap check (a broker was killed: its partitions' reads stop for
// the leader failover whatever the group does).
func (g *groupRun) phase(what string, before map[string][]int32, revokedBefore map[string]int, after map[string][]int32, flowing bool) {
	t, l := g.t, g.l
	l.mu.Lock()
	gaps, staying, revoked := slices.Clone(l.gaps), l.staying, maps.Clone(l.revoked)
	finals, flowGap, records := slices.Clone(l.finalErr), l.flowGap, l.records
	l.gaps, l.flowGap, l.records, l.finalErr = nil, 0, 0, nil
	l.mu.Unlock()
	moved := 0
	for name, ps := range before {
		if _, ok := after[name]; !ok {
			continue // it left
		}
		m := 0
		for _, p := range ps {
			if !slices.Contains(after[name], p) {
				m++
			}
		}
		if got := revoked[name] - revokedBefore[name]; got != m {
			t.Errorf("%s: %s revoked %d partitions, want exactly the %d that moved away", what, name, got, m)
		}
		moved += m
	}
	longest := time.Duration(0)
	for _, gap := range gaps {
		longest = max(longest, gap)
	}
	if staying != 0 {
		t.Errorf("%s: a partition was unowned for %v and handed back to the same member, want never unowned", what, staying)
	}
	if len(finals) > 0 {
		t.Errorf("%s: commits in Revoked failed: %v", what, finals)
	}
	// A stop-the-world rebalance stops every partition for the rebalance: the drain (200ms
	// here), the other members' rejoin (up to a heartbeat interval, 3s by default), the sync and
	// the restart of every reader. A partition that stays keeps being read throughout.
	if flowing && (flowGap >= time.Second || records == 0) {
		t.Errorf("%s: longest gap between two records of a partition while one member owned it %v (%d records read), want < 1s",
			what, flowGap, records)
	}
	t.Logf("figures %s: staying partitions' longest unowned time 0 (never revoked), longest gap between records read of an owned partition %v (%d records), %d moved from running members, %d handed over, longest handover %v",
		what, flowGap.Round(time.Millisecond), records, moved, len(gaps), longest.Round(time.Millisecond))
}

// TestGroupCooperativeRebalances runs members of pkg/group as goroutines on a real cluster, on a
// 24-partition topic with 8 slots, under load (each member reads what it owns): a alone, then b
// joins, then c (static) joins, then c restarts, then b leaves. In every rebalance a partition
// that stays with its member is never revoked (its longest unowned time is 0) and keeps being
// read, a moved partition is handed out only after its owner drained it and committed (the
// ledger fails at once otherwise; every commit made in Revoked succeeds), and the static restart
// changes nobody's generation.
func TestGroupCooperativeRebalances(t *testing.T) {
	europe := startCluster(t, "europe")
	g := newGroupRun(t, europe, "members", 24, 1, 0)
	// 2,000 records/s over the 24 partitions: a record every 12ms per partition.
	load := startLoad(t, europe.bootstrap, "members", 1_000_000, 2_000)
	defer func() { close(load.stop); <-load.done }()

	g.start("a", "")
	s1 := g.settle("with a", "a")
	r1 := g.revoked()

	g.start("b", "")
	s2 := g.settle("after b joined", "a", "b")
	g.phase("b joins", s1, r1, s2, true)
	r2 := g.revoked()

	g.start("c", "e2e-c")
	s3 := g.settle("after c joined", "a", "b", "c")
	g.phase("c joins", s2, r2, s3, true)
	genBefore := g.all["a"].h.m.Generation().ID
	_, countsBefore := g.l.snapshot()

	g.stop("c")
	g.start("c", "e2e-c")
	s4 := g.settle("after c restarted", "a", "b", "c")
	_, countsAfter := g.l.snapshot()
	for _, n := range []string{"a", "b"} {
		if countsAfter[n] != countsBefore[n] {
			t.Errorf("%s was told something during c's static restart: %v", n, g.l.events[n][countsBefore[n]:])
		}
		if gen := g.all[n].h.m.Generation().ID; gen != genBefore {
			t.Errorf("%s moved to generation %d from %d during c's static restart", n, gen, genBefore)
		}
	}
	if !slices.Equal(s4["c"], s3["c"]) {
		t.Errorf("restarted c owns %v, had %v", s4["c"], s3["c"])
	}
	// c's own partitions were unowned while it restarted; that is not a rebalance.
	g.l.mu.Lock()
	if g.l.flowGap >= time.Second {
		t.Errorf("during c's static restart a partition of a or b went %v without a record read", g.l.flowGap)
	}
	g.l.gaps, g.l.staying, g.l.flowGap, g.l.records = nil, 0, 0, 0
	g.l.mu.Unlock()
	t.Logf("figures static restart: generation %d before and after, c got back its %d partitions", genBefore, len(s4["c"]))
	r4 := g.revoked()

	g.stop("b")
	s5 := g.settle("after b left", "a", "c")
	g.phase("b leaves", s4, r4, s5, true)
}

// TestGroupCoordinatorKilled kills (-9) the broker that coordinates the group of two members
// (3 nodes, replication factor 3), then a third member joins: the members find the new
// coordinator (network errors, NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, retried with backoff),
// lose nothing (the session timeout, 30s, outlasts the failover), and the rebalance on the new
// coordinator revokes only what moves to the third member, whose commits all succeed.
func TestGroupCoordinatorKilled(t *testing.T) {
	europe := startCluster(t, "europe", "--nodes", "3")
	// A session of 30s, not the default 10s: it must outlast the coordinator's failover (the
	// controller notices the killed broker after broker.session.timeout.ms, 9s, then a new
	// coordinator loads the group), or the members would be dropped from the group meanwhile.
	g := newGroupRun(t, europe, "moves", 12, 3, 30*time.Second)
	load := startLoad(t, europe.bootstrap, "moves", 1_000_000, 1_000)
	defer func() { close(load.stop); <-load.done }()

	g.start("a", "")
	g.start("b", "")
	s2 := g.settle("with a and b", "a", "b")
	r2 := g.revoked()
	genBefore := g.all["a"].h.m.Generation().ID

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	described, err := europe.admin(t).DescribeGroups(ctx, g.group)
	if err != nil {
		t.Fatal(err)
	}
	node := described[g.group].Coordinator.NodeID
	europe.script(t, "stop-node", "europe", fmt.Sprint(node))
	killed := time.Now()
	t.Logf("killed the group coordinator, node %d", node)
	time.Sleep(2 * time.Second)

	g.start("c", "")
	s3 := g.settle("after c joined through the new coordinator", "a", "b", "c")
	g.phase("c joins after the coordinator was killed", s2, r2, s3, false)
	if gen := g.all["a"].h.m.Generation().ID; gen <= genBefore {
		t.Errorf("generation %d after c joined, want > %d", gen, genBefore)
	}
	t.Logf("figures coordinator killed: group stable with three members %v after the kill, generation %d → %d",
		time.Since(killed).Round(100*time.Millisecond), genBefore, g.all["a"].h.m.Generation().ID)
	europe.script(t, "start-node", "europe", fmt.Sprint(node))
}
