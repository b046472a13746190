package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/source"
)

// TestARebalanceWhileATransactionHoldsOnlySkipsCommitsItFirst: a transaction that holds only
// records kmirror does not copy (they came from the target) still carries their partition's
// position, so the claim must not drain before it commits. The drain used to end at once (the
// skips were acknowledged when skipped); the next session's Begin then closed the slot's
// producer under the open transaction and the age timer committed it on the closed producer
// (a panic in sarama, and a race on the transaction's state). Now the drain ends with the
// position on the target past the skipped records, and the next session goes on without a
// panic.
func TestARebalanceWhileATransactionHoldsOnlySkipsCommitsItFirst(t *testing.T) {
	target, base, client := txnTarget(t, 1)
	open := OpenTxn(target.Addrs(), config.Default().Producer, time.Minute, zap.NewNop(),
		func(string, int) *sarama.Config { return base() })
	const age = 300 * time.Millisecond
	txns, err := delivery.New(delivery.Config{
		Slots: 1, Prefix: "kmirror", Group: "kmirror-positions", Open: open, Bound: 1 << 20,
		Limits: delivery.Limits{Records: 1000, Bytes: 1 << 20, Age: age}, Target: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer txns.Close()
	claims := map[string][]int32{"src": {0}}
	if err := txns.Begin(context.Background(), claims); err != nil {
		t.Fatal(err)
	}

	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	for _, r := range feed(t, inbox, track, 3, 1<<20, nil) {
		r.FromTarget = true
	}
	var fatal atomic.Value
	stop := runTxnWorker(t, Config{Inbox: inbox, Txns: txns, Fatal: func(err error) { fatal.CompareAndSwap(nil, err) }})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()

	// The claim is revoked: it drains, then the next session begins.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	began := time.Now()
	if err := track.Drain(dctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	drained := time.Since(began)
	if err := txns.Begin(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * age) // the old transaction's age timer, had it stayed open
	pos, err := txns.Positions(context.Background(), claims, func(string) string { return "dst" })
	if err != nil {
		t.Fatal(err)
	}
	if got := pos[source.TopicPartition{Topic: "src", Partition: 0}].Offset; got != 3 {
		t.Fatalf("the claim drained after %s with the position on the target at %d, want 3 (past the 3 skipped records): "+
			"the drain did not wait for the transaction holding them", drained, got)
	}
	if err, _ := fatal.Load().(error); err != nil {
		t.Fatalf("the mirror was stopped: %v", err)
	}
}
