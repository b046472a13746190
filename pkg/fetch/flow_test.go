package fetch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFullSinkPausesOnlyItsPartition: a sink that answers full stops the fetching of its own
// partition — nothing more is delivered to it however much is written — while the other
// partition, on the same broker and loop, keeps receiving everything; Ready resumes it where it
// stopped.
func TestFullSinkPausesOnlyItsPartition(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "bp", 2, nil)
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 50 * time.Millisecond})
	slow, fast := newCollector(), newCollector()
	slow.full = func(*collector) bool { return true }
	_ = f.Add("bp", 0, 0, slow)
	_ = f.Add("bp", 1, 0, fast)
	write := func(from, to int) {
		for i := from; i < to; i += 10 {
			var rs []*kgo.Record
			for j := i; j < i+10; j++ {
				rs = append(rs, &kgo.Record{Topic: "bp", Partition: 0, Value: []byte(fmt.Sprintf("p0-%d", j))},
					&kgo.Record{Topic: "bp", Partition: 1, Value: []byte(fmt.Sprintf("p1-%d", j))})
			}
			produce(t, kc, rs...)
		}
	}
	write(0, 10)
	slow.waitRecords(t, 10, 5*time.Second)
	fast.waitRecords(t, 10, 5*time.Second)
	write(10, 200)
	checkSequence(t, 1, fast.waitRecords(t, 200, 5*time.Second), 200, 0)
	time.Sleep(300 * time.Millisecond) // several fetch rounds
	if got, _, batches := slow.snapshot(); len(got) != 10 || batches != 1 {
		t.Fatalf("the full partition received %d records in %d batches after saying full, want the 10 of its first batch", len(got), batches)
	}
	slow.mu.Lock()
	slow.full = nil
	slow.mu.Unlock()
	f.Ready("bp", 0)
	checkSequence(t, 0, slow.waitRecords(t, 200, 5*time.Second), 200, 0)
}

// TestReadCommittedDropsAbortedTransactions: under read_committed, the records of aborted
// transactions and every control record are left out, committed and plain records arrive in
// order, and the position reaches the log end (past the last marker) so the owner can commit
// past them. Under read_uncommitted, aborted records arrive too, control records still never.
func TestReadCommittedDropsAbortedTransactions(t *testing.T) {
	c := startCluster(t, 1)
	plain := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, plain, "tx", 1, nil)
	txn := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID("fetch-test"))
	ctx := context.Background()
	in := func(commit bool, values ...string) {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			produce(t, txn, &kgo.Record{Topic: "tx", Value: []byte(v)})
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	out := func(values ...string) {
		for _, v := range values {
			produce(t, plain, &kgo.Record{Topic: "tx", Value: []byte(v)})
		}
	}
	out("a0")
	in(true, "c1", "c2")
	in(false, "x1", "x2")
	out("a3")
	in(false, "x3")
	in(true, "c4")
	in(false, "x4") // the log ends with an abort marker
	end := int64(1 + 3 + 3 + 1 + 2 + 2 + 2)

	for _, tc := range []struct {
		committed bool
		want      []string
	}{
		{true, []string{"a0", "c1", "c2", "a3", "c4"}},
		{false, []string{"a0", "c1", "c2", "x1", "x2", "a3", "x3", "c4", "x4"}},
	} {
		t.Run(fmt.Sprintf("read_committed=%v", tc.committed), func(t *testing.T) {
			f := newFetcher(t, Config{Client: client(t, c), ReadCommitted: tc.committed, MaxWait: 50 * time.Millisecond})
			s := newCollector()
			_ = f.Add("tx", 0, 0, s)
			s.waitNext(t, end, 5*time.Second)
			got, next, _ := s.snapshot()
			var values []string
			for _, r := range got {
				values = append(values, string(r.Value))
			}
			if fmt.Sprint(values) != fmt.Sprint(tc.want) || next != end {
				t.Fatalf("got %v, position %d; want %v, position %d", values, next, tc.want, end)
			}
		})
	}
}

