package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func openTxn(t *testing.T, cfg Config, id string, o *outcomes) *Txn {
	t.Helper()
	tx, err := NewTxn(cfg, TxnConfig{ID: id, Timeout: 20 * time.Second}, o.done)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tx.Close)
	return tx
}

// produceTxn produces n records with prefix to each of partitions in tx's open transaction and
// returns the values per partition in order.
func produceTxn(t *testing.T, tx *Txn, prefix string, partitions int32, n int) map[int32][]string {
	t.Helper()
	want := map[int32][]string{}
	for i := range n {
		for part := range partitions {
			v := prefix + val(part, i)
			want[part] = append(want[part], v)
			if err := tx.Produce(msg(part, v)); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
		}
	}
	return want
}

// readCommitted reads partition of t read_committed with franz-go: every value, in log order,
// until want were read and nothing more came for half a second (or 10 s passed).
func readCommitted(t *testing.T, c *kfake.Cluster, partition int32, want int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"t": {partition: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var values []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		wait := time.Until(deadline)
		if len(values) >= want {
			wait = 500 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { values = append(values, string(r.Value)); n++ })
		if len(values) >= want && n == 0 {
			break
		}
	}
	return values
}

func checkCommitted(t *testing.T, c *kfake.Cluster, partition int32, want []string) {
	t.Helper()
	got := readCommitted(t, c, partition, len(want))
	if len(got) != len(want) {
		t.Errorf("t/%d read_committed holds %d records, want %d", partition, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("t/%d read_committed record %d is %q, want %q (out of order, duplicated or aborted)", partition, i, got[i], want[i])
		}
	}
}

// positions are offsets of topic t (kfake refuses offsets of a topic it does not hold).
func positions(group string, offsets map[int32]int64) *Positions {
	pos := &Positions{Group: group, Offsets: map[string][]*sarama.PartitionOffsetMetadata{}}
	for p, o := range offsets {
		pos.Offsets["t"] = append(pos.Offsets["t"], &sarama.PartitionOffsetMetadata{Partition: p, Offset: o, LeaderEpoch: -1})
	}
	return pos
}

func readPositions(t *testing.T, c *kfake.Cluster, group string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch the offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	res.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "t" {
			out[o.Partition] = o.At
		}
	})
	return out
}

func TestTxnCommittedIsVisibleInOrderAndAbortedIsNot(t *testing.T) {
	c := fakeTarget(t, 3, 2)
	o := newOutcomes()
	cfg := testConfig(c)
	cfg.Linger = 5 * time.Millisecond
	cfg.BatchRecords = 50 // several batches per partition in flight
	tx := openTxn(t, cfg, "txn-a", o)
	ctx := context.Background()
	want := map[int32][]string{}
	var aborted map[int32][]string
	for round := range 3 {
		if err := tx.Begin(); err != nil {
			t.Fatal(err)
		}
		got := produceTxn(t, tx, fmt.Sprintf("r%d-", round), 2, 400)
		if round == 1 {
			if err := tx.Abort(ctx); err != nil {
				t.Fatalf("abort: %v", err)
			}
			aborted = got
			continue
		}
		if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: int64(100 * (round + 1)), 1: 7})); err != nil {
			t.Fatalf("commit round %d: %v", round, err)
		}
		for p, vs := range got {
			want[p] = append(want[p], vs...)
		}
	}
	o.wait(t, 3*2*400, 10*time.Second)
	for p := range int32(2) {
		checkCommitted(t, c, p, want[p])
	}
	o.mu.Lock()
	for _, vs := range aborted {
		for _, v := range vs {
			if _, ok := o.acked[v]; ok {
				t.Fatalf("%s of the aborted transaction was reported acknowledged", v)
			}
			if err := o.failed[v]; !errors.Is(err, ErrTxnAborted) {
				t.Fatalf("%s of the aborted transaction: error %v, want ErrTxnAborted", v, err)
			}
		}
	}
	for p, vs := range want {
		if len(o.order[p]) != len(vs) {
			t.Fatalf("t/%d: %d records reported acknowledged, want %d", p, len(o.order[p]), len(vs))
		}
		for i, v := range vs {
			if o.order[p][i] != v {
				t.Fatalf("t/%d: acknowledgement %d is %s, want %s", p, i, o.order[p][i], v)
			}
		}
	}
	o.mu.Unlock()
	if got := readPositions(t, c, "pos"); got[0] != 300 || got[1] != 7 {
		t.Fatalf("positions read back %v, want 0:300 1:7 (committed in the last transaction)", got)
	}
}

