package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/worker"
)

// member is one kmirror member's slots on the target.
func member(t *testing.T, target *embedded.Cluster) (*delivery.Slots, sarama.Client) {
	t.Helper()
	return memberWith(t, target, delivery.Limits{Records: 1000, Bytes: 1 << 20, Age: time.Hour})
}

// memberWith is member with transactions sized by limits.
func memberWith(t *testing.T, target *embedded.Cluster, limits delivery.Limits) (*delivery.Slots, sarama.Client) {
	t.Helper()
	base := func() *sarama.Config {
		c := sarama.NewConfig()
		c.Version = sarama.V3_6_0_0
		return c
	}
	client, err := sarama.NewClient(target.Addrs(), base())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	open := worker.OpenTxn(target.Addrs(), config.Default().Producer, time.Minute, zap.NewNop(),
		func(string, int) *sarama.Config { return base() })
	s, err := delivery.New(delivery.Config{
		Slots: 1, Prefix: "kmirror", Group: "kmirror-positions", Open: open, Bound: 1 << 20,
		Limits: limits, Target: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, client
}

// records makes n records of orders/0 from offset from, tracked by track.
func records(track *offsets.Partition, from, n int) []*record.Record {
	out := make([]*record.Record, n)
	for i := range out {
		off := int64(from + i)
		m := &sarama.ConsumerMessage{Topic: "orders", Partition: 0, Offset: off, Timestamp: time.Now(),
			Key: []byte(fmt.Sprint(off)), Value: []byte("v")}
		out[i] = record.From(m, "orders", track, 1<<20)
		seq, _ := track.Register(off)
		out[i].Seq = seq
	}
	return out
}

// committedRecords counts what a read_committed consumer sees in orders.
func committedRecords(t *testing.T, c *embedded.Cluster) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics("orders"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n
		}
		n += fs.NumRecords()
	}
}

