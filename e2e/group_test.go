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
	t  *testing.T
	mu sync.Mutex
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
	flows   map[int32]*flow
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
	pc, err := h.consumer.ConsumePartition("members", p, sarama.OffsetNewest)
	if err != nil {
		h.l.t.Errorf("%s: consume partition %d: %v", h.name, p, err)
		return
	}
	r := &reader{pc: pc, done: make(chan struct{})}
	h.readers[p] = r
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
		}
	}
}

func (h *ledgerMember) Assigned(_ context.Context, gen group.Generation, ps group.Partitions) {
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, p := range ps["members"] {
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
	l.events[h.name] = append(l.events[h.name], fmt.Sprintf("assigned@%d%v", gen.ID, ps["members"]))
	l.mu.Unlock()
	for _, p := range ps["members"] {
		h.read(p)
	}
	l.mu.Lock()
}

// Revoked drains (a pause standing for the writes in flight) and commits the partitions' final
// positions under the generation, as pkg/source will; the commit must succeed.
func (h *ledgerMember) Revoked(ctx context.Context, gen group.Generation, ps group.Partitions) {
	h.unread(ps["members"])
	time.Sleep(200 * time.Millisecond)
	var offs []group.Offset
	for _, p := range ps["members"] {
		offs = append(offs, group.Offset{Topic: "members", Partition: p, Offset: int64(gen.ID), Metadata: h.name})
	}
	err := h.m.Commit(ctx, offs)
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.finalErr = append(l.finalErr, fmt.Errorf("%s: %w", h.name, err))
	}
	now := time.Now()
	for _, p := range ps["members"] {
		if o := l.owner[p]; o != h.name {
			l.t.Errorf("%s revoked partition %d owned by %q", h.name, p, o)
		}
		delete(l.owner, p)
		l.unowned[p], l.lastOf[p] = now, h.name
	}
	l.revoked[h.name] += len(ps["members"])
	l.events[h.name] = append(l.events[h.name], fmt.Sprintf("revoked@%d%v", gen.ID, ps["members"]))
}