// TestLeaderMovesLoseAndRepeatNothing: while records are written to 6 partitions, their leaders
// move between 3 brokers again and again (new leader epochs, NOT_LEADER_OR_FOLLOWER and
// FENCED_LEADER_EPOCH on the way); every record arrives once, in order.
func TestLeaderMovesLoseAndRepeatNothing(t *testing.T) {
	c := startCluster(t, 3)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "moves", 6, nil)
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond,
		PartitionMaxBytes: 4 << 10})
	sinks := make([]*collector, 6)
	for p := range sinks {
		sinks[p] = newCollector()
		_ = f.Add("moves", int32(p), 0, sinks[p])
	}
	// Leaders move between every two writes of 50 records per partition, while the fetcher
	// runs: 60 elections during the load.
	const n = 3000
	moves := 0
	for i := 0; i < n; i += 50 {
		var rs []*kgo.Record
		for j := i; j < i+50; j++ {
			for p := range int32(6) {
				rs = append(rs, &kgo.Record{Topic: "moves", Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, j))})
			}
		}
		produce(t, kc, rs...)
		c.Fake().ShufflePartitionLeaders()
		moves++
		time.Sleep(10 * time.Millisecond)
	}
	for p, s := range sinks {
		checkSequence(t, int32(p), s.waitRecords(t, n, 20*time.Second), n, 0)
	}
	t.Logf("%d leader shuffles while %d records per partition were written and fetched; %d loops", moves, n, f.Loops())
}

// TestPreferredReadReplicaAndFallback: with a rack, a leader that names a preferred read replica
// (KIP-392) is followed — the partition is then fetched from the replica — and an error on the
// replica sends the partition back to the leader; the records arrive once each, in order.
func TestPreferredReadReplicaAndFallback(t *testing.T) {
	c := startCluster(t, 2)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "near", 1, nil)
	k := c.Fake()
	leader := k.LeaderFor("near", 0)
	replica := 1 - leader
	k.SetFollowers("near", 0, []int32{replica})
	log := watchFetches(k)
	// kfake does not implement KIP-392: the leader's first answer to a request from rack r1
	// names the replica; once failReplica is set, the replica answers NOT_LEADER_OR_FOLLOWER once.
	var (
		mu                     sync.Mutex
		redirected, failed     bool
		failReplica            atomic.Bool
		replicaFetches, failAt int
	)
	k.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		node := k.CurrentNode()
		mu.Lock()
		defer mu.Unlock()
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = 0
		rp.HighWatermark, rp.LastStableOffset = -1, -1
		switch {
		case node == leader && !redirected && len(req.Topics) == 1 && req.Rack == "r1":
			redirected = true
			rp.PreferredReadReplica = replica
		case node == replica && !failed && failReplica.Load():
			failed = true
			failAt = log.len()
			rp.ErrorCode = 6 // NOT_LEADER_OR_FOLLOWER
		default:
			if node == replica {
				replicaFetches++
			}
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = "near"
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	f := newFetcher(t, Config{Client: client(t, c, func(sc *sarama.Config) { sc.RackID = "r1" }),
		MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond})
	s := newCollector()
	_ = f.Add("near", 0, 0, s)
	const n = 300
	for i := 0; i < n; i += 10 {
		var rs []*kgo.Record
		for j := i; j < i+10; j++ {
			rs = append(rs, &kgo.Record{Topic: "near", Value: []byte(fmt.Sprintf("p0-%d", j))})
		}
		produce(t, kc, rs...)
		if i == 100 {
			s.waitRecords(t, 100, 5*time.Second)
			failReplica.Store(true)
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkSequence(t, 0, s.waitRecords(t, n, 10*time.Second), n, 0)
	mu.Lock()
	defer mu.Unlock()
	onLeaderAfter := 0
	for _, sf := range log.since(failAt + 1) {
		if sf.node == leader {
			onLeaderAfter++
		}
	}
	if !redirected || replicaFetches == 0 || !failed || onLeaderAfter == 0 {
		t.Fatalf("redirected %v, %d fetches served by the replica, replica failed %v, %d fetches on the leader after",
			redirected, replicaFetches, failed, onLeaderAfter)
	}
	t.Logf("%d fetches served by the replica, %d by the leader after the replica failed", replicaFetches, onLeaderAfter)
}

// TestPauseAndRemoveStopDeliveryAtOnce: a record that arrives in a fetch already in flight when
// Pause (or Remove) returned is not delivered; after Resume it is, once.
func TestPauseAndRemoveStopDeliveryAtOnce(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "pr", 1, nil)
	log := watchFetches(c.Fake())
	// A long MaxWait: the broker holds each idle fetch until data comes.
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 3 * time.Second})
	s := newCollector()
	_ = f.Add("pr", 0, 0, s)
	inFlight := func() {
		mark := log.len()
		log.waitFetches(t, mark, 1) // a fetch the broker now holds
		time.Sleep(50 * time.Millisecond)
	}
	inFlight()
	f.Pause("pr", 0)
	produce(t, kc, &kgo.Record{Topic: "pr", Value: []byte("p0-0")})
	time.Sleep(300 * time.Millisecond)
	if got, _, _ := s.snapshot(); len(got) != 0 {
		t.Fatalf("%d records delivered after Pause returned", len(got))
	}
	f.Resume("pr", 0)
	checkSequence(t, 0, s.waitRecords(t, 1, 5*time.Second), 1, 0)

	inFlight()
	if next, ok := f.Remove("pr", 0); !ok || next != 1 {
		t.Fatalf("Remove: position %d %v, want 1", next, ok)
	}
	produce(t, kc, &kgo.Record{Topic: "pr", Value: []byte("p0-1")})
	time.Sleep(300 * time.Millisecond)
	if got, _, _ := s.snapshot(); len(got) != 1 {
		t.Fatalf("%d records delivered, want only the one before Remove", len(got))
	}
}

