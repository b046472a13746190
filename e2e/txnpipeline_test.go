//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/produce"
)

// txnValue is record i of partition p: a resend writes the same value again.
func txnValue(p int32, i int) string {
	v := fmt.Sprintf("%d-%07d-", p, i)
	return v + strings.Repeat("x", 100-len(v))
}

// TestProduceTxnsAcrossATargetBrokerKill drives pkg/produce's transactions directly, as the
// exactly-once worker does, and kills (-9) the target broker leading most partitions while
// transactions run (runTxnsAcrossAKill).
func TestProduceTxnsAcrossATargetBrokerKill(t *testing.T) {
	runTxnsAcrossAKill(t, "txnpipe", func(us *cluster) (int32, string) {
		node, led := us.busiestLeader(t, "txnpipe")
		return node, fmt.Sprintf("leader of %d of 6 partitions", led)
	})
}

// TestProduceTxnsAcrossATxnCoordinatorKill is TestProduceTxnsAcrossATargetBrokerKill killing the
// transactional id's coordinator instead: AddPartitionsToTxn, AddOffsetsToTxn and EndTxn find
// the new coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS).
func TestProduceTxnsAcrossATxnCoordinatorKill(t *testing.T) {
	runTxnsAcrossAKill(t, "txncoord", func(us *cluster) (int32, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		co, ok := us.admin(t).FindTxnCoordinators(ctx, "txncoord-0")["txncoord-0"]
		if err := co.Err; !ok || err != nil {
			t.Fatalf("find the transaction coordinator: %v", err)
		}
		_, led := us.busiestLeader(t, "txncoord")
		return co.NodeID, fmt.Sprintf("coordinator of transactional id txncoord-0; the busiest leader leads %d of 6 partitions", led)
	})
}

