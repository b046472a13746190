package mirror

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// sumOf adds up a group's committed offsets of topic.
func sumOf(t *testing.T, p *pair, group, topic string) int64 {
	var n int64
	for _, o := range committed(t, p.us, group, topic) {
		n += o
	}
	return n
}

// TestExactlyOnceAfterAtLeastOnceResumesFromTheSourceGroup: a mirror copies 3000 records
// at-least-once and stops; switched to exactly-once it finds no positions group on the target
// and must resume where the at-least-once run stopped (the source group), not at
// consumer.initial_offset: read_committed, every record once, in order.
func TestExactlyOnceAfterAtLeastOnceResumesFromTheSourceGroup(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 6, nil)
	produce(t, p.europe, numbered("orders", 6, 0, 3000)...)
	alo := p.config("orders")
	first := start(t, alo)
	waitFor(t, "the at-least-once run to commit 3000", 30*time.Second, func() bool {
		var n int64
		for _, o := range committed(t, p.europe, "kmirror", "orders") {
			n += o
		}
		return n == 3000
	})
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	produce(t, p.europe, numbered("orders", 6, 3000, 2000)...)
	second := start(t, withExactlyOnce(t, p.config("orders")))
	waitFor(t, "positions on the target reach 5000", 30*time.Second, func() bool { return positionsSum(t, p, "orders") == 5000 })
	time.Sleep(500 * time.Millisecond) // give a wrong start time to show up as duplicates
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
		t.Fatalf("after a switch from at-least-once to exactly-once: %s", rep)
	}
}

// TestExactlyOnceUpgradeReadsThePositionsGroupUnderItsFormerName: a mirror ran exactly-once
// with its positions in "<group>-positions" (the name before the source alias was part of it);
// the source group is then rewound to the start, so only that group knows where the mirror
// stopped. Started with the default names, it reads the former group and writes nothing twice,
// and the positions are in the new group from then on.
func TestExactlyOnceUpgradeReadsThePositionsGroupUnderItsFormerName(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 6, nil)
	produce(t, p.europe, numbered("orders", 6, 0, 3000)...)
	old := withExactlyOnce(t, p.config("orders"))
	old.Delivery.PositionsGroup = "kmirror-positions"
	first := start(t, old)
	waitFor(t, "the old positions reach 3000", 30*time.Second, func() bool { return sumOf(t, p, "kmirror-positions", "orders") == 3000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	rewind := kadm.Offsets{}
	for part := range int32(6) {
		rewind.Add(kadm.Offset{Topic: "orders", Partition: part, At: 0, LeaderEpoch: -1})
	}
	if _, err := admin(t, p.europe).CommitOffsets(context.Background(), "kmirror", rewind); err != nil {
		t.Fatal(err)
	}

	produce(t, p.europe, numbered("orders", 6, 3000, 2000)...)
	second := start(t, withExactlyOnce(t, p.config("orders")))
	waitFor(t, "positions in the new group reach 5000", 30*time.Second, func() bool { return positionsSum(t, p, "orders") == 5000 })
	time.Sleep(500 * time.Millisecond)
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
		t.Fatalf("after an upgrade to the alias-named positions group: %s", rep)
	}
}