// TestFullSinksHoldBackAtMostMaxHeldBytes: when every sink answers full (a frozen target fills
// every inbox), the loops stop fetching once the sinks hold MaxHeldBytes, instead of fetching
// each partition until it holds a batch; a Ready brings them under it and every partition then
// arrives whole and in order. The partitions get their records one after another, each once the
// one before was fetched: without the bound all 40 were delivered (823 KB against a 64 KiB bound).
func TestFullSinksHoldBackAtMostMaxHeldBytes(t *testing.T) {
	const (
		parts   = 40
		records = 20
		bound   = 64 << 10
	)
	f, kc := heldFetcher(t, "held", parts, bound)
	var full atomic.Bool
	full.Store(true)
	sinks := make([]*collector, parts)
	for p := range sinks {
		sinks[p] = newCollector()
		sinks[p].full = func(*collector) bool { return full.Load() }
		if err := f.Add("held", int32(p), 0, sinks[p]); err != nil {
			t.Fatal(err)
		}
	}
	var each int64 // the bytes of one partition's records
	for p := range int32(parts) {
		writeKeyed(t, kc, "held", p, 0, records)
		if p == 0 {
			sinks[0].waitRecords(t, records, 5*time.Second)
			for _, r := range sinks[0].records {
				each += int64(len(r.Key) + len(r.Value))
			}
		} else {
			time.Sleep(100 * time.Millisecond) // several fetch rounds, when the loop fetches
		}
	}
	var bytes int64
	var got int
	for _, s := range sinks {
		s.mu.Lock()
		for _, b := range s.batches {
			bytes += int64(b.Bytes)
		}
		if len(s.batches) > 0 {
			got++
		}
		s.mu.Unlock()
	}
	st := f.Stats()
	t.Logf("figures: %d bytes delivered to %d of %d full partitions (bound %d, %d bytes a partition); held %d, waits at the bound %d",
		bytes, got, parts, bound, each, st.HeldBytes, st.HeldWaits)
	if bytes >= bound+each {
		t.Fatalf("the full sinks were delivered %d bytes (%d of %d partitions), want under the bound and one partition's records (%d)", bytes, got, parts, bound+each)
	}
	if st.HeldBytes != bytes || st.HeldWaits == 0 {
		t.Fatalf("stats %+v: want the %d bytes delivered held, and loops that waited at the bound", st, bytes)
	}
	// A partition removed no longer counts.
	sinks[0].mu.Lock()
	var first int64
	for _, b := range sinks[0].batches {
		first += int64(b.Bytes)
	}
	sinks[0].mu.Unlock()
	if _, ok := f.Remove("held", 0); !ok {
		t.Fatal("remove partition 0")
	}
	if h := f.Stats().HeldBytes; h != bytes-first {
		t.Fatalf("held %d bytes after partition 0 (%d bytes) was removed, want %d", h, first, bytes-first)
	}
	// Room again: every other partition arrives whole and in order.
	full.Store(false)
	for p := 1; p < parts; p++ {
		f.Ready("held", int32(p))
	}
	for p := 1; p < parts; p++ {
		checkSequence(t, int32(p), sinks[p].waitRecords(t, records, 10*time.Second), records, 0)
	}
	if h := f.Stats().HeldBytes; h != 0 {
		t.Fatalf("held %d bytes with every sink ready, want 0", h)
	}
}