// runTxnsAcrossAKill writes 40,000 records to each of six partitions (replicated three times)
// in transactions of 200 records a partition, each committing the positions reached to a group
// in it; an aborted transaction is sent again from the positions read back, and a producer that
// failed for good is replaced by a new one of the same transactional id, which resumes from the
// positions too. The node victim names is killed (-9) once a quarter of the records were
// committed and brought back 15 s later. Read read_committed by franz-go, every partition must
// hold each record once, in order, and the positions must be at the end.
func runTxnsAcrossAKill(t *testing.T, topic string, victim func(*cluster) (int32, string)) {
	us := startCluster(t, "us", "--nodes", "3")
	const (
		partitions = 6
		perPart    = 40_000
		perTxn     = 200 // records of each partition in one transaction
	)
	group := topic + "-positions"
	us.createTopic(t, topic, partitions, 3, nil)

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.Net.ReadTimeout = 10 * time.Second
	sc.Metadata.AllowAutoTopicCreation = false
	cfg := produce.Config{
		Addrs: us.bootstrap, Net: sc, Linger: 5 * time.Millisecond, BatchBytes: 1 << 20, BatchRecords: 10_000,
		MaxBatchBytes: 1 << 20, DeliveryTimeout: 2 * time.Minute, RetryBackoff: 100 * time.Millisecond,
		Log: zaptest.NewLogger(t).Named("txn"),
	}
	var acked, failed atomic.Int64
	done := func(msgs []*sarama.ProducerMessage, err error) {
		if err != nil {
			failed.Add(int64(len(msgs)))
		} else {
			acked.Add(int64(len(msgs)))
		}
	}
	open := func() *produce.Txn {
		for try := 0; ; try++ {
			tx, err := produce.NewTxn(cfg, produce.TxnConfig{ID: topic + "-0", Timeout: time.Minute}, done)
			if err == nil {
				return tx
			}
			if try == 30 {
				t.Fatalf("open a transactional producer: %v", err)
			}
			t.Logf("open a transactional producer: %v; trying again", err)
			time.Sleep(time.Second)
		}
	}
	admin := us.admin(t)
	readPositions := func() [partitions]int {
		var next [partitions]int
		for try := 0; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			res, err := admin.FetchOffsets(ctx, group)
			cancel()
			if err == nil {
				res.Each(func(o kadm.OffsetResponse) {
					if o.Topic == topic && o.Err == nil {
						next[o.Partition] = int(o.At)
					}
				})
				return next
			}
			if try == 30 {
				t.Fatalf("read the positions of %s: %v", group, err)
			}
			time.Sleep(time.Second)
		}
	}

	// The broker kill, once a quarter of the records were committed.
	var committed atomic.Int64
	killed, restarted := make(chan struct{}), make(chan struct{})
	// The test waits for this goroutine whatever ends it, so that it never logs (or fails) a
	// finished test; a failed test stops it.
	stop := make(chan struct{})
	defer func() { close(stop); <-restarted }()
	go func() {
		defer close(restarted)
		for committed.Load() < partitions*perPart/4 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		node, what := victim(us)
		us.script(t, "stop-node", "us", fmt.Sprint(node))
		t.Logf("killed target node %d (%s) with %d records committed", node, what, committed.Load())
		close(killed)
		select {
		case <-stop:
			return // the cluster's cleanup stops it
		case <-time.After(15 * time.Second):
		}
		us.script(t, "start-node", "us", fmt.Sprint(node))
		t.Logf("restarted target node %d with %d records committed", node, committed.Load())
	}()

	tx := open()
	defer func() { tx.Close() }()
	var next [partitions]int
	var txns, aborts, fatals, duringKill int
	start := time.Now()
	for {
		end := true
		for p := range partitions {
			end = end && next[p] >= perPart
		}
		if end {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("not done after 10 minutes: positions %v", next)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		err := tx.Begin()
		reached := next
		n := 0
		for p := int32(0); p < partitions && err == nil; p++ {
			for i := next[p]; i < min(next[p]+perTxn, perPart) && err == nil; i++ {
				err = tx.Produce(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder(txnValue(p, i))})
				reached[p] = i + 1
				n++
			}
		}
		if err == nil {
			pos := &produce.Positions{Group: group, Offsets: map[string][]*sarama.PartitionOffsetMetadata{}}
			for p := range int32(partitions) {
				pos.Offsets[topic] = append(pos.Offsets[topic], &sarama.PartitionOffsetMetadata{Partition: p, Offset: int64(reached[p]), LeaderEpoch: -1})
			}
			err = tx.Commit(ctx, pos)
		} else if !errors.Is(err, produce.ErrTxnFatal) {
			if aerr := tx.Abort(ctx); aerr != nil {
				err = aerr
			}
		}
		cancel()
		select {
		case <-killed:
			select {
			case <-restarted:
			default:
				duringKill++
			}
		default:
		}
		switch {
		case err == nil:
			txns++
			next = reached
			committed.Add(int64(n))
			time.Sleep(20 * time.Millisecond) // leave the kill a load, not a race to the end
			continue
		case errors.Is(err, produce.ErrTxnFatal):
			fatals++
			if fatals > 5 {
				t.Fatalf("transaction %d: the producer failed for good %d times, last: %v", txns, fatals, err)
			}
			t.Logf("transaction %d failed for good: %v; a new producer of the id resumes from the positions", txns, err)
			tx.Close()
			tx = open()
		case errors.Is(err, produce.ErrTxnAborted):
			aborts++
			t.Logf("transaction %d aborted: %v; resending from the positions", txns, err)
		default:
			t.Fatalf("transaction %d: %v (neither aborted nor fatal)", txns, err)
		}
		next = readPositions()
	}
	<-restarted
	st := tx.Pipeline().Stats()
	t.Logf("figures: %d transactions committed (%d while a broker was down), %d aborted, %d fatal; %d records reported acknowledged, %d failed; pipeline: peak %d in flight, %d resends, %d epoch bumps; %s",
		txns, duringKill, aborts, fatals, acked.Load(), failed.Load(), st.PeakInFlight, st.Resends, st.EpochBumps, time.Since(start).Round(time.Second))
	if duringKill == 0 && aborts == 0 && fatals == 0 {
		t.Fatalf("no transaction ran while the broker was down: the kill tested nothing")
	}

	if got := readPositions(); got != [partitions]int{perPart, perPart, perPart, perPart, perPart, perPart} {
		t.Fatalf("positions read back %v, want %d for each partition", got, perPart)
	}
	checkReadCommitted(t, us, topic, partitions, perPart)
}

// checkReadCommitted reads every partition of topic read_committed with franz-go and fails
// unless partition p holds txnValue(p, 0..perPart-1), each once, in order.
func checkReadCommitted(t *testing.T, c *cluster, topic string, partitions int32, perPart int) {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make([]int, partitions) // records read per partition
	total, want := 0, int(partitions)*perPart
	quiet := time.Time{}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if bad != nil {
				return
			}
			i := got[r.Partition]
			if i >= perPart {
				bad = fmt.Errorf("%s/%d offset %d: %q beyond the %d records produced (duplicated)", topic, r.Partition, r.Offset, r.Value, perPart)
			} else if w := txnValue(r.Partition, i); string(r.Value) != w {
				bad = fmt.Errorf("%s/%d offset %d: record %d read_committed is %q, want %q (lost, duplicated, out of order or aborted)",
					topic, r.Partition, r.Offset, i, string(r.Value)[:12], w[:12])
			}
			got[r.Partition]++
		})
		if bad != nil {
			t.Fatal(bad)
		}
		total += n
		if total >= want {
			if n > 0 || quiet.IsZero() {
				quiet = time.Now()
			} else if time.Since(quiet) > 3*time.Second {
				break
			}
		}
	}
	t.Logf("figures: read_committed %d records of %d (per partition %v): none lost, duplicated or out of order", total, want, got)
	if total != want {
		t.Fatalf("read_committed %d records, want %d (per partition %v)", total, want, got)
	}
}