func TestTxnSecondProducerOfTheIDFencesTheFirst(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	ctx := context.Background()
	oa, ob := newOutcomes(), newOutcomes()
	a := openTxn(t, testConfig(c), "txn-z", oa)
	if err := a.Begin(); err != nil {
		t.Fatal(err)
	}
	first := produceTxn(t, a, "a1-", 1, 100)
	if err := a.Commit(ctx, positions("pos", map[int32]int64{0: 100})); err != nil {
		t.Fatal(err)
	}
	b := openTxn(t, testConfig(c), "txn-z", ob) // fences a
	if err := a.Begin(); err != nil {
		t.Fatal(err)
	}
	// The fenced producer's first request (AddPartitionsToTxn) fails for good: Produce says so
	// from then on, and so do Commit and Begin.
	produced := 0
	var perr error
	for i := range 100 {
		if perr = a.Produce(msg(0, "a2-"+val(0, i))); perr != nil {
			break
		}
		produced++
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(perr, ErrTxnFatal) {
		t.Fatalf("the fenced producer's Produce: %v, want ErrTxnFatal", perr)
	}
	err := a.Commit(ctx, positions("pos", map[int32]int64{0: 200}))
	if !errors.Is(err, ErrTxnFatal) {
		t.Fatalf("the fenced producer's commit: %v, want ErrTxnFatal", err)
	}
	t.Logf("fenced producer's commit: %v", err)
	if err := a.Begin(); !errors.Is(err, ErrTxnFatal) {
		t.Fatalf("Begin after the fence: %v, want ErrTxnFatal", err)
	}
	oa.wait(t, 100+produced, 10*time.Second)
	oa.mu.Lock()
	if len(oa.acked) != 100 || len(oa.failed) != produced {
		t.Fatalf("fenced producer: %d acknowledged, %d failed; want 100 and %d", len(oa.acked), len(oa.failed), produced)
	}
	for v, err := range oa.failed {
		if !errors.Is(err, ErrTxnFatal) {
			t.Fatalf("%s: %v, want ErrTxnFatal", v, err)
		}
	}
	oa.mu.Unlock()
	if err := b.Begin(); err != nil {
		t.Fatal(err)
	}
	second := produceTxn(t, b, "b-", 1, 100)
	if err := b.Commit(ctx, positions("pos", map[int32]int64{0: 150})); err != nil {
		t.Fatalf("the new producer's commit: %v", err)
	}
	checkCommitted(t, c, 0, append(first[0], second[0]...))
	if got := readPositions(t, c, "pos"); got[0] != 150 {
		t.Fatalf("positions %v, want 0:150", got)
	}
}

func TestTxnRefusedRecordAbortsTheTransaction(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	ctx := context.Background()
	o := newOutcomes()
	cfg := testConfig(c)
	cfg.MaxBatchBytes = 1 << 10
	tx := openTxn(t, cfg, "txn-r", o)
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	produceTxn(t, tx, "x-", 1, 10)
	big := make([]byte, 2<<10)
	if err := tx.Produce(&sarama.ProducerMessage{Topic: "t", Partition: 0, Value: sarama.StringEncoder(big)}); err != nil {
		t.Fatal(err)
	}
	err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 11}))
	if !errors.Is(err, ErrTxnAborted) || errors.Is(err, ErrTxnFatal) {
		t.Fatalf("commit with a refused record: %v, want ErrTxnAborted", err)
	}
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	want := produceTxn(t, tx, "y-", 1, 10)
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 10})); err != nil {
		t.Fatalf("the next transaction: %v", err)
	}
	checkCommitted(t, c, 0, want[0])
	if got := readPositions(t, c, "pos"); got[0] != 10 {
		t.Fatalf("positions %v, want 0:10", got)
	}
}

// A broker refuses a produce request carrying transactional batches without the transactional
// id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); kfake does not check it, so the test does.
func TestTxnProduceRequestsCarryTheTransactionalID(t *testing.T) {
	c := fakeTarget(t, 1, 2)
	var requests, without atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		requests.Add(1)
		if id := req.(*kmsg.ProduceRequest).TransactionID; id == nil || *id != "txn-id" {
			without.Add(1)
		}
		return nil, nil, false
	})
	o := newOutcomes()
	tx := openTxn(t, testConfig(c), "txn-id", o)
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	produceTxn(t, tx, "", 2, 20)
	if err := tx.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if requests.Load() == 0 || without.Load() > 0 {
		t.Fatalf("%d of %d produce requests lack the transactional id", without.Load(), requests.Load())
	}
}