// TestAGroupAtItsBoundHoldsUpOnlyItsOwnPartitions: the sinks of group 1 are all full and hold
// their MaxHeldBytes, so none of group 1's partitions is fetched any more; the partitions of
// group 0, on the same broker and loop, keep receiving every record, in order.
func TestAGroupAtItsBoundHoldsUpOnlyItsOwnPartitions(t *testing.T) {
	const (
		parts   = 20 // even ones in group 0, odd ones in group 1
		records = 20
		bound   = 32 << 10
	)
	f, kc := heldFetcher(t, "groups", parts, bound)
	sinks := make([]*collector, parts)
	for p := range sinks {
		sinks[p] = newCollector()
		if p%2 == 1 {
			sinks[p].group = 1
			sinks[p].full = func(*collector) bool { return true }
		}
		if err := f.Add("groups", int32(p), 0, sinks[p]); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p int32, from, to int) { writeKeyed(t, kc, "groups", p, from, to) }
	// Group 1's partitions one after another, each once the one before was fetched (as long as
	// they are fetched at all): two of them (40 KiB) reach the bound.
	for p := int32(1); p < parts; p += 2 {
		write(p, 0, records)
		time.Sleep(100 * time.Millisecond)
	}
	var heldParts int
	for p := 1; p < parts; p += 2 {
		if _, _, n := sinks[p].snapshot(); n > 0 {
			heldParts++
		}
	}
	if heldParts == 0 || heldParts > 3 {
		t.Fatalf("%d of group 1's %d full partitions were delivered, want the few that reach its bound", heldParts, parts/2)
	}
	// Group 0 keeps flowing, written in several rounds.
	for round := range 4 {
		for p := int32(0); p < parts; p += 2 {
			write(p, round*records/4, (round+1)*records/4)
		}
	}
	for p := 0; p < parts; p += 2 {
		checkSequence(t, int32(p), sinks[p].waitRecords(t, records, 10*time.Second), records, 0)
	}
	st := f.Stats()
	t.Logf("figures: group 1: %d of %d partitions delivered, %d bytes held (bound %d); group 0: every record of its %d partitions; stats %+v",
		heldParts, parts/2, st.HeldBytes, bound, parts/2, st)
	if st.HeldWaits == 0 {
		t.Fatalf("stats %+v: no loop skipped group 1 at its bound", st)
	}
}

// heldFetcher starts a one-broker cluster with topic of parts partitions and a fetcher of it
// bounded by MaxHeldBytes bound, and returns the fetcher and a producer of the topic.
func heldFetcher(t *testing.T, topic string, parts int32, bound int64) (*Fetcher, *kgo.Client) {
	t.Helper()
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, topic, parts, nil)
	return newFetcher(t, Config{Client: client(t, c), MaxWait: 20 * time.Millisecond, MaxHeldBytes: bound}), kc
}

// writeKeyed writes the records from to to of partition p ("p<p>-<i>", each with a 1 KiB key).
func writeKeyed(t *testing.T, kc *kgo.Client, topic string, p int32, from, to int) {
	t.Helper()
	key := make([]byte, 1<<10)
	var rs []*kgo.Record
	for i := from; i < to; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Key: key, Value: []byte(fmt.Sprintf("p%d-%d", p, i))})
	}
	produce(t, kc, rs...)
}
