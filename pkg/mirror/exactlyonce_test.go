package mirror

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kmirror/kmirror/pkg/config"
)

// withExactlyOnce turns cfg to exactly-once delivery with small slots and transactions.
func withExactlyOnce(t *testing.T, cfg *config.Config) *config.Config {
	t.Helper()
	cfg.Delivery.Mode = config.ExactlyOnce
	cfg.Delivery.Slots = 4
	cfg.Delivery.Transaction.MaxRecords = 500
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestExactlyOnceResumesFromThePositionsOnTheTarget: with exactly-once delivery the source
// positions travel in the transactions to the positions group on the target, and a member
// resumes from there, not from the source group: a restart after the source group's offsets
// were moved back to the start writes nothing twice.
func TestExactlyOnceResumesFromThePositionsOnTheTarget(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 6, nil)
	produce(t, p.europe, numbered("orders", 6, 0, 3000)...)
	cfg := withExactlyOnce(t, p.config("orders"))

	positions := func() int64 {
		var n int64
		for _, o := range committed(t, p.us, "kmirror-positions", "orders") {
			n += o
		}
		return n
	}
	first := start(t, cfg)
	waitFor(t, "positions on the target reach 3000", 30*time.Second, func() bool { return positions() == 3000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	if rep := compare(t, p, map[string]string{"orders": "orders"}); !rep.Exact() {
		t.Fatalf("after the first run: %s", rep)
	}

	// The source group's offsets back to the start: an at-least-once mirror would copy all
	// 3000 records again.
	adm := admin(t, p.europe)
	rewind := kadm.Offsets{}
	for part := range int32(6) {
		rewind.Add(kadm.Offset{Topic: "orders", Partition: part, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(context.Background(), "kmirror", rewind); err != nil {
		t.Fatal(err)
	}

	produce(t, p.europe, numbered("orders", 6, 3000, 2000)...)
	second := start(t, cfg)
	waitFor(t, "positions on the target reach 5000", 30*time.Second, func() bool { return positions() == 5000 })
	time.Sleep(500 * time.Millisecond) // give a wrong re-read time to show up as duplicates
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	rep := compare(t, p, map[string]string{"orders": "orders"})
	if !rep.Exact() {
		t.Fatalf("after a restart with the source group rewound: %s", rep)
	}
}