// TestAFencedMemberCommitsNothing is the zombie of the package doc: member A owns the slot and
// writes a transaction; member B claims the slot (its Begin initialises the slot's id) before A
// commits. A's commit fails as fenced, nothing of its transaction is visible to read_committed
// and no position of it is stored; B's transactions commit and store their positions.
func TestAFencedMemberCommitsNothing(t *testing.T) {
	target, err := embedded.Start("us", 1, kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx := context.Background()
	claims := map[string][]int32{"orders": {0}}
	name := func(s string) string { return s }

	a, _ := member(t, target)
	if err := a.Begin(ctx, claims); err != nil {
		t.Fatal(err)
	}
	ta := a.Txn(a.Of("orders", 0))
	trackA := offsets.NewPartition("orders", 0, 0, 1024)
	for _, r := range records(trackA, 0, 100) {
		if err := ta.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	b, _ := member(t, target)
	began0 := time.Now()
	if err := b.Begin(ctx, claims); err != nil { // fences A
		t.Fatal(err)
	}
	t.Logf("B's Begin took %s", time.Since(began0))
	began := time.Now()
	recs, err := ta.Commit(ctx)
	t.Logf("the fenced commit returned after %s: %v", time.Since(began), err)
	if err == nil {
		t.Fatal("the fenced member's transaction committed")
	}
	if !errors.Is(err, delivery.ErrFenced) {
		t.Logf("the fenced commit failed with %v (not recognised as fenced)", err)
	}
	if len(recs) != 100 {
		t.Fatalf("the failed commit returned %d records, want the 100 of its transaction", len(recs))
	}
	pos, err := b.Positions(ctx, claims, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := pos[source.TopicPartition{Topic: "orders", Partition: 0}].Offset; got != -1 {
		t.Fatalf("the position after a fenced transaction is %d, want none (-1)", got)
	}
	if n := committedRecords(t, target); n != 0 {
		t.Fatalf("read_committed sees %d records of the fenced transaction, want 0", n)
	}

	tb := b.Txn(b.Of("orders", 0))
	trackB := offsets.NewPartition("orders", 0, 0, 1024)
	for _, r := range records(trackB, 0, 60) {
		if err := tb.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pos, err = b.Positions(ctx, claims, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := pos[source.TopicPartition{Topic: "orders", Partition: 0}].Offset; got != 60 {
		t.Fatalf("the position after B's transaction is %d, want 60", got)
	}
	if n := committedRecords(t, target); n != 60 {
		t.Fatalf("read_committed sees %d records, want B's 60", n)
	}
}

// ordersTxn is the producer of slot 0 of a member whose session began with partition 0 of
// "orders" on a one-broker target, with limits; all closed when t ends.
func ordersTxn(t *testing.T, limits delivery.Limits) *delivery.Txn {
	t.Helper()
	target, err := embedded.Start("us", 1, kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	s, _ := memberWith(t, target, limits)
	if err := s.Begin(context.Background(), map[string][]int32{"orders": {0}}); err != nil {
		t.Fatal(err)
	}
	return s.Txn(0)
}

// TestABackloggedTransactionStaysOpenLonger: a transaction is due at Age, or at Backlog while
// records wait for its slot, and at its record count whatever its age.
func TestABackloggedTransactionStaysOpenLonger(t *testing.T) {
	ctx := context.Background()
	tx := ordersTxn(t, delivery.Limits{Records: 3, Bytes: 1 << 20, Age: 100 * time.Millisecond, Backlog: time.Second})
	recs := records(offsets.NewPartition("orders", 0, 0, 1024), 0, 3)
	for _, r := range recs[:2] {
		if err := tx.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	began := tx.Deadline(false).Add(-100 * time.Millisecond)
	if d := tx.Deadline(true).Sub(began); d != time.Second {
		t.Errorf("backlogged deadline %s after it began, want 1s", d)
	}
	for _, c := range []struct {
		after      time.Duration
		backlogged bool
		due        bool
	}{
		{50 * time.Millisecond, false, false},
		{100 * time.Millisecond, false, true},
		{100 * time.Millisecond, true, false},
		{999 * time.Millisecond, true, false},
		{time.Second, true, true},
	} {
		if got := tx.Due(began.Add(c.after), c.backlogged); got != c.due {
			t.Errorf("%s after it began, backlogged %v: due %v, want %v", c.after, c.backlogged, got, c.due)
		}
	}
	if err := tx.Send(ctx, recs[2]); err != nil {
		t.Fatal(err)
	}
	if !tx.Due(began, true) {
		t.Error("a transaction holding max_records records is not due at once while backlogged")
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if tx.Due(began.Add(time.Hour), false) {
		t.Error("no transaction is open, yet one is due")
	}
}

// TestAgeCountsFromTheOldestRecordButBacklogFromTheBeginning: records that reached the slot
// before their transaction began (they waited for the previous commit) make it due by Age that
// much sooner; a backlogged transaction still stays open until Backlog after it began, and a
// later arrival moves nothing.
func TestAgeCountsFromTheOldestRecordButBacklogFromTheBeginning(t *testing.T) {
	ctx := context.Background()
	tx := ordersTxn(t, delivery.Limits{Records: 100, Bytes: 1 << 20, Age: 100 * time.Millisecond, Backlog: time.Second})
	if err := tx.Send(ctx, records(offsets.NewPartition("orders", 0, 0, 1024), 0, 1)[0]); err != nil {
		t.Fatal(err)
	}
	began := tx.Deadline(false).Add(-100 * time.Millisecond)
	tx.Arrived(began.Add(time.Millisecond)) // after it began: nothing moves
	if got := tx.Deadline(false); !got.Equal(began.Add(100 * time.Millisecond)) {
		t.Fatalf("a later arrival moved the deadline to %s after it began", got.Sub(began))
	}
	tx.Arrived(began.Add(-60 * time.Millisecond))
	if got := tx.Deadline(false).Sub(began); got != 40*time.Millisecond {
		t.Errorf("deadline %s after it began, want 40ms (100ms after the oldest record arrived)", got)
	}
	if !tx.Due(began.Add(40*time.Millisecond), false) || tx.Due(began.Add(39*time.Millisecond), false) {
		t.Error("not due exactly 100ms after the oldest record arrived")
	}
	if tx.Due(began.Add(999*time.Millisecond), true) || !tx.Due(began.Add(time.Second), true) {
		t.Error("a backlogged transaction is not due exactly Backlog after it began")
	}
	if d := tx.Deadline(true).Sub(began); d != time.Second {
		t.Errorf("backlogged deadline %s after it began, want 1s", d)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
