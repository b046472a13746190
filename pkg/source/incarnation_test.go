package source

import (
	"context"
	"errors"
	"testing"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// idsCluster reports topic IDs; the rest of Cluster is not used here.
type idsCluster struct {
	Cluster
	ids map[string]string
}

func (c *idsCluster) TopicIDs([]string) (map[string]string, error) { return c.ids, nil }

// refreshCounter is a sarama client whose RefreshMetadata only counts.
type refreshCounter struct {
	sarama.Client
	refreshes int
}

func (c *refreshCounter) RefreshMetadata(...string) error { c.refreshes++; return nil }

// TestRefreshOfARecreatedTopicFailsAndEndsTheSession: once the session runs, a metadata refresh
// (what a partition consumer does before it fetches again) that finds a claimed topic with
// another ID fails, so nothing is fetched from the old position, and ends the session; between
// sessions, and while the ID is unchanged, a refresh passes.
func TestRefreshOfARecreatedTopicFailsAndEndsTheSession(t *testing.T) {
	src := &idsCluster{ids: map[string]string{"orders": "old"}}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](2, 1<<20)},
		Topics: noTopics{}, Source: src,
		NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ended := 0
	inner := &refreshCounter{}
	c := GuardIncarnations(inner, h, func(string) { ended++ })
	ids := map[string]string{"orders": "old"}
	h.topicIDs.Store(&ids)

	src.ids = map[string]string{"orders": "new"}
	if err := c.RefreshMetadata("orders"); err != nil || ended != 0 {
		t.Fatalf("between sessions: err %v, ended %d; want no check", err, ended)
	}
	h.mu.Lock()
	h.joined = true
	h.mu.Unlock()
	src.ids = map[string]string{"orders": "old"}
	if err := c.RefreshMetadata("orders"); err != nil || ended != 0 {
		t.Fatalf("same incarnation: err %v, ended %d", err, ended)
	}
	src.ids = map[string]string{"orders": "new"}
	for _, topics := range [][]string{{"orders"}, nil} {
		err := c.RefreshMetadata(topics...)
		var re *RecreatedError
		if !errors.As(err, &re) || re.Topic != "orders" || re.OldID != "old" || re.NewID != "new" {
			t.Fatalf("refresh %v of a re-created topic: %v", topics, err)
		}
	}
	if ended != 2 || inner.refreshes != 4 {
		t.Fatalf("sessions ended %d times, %d refreshes passed on; want 2 and 4", ended, inner.refreshes)
	}
	if err := c.RefreshMetadata("payments"); err != nil {
		t.Fatalf("a topic the session does not claim: %v", err)
	}
	src.ids = map[string]string{}
	if err := c.RefreshMetadata("orders"); err == nil {
		t.Fatal("a topic the check cannot see yet must not be fetched")
	}
}

// changingCluster is a source whose topic is re-created between the first and the second
// reading of its ID; the committed offset is the old incarnation's, inside the new one's log.
type changingCluster struct {
	reads int
}

func (c *changingCluster) TopicIDs([]string) (map[string]string, error) {
	c.reads++
	if c.reads == 1 {
		return map[string]string{}, nil // deleted, not yet created again
	}
	return map[string]string{"orders": "new"}, nil
}

func (c *changingCluster) Committed(string, map[string][]int32) (map[TopicPartition]Committed, error) {
	return map[TopicPartition]Committed{{"orders", 0}: {Offset: 1500, Metadata: commitMetadata("old")}}, nil
}

func (c *changingCluster) Bounds(map[string][]int32) (map[TopicPartition]Bounds, error) {
	return map[TopicPartition]Bounds{{"orders", 0}: {Start: 0, End: 2000}}, nil
}

// TestClaimsAreNotDecidedAcrossARecreation: a topic re-created while Setup reads where its
// claims start must not have the old incarnation's offset (1500) applied to the new one; the
// session fails and the next one decides again.
func TestClaimsAreNotDecidedAcrossARecreation(t *testing.T) {
	src := &changingCluster{}
	h, err := New(Config{Inboxes: []*ring.Queue[*record.Batch]{ring.NewQueue[*record.Batch](2, 1<<20)},
		Topics: noTopics{}, Source: src,
		NewCommitter: func(func(string) string) offsets.Committer { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.position(context.Background(), map[string][]int32{"orders": {0}}); err == nil || src.reads != 2 {
		t.Fatalf("position across a re-creation: err %v after %d ID reads; want an error", err, src.reads)
	}
}
