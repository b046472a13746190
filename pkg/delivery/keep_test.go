package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/source"
)

// TestRefreshWritesBackAPositionTheTargetExpired: a slot commits a transaction for orders/0
// and then sees no record. The target expires the position (the positions group has no members;
// here its offsets are deleted, as the broker's retention does): the refresh of a position not
// committed within the refresh interval commits it again, and a position committed within it is
// left alone.
func TestRefreshWritesBackAPositionTheTargetExpired(t *testing.T) {
	target, err := embedded.Start("us", 1, kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx := context.Background()
	claims := map[string][]int32{"orders": {0}}
	s, _ := member(t, target)
	if err := s.Begin(ctx, claims); err != nil {
		t.Fatal(err)
	}
	tx := s.Txn(s.Of("orders", 0))
	for _, r := range records(offsets.NewPartition("orders", 0, 0, 1024), 0, 10) {
		if err := tx.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	position := func() int64 {
		t.Helper()
		pos, err := s.Positions(ctx, claims, func(s string) string { return s })
		if err != nil {
			t.Fatal(err)
		}
		return pos[source.TopicPartition{Topic: "orders", Partition: 0}].Offset
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(target.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	expire := func() {
		t.Helper()
		resp, err := kadm.NewClient(cl).DeleteOffsets(ctx, "kmirror-positions", kadm.TopicsSet{"orders": {0: {}}})
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	expire()
	if n, err := tx.Refresh(ctx, time.Now(), time.Hour); err != nil || n != 0 {
		t.Fatalf("a position committed just now was refreshed: %d, %v", n, err)
	}
	if got := position(); got != -1 {
		t.Fatalf("the deleted position reads %d, want -1 (gone)", got)
	}
	// Positions found nothing to keep; the producer still knows what it committed.
	if n, err := tx.Refresh(ctx, time.Now().Add(2*time.Hour), time.Hour); err != nil || n != 1 {
		t.Fatalf("refreshing a position last committed two hours ago: %d refreshed, %v; want 1", n, err)
	}
	if got := position(); got != 10 {
		t.Fatalf("after the refresh the position reads %d, want 10", got)
	}
}