func (h *ledgerMember) Lost(_ context.Context, ps group.Partitions) {
	h.unread(ps["members"])
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Errorf("%s lost %v", h.name, ps)
	for _, p := range ps["members"] {
		delete(l.owner, p)
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

// TestGroupCooperativeRebalances runs members of pkg/group as goroutines on a real cluster, on a
// 24-partition topic with 8 slots: a alone, then b joins, then c (static) joins, then c restarts,
// then b leaves. In every rebalance a partition that stays with its member is never revoked (its
// longest unowned time is 0), a moved partition is handed out only after its owner drained it and
// committed (the ledger fails at once otherwise; every commit made in Revoked succeeds), and the
// static restart changes nobody's generation.
func TestGroupCooperativeRebalances(t *testing.T) {
	europe := startCluster(t, "europe")
	const partitions = 24
	europe.createTopic(t, "members", partitions, 1, nil)
	l := &groupLedger{t: t, owner: map[int32]string{}, unowned: map[int32]time.Time{}, lastOf: map[int32]string{},
		events: map[string][]string{}, revoked: map[string]int{}, flows: map[int32]*flow{}}
	strategy, err := slots.NewStrategy(slots.Config{Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := zap.NewDevelopment()

	type running struct {
		h      *ledgerMember
		cancel context.CancelFunc
		done   chan error
		cl     sarama.Client
	}
	start := func(name, instance string) *running {
		sc := sarama.NewConfig()
		sc.Version = sarama.V3_6_0_0
		sc.ClientID = "e2e-group-" + name
		cl, err := sarama.NewClient(europe.bootstrap, sc)
		if err != nil {
			t.Fatal(err)
		}
		consumer, err := sarama.NewConsumerFromClient(cl)
		if err != nil {
			t.Fatal(err)
		}
		h := &ledgerMember{name: name, l: l, consumer: consumer, readers: map[int32]*reader{}}
		h.m, err = group.New(group.Config{
			Client: cl, Group: "e2e-cooperative", Topics: []string{"members"}, Strategy: strategy, Handler: h,
			InstanceID: instance, SessionTimeout: 10 * time.Second, HeartbeatInterval: 500 * time.Millisecond,
			RebalanceTimeout: 30 * time.Second, Logger: logger.Named(name),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{h: h, cancel: cancel, done: make(chan error, 1), cl: cl}
		go func() { r.done <- h.m.Run(ctx) }()
		return r
	}
	stop := func(r *running) {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("%s: Run = %v", r.h.name, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not stop", r.h.name)
		}
		_ = r.h.consumer.Close()
		_ = r.cl.Close()
	}
	all := map[string]*running{}
	t.Cleanup(func() {
		for _, r := range all {
			if r.cl != nil && !r.cl.Closed() {
				stop(r)
			}
		}
	})
	settle := func(what string, names ...string) map[string][]int32 {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			owned, _ := l.snapshot()
			total, gens, same := 0, map[int32]bool{}, len(owned) <= len(names)
			for _, n := range names {
				total += len(owned[n])
				gens[all[n].h.m.Generation().ID] = true
				if mine := all[n].h.m.Owned()["members"]; !slices.Equal(mine, owned[n]) {
					same = false
				}
			}
			if same && total == partitions && len(gens) == 1 {
				time.Sleep(time.Second)
				if again, _ := l.snapshot(); maps.EqualFunc(again, owned, slices.Equal) {
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
	// movedAway counts what a member that ran through a rebalance no longer owns after it.
	movedAway := func(before, after []int32) int {
		n := 0
		for _, p := range before {
			if !slices.Contains(after, p) {
				n++
			}
		}
		return n
	}
	phase := func(what string, before map[string][]int32, revokedBefore map[string]int, after map[string][]int32) {
		l.mu.Lock()
		gaps, staying := slices.Clone(l.gaps), l.staying
		revoked := maps.Clone(l.revoked)
		finals := slices.Clone(l.finalErr)
		flowGap, records := l.flowGap, l.records
		l.gaps, l.flowGap, l.records = nil, 0, 0
		l.mu.Unlock()
		moved := 0
		for name, ps := range before {
			if _, ok := after[name]; !ok {
				continue // it left
			}
			m := movedAway(ps, after[name])
			if got := revoked[name] - revokedBefore[name]; got != m {
				t.Errorf("%s: %s revoked %d partitions, want exactly the %d that moved away", what, name, got, m)
			}
			moved += m
		}
		longest := time.Duration(0)
		for _, g := range gaps {
			longest = max(longest, g)
		}
		if staying != 0 {
			t.Errorf("%s: a partition was unowned for %v and handed back to the same member, want never unowned", what, staying)
		}
		if len(finals) > 0 {
			t.Errorf("%s: commits in Revoked failed: %v", what, finals)
		}
		// A stop-the-world rebalance stops every partition for the rebalance: the drain (200ms
		// here), the other members' rejoin (up to a heartbeat interval, 500ms), the sync and
		// the restart of every reader. A partition that stays keeps being read throughout.
		if flowGap >= time.Second || records == 0 {
			t.Errorf("%s: longest gap between two records of a partition while one member owned it %v (%d records read), want < 1s",
				what, flowGap, records)
		}
		t.Logf("figures %s: staying partitions' longest unowned time 0 (never revoked), longest gap between records read of an owned partition %v (%d records), %d moved from running members, %d handed over, longest handover %v",
			what, flowGap.Round(time.Millisecond), records, moved, len(gaps), longest.Round(time.Millisecond))
	}

	// 2,000 records/s over the 24 partitions: a record every 12ms per partition.
	load := startLoad(t, europe.bootstrap, "members", 1_000_000, 2_000)
	defer func() { close(load.stop); <-load.done }()

	all["a"] = start("a", "")
	s1 := settle("with a", "a")
	r1 := maps.Clone(l.revoked)

	all["b"] = start("b", "")
	s2 := settle("after b joined", "a", "b")
	phase("b joins", s1, r1, s2)
	r2 := maps.Clone(l.revoked)

	all["c"] = start("c", "e2e-c")
	s3 := settle("after c joined", "a", "b", "c")
	phase("c joins", s2, r2, s3)
	genBefore := all["a"].h.m.Generation().ID
	_, countsBefore := l.snapshot()

	stop(all["c"])
	all["c"] = start("c", "e2e-c")
	s4 := settle("after c restarted", "a", "b", "c")
	_, countsAfter := l.snapshot()
	for _, n := range []string{"a", "b"} {
		if countsAfter[n] != countsBefore[n] {
			t.Errorf("%s was told something during c's static restart: %v", n, l.events[n][countsBefore[n]:])
		}
		if g := all[n].h.m.Generation().ID; g != genBefore {
			t.Errorf("%s moved to generation %d from %d during c's static restart", n, g, genBefore)
		}
	}
	if !slices.Equal(s4["c"], s3["c"]) {
		t.Errorf("restarted c owns %v, had %v", s4["c"], s3["c"])
	}
	// c's own partitions were unowned while it restarted; that is not a rebalance.
	l.mu.Lock()
	if l.flowGap >= time.Second {
		t.Errorf("during c's static restart a partition of a or b went %v without a record read", l.flowGap)
	}
	l.gaps, l.staying, l.flowGap, l.records = nil, 0, 0, 0
	l.mu.Unlock()
	t.Logf("figures static restart: generation %d before and after, c got back its %d partitions", genBefore, len(s4["c"]))
	r4 := maps.Clone(l.revoked)

	stop(all["b"])
	s5 := settle("after b left", "a", "c")
	phase("b leaves", s4, r4, s5)
}