// Retriable coordinator answers are retried (the commit goes through); a batch the target
// refuses aborts the transaction, after which the epoch is bumped and the next transaction,
// resent, commits: read_committed holds it once, in order.
func TestTxnRetriesCoordinatorErrorsAndAbortsOnARefusedBatch(t *testing.T) {
	c := fakeTarget(t, 3, 2)
	ctx := context.Background()
	o := newOutcomes()
	tx := openTxn(t, testConfig(c), "txn-f", o)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddPartitionsToTxn}, TxnID: "txn-f", Err: kerr.ConcurrentTransactions, Count: 3})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddOffsetsToTxn}, TxnID: "txn-f", Err: kerr.CoordinatorLoadInProgress, Count: 2})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Group: "pos", Err: kerr.NotCoordinator, Count: 2})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "txn-f", Err: kerr.NotCoordinator, Count: 2})
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	first := produceTxn(t, tx, "a-", 2, 100)
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 100, 1: 100})); err != nil {
		t.Fatalf("commit through retriable coordinator errors: %v", err)
	}

	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t", Partitions: []int32{1}, Err: kerr.InvalidRecord, Count: 1})
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 100 && err == nil; i++ { // Produce says so once the refusal came back
		for p := int32(0); p < 2 && err == nil; p++ {
			err = tx.Produce(msg(p, "b-"+val(p, i)))
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil && !errors.Is(err, ErrTxnAborted) {
		t.Fatalf("Produce after the refusal: %v, want ErrTxnAborted", err)
	}
	err = tx.Commit(ctx, positions("pos", map[int32]int64{0: 200, 1: 200}))
	if !errors.Is(err, ErrTxnAborted) || errors.Is(err, ErrTxnFatal) {
		t.Fatalf("commit with a refused batch: %v, want ErrTxnAborted", err)
	}
	if st := tx.Pipeline().Stats(); st.EpochBumps != 1 {
		t.Fatalf("%d epoch bumps after the abort, want 1", st.EpochBumps)
	}
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	again := produceTxn(t, tx, "b-", 2, 100) // resent from the positions
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 200, 1: 200})); err != nil {
		t.Fatalf("the resent transaction: %v", err)
	}
	for p := range int32(2) {
		checkCommitted(t, c, p, append(first[p], again[p]...))
	}
	if got := readPositions(t, c, "pos"); got[0] != 200 || got[1] != 200 {
		t.Fatalf("positions %v, want 0:200 1:200", got)
	}
}

// A coordinator that no longer knows the producer id (an idle transactional id expired:
// INVALID_PRODUCER_ID_MAPPING) at the first request of a transaction, before anything of it was
// added or sent, does not fail it: the id is taken again (KIP-360, with the producer id and
// epoch held) and the transaction goes on under it, for records (AddPartitionsToTxn) as for
// positions alone (AddOffsetsToTxn). Read read_committed, each record is there once, in order.
func TestTxnRenewsAProducerIDTheCoordinatorForgot(t *testing.T) {
	c := fakeTarget(t, 1, 2)
	ctx := context.Background()
	o := newOutcomes()
	tx := openTxn(t, testConfig(c), "txn-x", o)
	pid0, _ := tx.ProducerID()
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddPartitionsToTxn}, TxnID: "txn-x", Err: kerr.InvalidProducerIDMapping, Count: 1})
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	first := produceTxn(t, tx, "a-", 2, 100)
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 100, 1: 100})); err != nil {
		t.Fatalf("commit after the coordinator forgot the producer id at AddPartitionsToTxn: %v", err)
	}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddOffsetsToTxn}, TxnID: "txn-x", Err: kerr.InvalidProducerIDMapping, Count: 1})
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 100, 1: 100})); err != nil {
		t.Fatalf("a positions-only commit after the coordinator forgot the producer id at AddOffsetsToTxn: %v", err)
	}
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	second := produceTxn(t, tx, "b-", 2, 100)
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 200, 1: 200})); err != nil {
		t.Fatal(err)
	}
	pid, epoch := tx.ProducerID()
	t.Logf("producer id %d, then %d epoch %d after %d renewals", pid0, pid, epoch, tx.Renewals())
	if n := tx.Renewals(); n != 2 {
		t.Fatalf("%d renewals of the producer id, want 2", n)
	}
	for p := range int32(2) {
		checkCommitted(t, c, p, append(first[p], second[p]...))
	}
	if got := readPositions(t, c, "pos"); got[0] != 200 || got[1] != 200 {
		t.Fatalf("positions %v, want 0:200 1:200", got)
	}
}

