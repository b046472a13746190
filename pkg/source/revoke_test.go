package source

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/group"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// memberCommitter commits like a group member's committer (pkg/group.Committer): a position is
// committed only while the partition is owned, and one marked for a partition no longer owned is
// dropped. Its first Commit waits at gate once it has taken what is marked, as a commit does
// that waits for the coordinator.
type memberCommitter struct {
	entered chan struct{}
	gate    chan struct{}
	fail    error // the first Commit's answer, once the gate opens

	mu        sync.Mutex
	owned     bool
	calls     int
	pending   map[int32]int64
	committed map[int32]int64
}

func (c *memberCommitter) Mark(_ string, partition int32, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[partition] = next
}

func (c *memberCommitter) Commit(context.Context) error {
	c.mu.Lock()
	c.calls++
	first := c.calls == 1
	c.mu.Unlock()
	if first {
		close(c.entered)
		<-c.gate
		if c.fail != nil {
			return c.fail // stays marked
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for p, next := range c.pending {
		if !c.owned {
			err = errors.New("partition not owned by this member")
		} else {
			c.committed[p] = next
		}
		delete(c.pending, p)
	}
	return err
}

// TestRevokedCommitsWhatAPeriodicCommitUnderWayHasTaken: a periodic commit that has already
// taken a partition's drained position and waits for the coordinator when the partition is
// revoked must not leave Revoked with nothing to commit: Revoked returns only once that position
// is committed (the member stops owning the partition when Revoked returns, and a commit after
// that is refused), also when the commit under way fails.
func TestRevokedCommitsWhatAPeriodicCommitUnderWayHasTaken(t *testing.T) {
	for _, fail := range []error{nil, errors.New("REBALANCE_IN_PROGRESS")} {
		c := &memberCommitter{entered: make(chan struct{}), gate: make(chan struct{}), fail: fail, owned: true,
			pending: map[int32]int64{}, committed: map[int32]int64{}}
		inbox := ring.NewQueue[*record.Batch](8, 1<<20)
		ff := &fakeFetcher{sinks: map[int32]fetch.Sink{}}
		h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{inbox}, Topics: noTopics{}, InFlight: 1024, Fetcher: ff,
			DrainTimeout: 5 * time.Second, NewCommitter: func(func(string) string) offsets.Committer { return c }})
		if err != nil {
			t.Fatal(err)
		}
		h.committer = c
		if err := h.startClaim(context.Background(), "orders", 0, 0); err != nil {
			t.Fatal(err)
		}
		ff.sinks[0].Deliver(batch(0, 10))
		b, ok := inbox.TryPop()
		if !ok || len(b.Records) != 10 {
			t.Fatal("the batch did not reach the inbox")
		}
		for _, r := range b.Records {
			r.Track.Ack(r.Seq) // the target acknowledged all ten
		}

		periodic := make(chan error, 1)
		go func() { periodic <- h.commit(context.Background()) }()
		<-c.entered // it has taken orders/0@10 and waits for the coordinator
		revoked := make(chan struct{})
		go func() {
			h.Revoked(context.Background(), group.Generation{ID: 1}, group.Partitions{"orders": {0}})
			c.mu.Lock()
			c.owned = false // the member stops owning what Revoked returned
			c.mu.Unlock()
			close(revoked)
		}()
		select {
		case <-revoked:
		case <-time.After(300 * time.Millisecond):
		}
		close(c.gate)
		<-revoked
		<-periodic
		h.stopPushing()

		c.mu.Lock()
		got, ok := c.committed[0]
		c.mu.Unlock()
		if !ok || got != 10 {
			t.Fatalf("first commit failing with %v: after Revoked, orders/0 committed at %d (committed: %v), want 10: "+
				"the drained position was not committed before the partition was given up", fail, got, ok)
		}
	}
}
