package delivery_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/source"
)

// TestCommitAfterRunsOnceEveryRecordIsAcknowledged: the step CommitAfter runs before the
// positions are committed sees every record of the transaction with its target offset (the
// offset map is written there); a step that fails aborts the transaction: no record visible to
// read_committed, no position stored. The next transaction, whose step succeeds, commits both.
func TestCommitAfterRunsOnceEveryRecordIsAcknowledged(t *testing.T) {
	target, err := embedded.Start("us", 1, kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx := context.Background()
	claims := map[string][]int32{"orders": {0}}
	name := func(s string) string { return s }
	s, _ := member(t, target)
	if err := s.Begin(ctx, claims); err != nil {
		t.Fatal(err)
	}
	position := func() int64 {
		t.Helper()
		pos, err := s.Positions(ctx, claims, name)
		if err != nil {
			t.Fatal(err)
		}
		return pos[source.TopicPartition{Topic: "orders", Partition: 0}].Offset
	}
	track := offsets.NewPartition("orders", 0, 0, 1024)
	tx := s.Txn(s.Of("orders", 0))

	for _, r := range records(track, 0, 50) {
		if err := tx.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	refused := errors.New("map not written")
	_, err = tx.CommitAfter(ctx, func(recs []delivery.Held) error {
		if len(recs) != 50 {
			t.Errorf("the step saw %d records, want 50", len(recs))
		}
		for i, h := range recs {
			if h.Record.Msg.Offset != int64(i) {
				t.Errorf("record %d: target offset %d in the step, want %d (acknowledged before it)", i, h.Record.Msg.Offset, i)
			}
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("a failing step: commit returned %v, want it to abort with the step's error", err)
	}
	if n := committedRecords(t, target); n != 0 {
		t.Fatalf("read_committed sees %d records after the step failed, want 0", n)
	}
	if got := position(); got != -1 {
		t.Fatalf("position %d after the step failed, want none (-1)", got)
	}

	// The failed transaction took target offsets 0..49 and its abort marker 50.
	ran := false
	for _, r := range records(offsets.NewPartition("orders", 0, 0, 1024), 0, 30) {
		if err := tx.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.CommitAfter(ctx, func(recs []delivery.Held) error {
		ran = len(recs) == 30 && recs[0].Record.Msg.Offset == 51 && recs[29].Record.Msg.Offset == 80
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Error("the step did not see the 30 records at target offsets 51 to 80")
	}
	if n := committedRecords(t, target); n != 30 {
		t.Fatalf("read_committed sees %d records, want 30", n)
	}
	if got := position(); got != 30 {
		t.Fatalf("position %d, want 30", got)
	}
}