// earlyTarget is a 3-broker kfake target whose partition t/0 leads on a broker that coordinates
// neither transactional id id nor group group: the produce requests and the coordinator
// requests travel on different connections, so one can be held while the others are answered.
func earlyTarget(t *testing.T, id, group string) *kfake.Cluster {
	t.Helper()
	c := fakeTarget(t, 3, 1)
	taken := map[int32]bool{c.CoordinatorFor(id): true, c.CoordinatorFor(group): true}
	for node := range int32(3) {
		if !taken[node] {
			if err := c.MoveTopicPartition("t", 0, node); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no broker of 3 is free of the coordinators %v", taken)
	return nil
}

// sendPositions sends pos early once the open transaction has started on the coordinator.
func sendPositions(t *testing.T, tx *Txn, pos *Positions) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !tx.SendPositions(context.Background(), pos); {
		if time.Now().After(deadline) {
			t.Fatal("SendPositions did not start within 5 s of the first record")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The positions of a transaction reach the coordinator while its batches are still in flight
// (SendPositions, as Kafka's producer's sendOffsetsToTransaction): the commit does not wait for
// every acknowledgement before it starts AddOffsetsToTxn and TxnOffsetCommit, one after the
// other. Here the target holds the first produce request until it received the
// TxnOffsetCommit, for 2 s at most: sent after the flush, the positions would come only once
// that time ran out. Sent early, they become visible all the same only with the commit.
func TestTxnPositionsGoWhileBatchesAreInFlight(t *testing.T) {
	c := earlyTarget(t, "txn-early", "pos")
	positionsIn := make(chan struct{})
	var once sync.Once
	var heldOut atomic.Bool // a produce request was released by the timeout, not by the positions
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() { close(positionsIn) })
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.DropControl() // the first produce request only
		c.SleepControl(func() {
			select {
			case <-positionsIn:
			case <-time.After(2 * time.Second): // within the client's read timeout (5 s)
				heldOut.Store(true)
			}
		})
		return nil, nil, false
	})
	o := newOutcomes()
	tx := openTxn(t, testConfig(c), "txn-early", o)
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	want := produceTxn(t, tx, "e-", 1, 50)
	pos := positions("pos", map[int32]int64{0: 50})
	sendPositions(t, tx, pos)
	if err := tx.Commit(context.Background(), pos); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if heldOut.Load() {
		t.Fatal("the positions reached the coordinator only after the batches were acknowledged")
	}
	checkCommitted(t, c, 0, want[0])
	if got := readPositions(t, c, "pos"); got[0] != 50 {
		t.Fatalf("positions %v, want 0:50", got)
	}
}

// Positions sent early into a transaction that then aborts (a batch refused) are discarded with
// it: the group keeps the positions of the last committed transaction. Positions sent early
// and refused abort the transaction. The transaction resent commits with its own; read
// read_committed, neither aborted transaction's records are there.
func TestTxnPositionsSentEarlyAreDiscardedByAnAbort(t *testing.T) {
	c := earlyTarget(t, "txn-discard", "pos")
	o := newOutcomes()
	tx := openTxn(t, testConfig(c), "txn-discard", o)
	ctx := context.Background()
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	first := produceTxn(t, tx, "a-", 1, 20)
	pos := positions("pos", map[int32]int64{0: 20})
	sendPositions(t, tx, pos)
	if err := tx.Commit(ctx, pos); err != nil {
		t.Fatalf("commit: %v", err)
	}

	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	produceTxn(t, tx, "b-", 1, 20)
	pos = positions("pos", map[int32]int64{0: 40})
	sendPositions(t, tx, pos)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t", Err: kerr.InvalidRecord, Count: 1})
	if err := tx.Produce(msg(0, "b-late")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx, pos); !errors.Is(err, ErrTxnAborted) || errors.Is(err, ErrTxnFatal) {
		t.Fatalf("commit with a refused batch: %v, want ErrTxnAborted", err)
	}
	if got := readPositions(t, c, "pos"); got[0] != 20 {
		t.Fatalf("positions %v after the abort, want 0:20 (the aborted transaction's discarded)", got)
	}

	// Positions sent early that the group coordinator refuses abort the transaction: its
	// records are not committed without them.
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	produceTxn(t, tx, "c-", 1, 20)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Group: "pos", Err: kerr.GroupAuthorizationFailed, Count: 1})
	pos = positions("pos", map[int32]int64{0: 40})
	sendPositions(t, tx, pos)
	if err := tx.Commit(ctx, pos); !errors.Is(err, ErrTxnAborted) || errors.Is(err, ErrTxnFatal) {
		t.Fatalf("commit with its positions refused: %v, want ErrTxnAborted", err)
	}

	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	again := produceTxn(t, tx, "b-", 1, 20)
	if err := tx.Commit(ctx, positions("pos", map[int32]int64{0: 40})); err != nil { // after the flush
		t.Fatalf("the resent transaction: %v", err)
	}
	checkCommitted(t, c, 0, append(first[0], again[0]...))
	if got := readPositions(t, c, "pos"); got[0] != 40 {
		t.Fatalf("positions %v, want 0:40", got)
	}
}
