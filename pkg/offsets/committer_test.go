package offsets

import (
	"context"
	"errors"
	"testing"

	"github.com/IBM/sarama"
)

type fakeSession struct{ marked map[string]int64 }

func (s *fakeSession) MemberID() string    { return "m" }
func (s *fakeSession) GenerationID() int32 { return 7 }
func (s *fakeSession) MarkOffset(topic string, partition int32, offset int64, _ string) {
	s.marked[topic] = offset
}

// fakeCoordinator answers each commit with the error of its partition (none by default), or
// fails the whole request.
type fakeCoordinator struct {
	reqErr   error
	partErr  map[int32]sarama.KError
	requests int
}

func (c *fakeCoordinator) CommitOffset(req *sarama.OffsetCommitRequest) (*sarama.OffsetCommitResponse, error) {
	c.requests++
	if c.reqErr != nil {
		return nil, c.reqErr
	}
	resp := &sarama.OffsetCommitResponse{}
	for _, p := range []int32{0, 1} {
		resp.AddError("t", p, c.partErr[p])
	}
	return resp, nil
}

// TestGroupCommitterReportsEachPartitionsOutcome checks that a commit's failures are returned per
// partition, that failed partitions are committed again next time, and that a commit with
// nothing marked sends nothing.
func TestGroupCommitterReportsEachPartitionsOutcome(t *testing.T) {
	ctx := context.Background()
	sess := &fakeSession{marked: map[string]int64{}}
	coord := &fakeCoordinator{partErr: map[int32]sarama.KError{1: sarama.ErrGroupAuthorizationFailed}}
	conf := sarama.NewConfig()
	conf.Version = sarama.V3_6_0_0
	g := NewGroupCommitter(sess, coord, "g", conf, nil)

	if err := g.Commit(ctx); err != nil || coord.requests != 0 {
		t.Fatalf("empty commit: %v after %d requests", err, coord.requests)
	}
	g.Mark("t", 0, 10)
	g.Mark("t", 1, 20)
	err := g.Commit(ctx)
	var ce *CommitError
	if !errors.As(err, &ce) || len(ce.Partitions) != 1 || ce.Partitions[0].Partition != 1 || ce.Partitions[0].Offset != 20 {
		t.Fatalf("commit error %v, want partition 1 at 20", err)
	}
	if !errors.Is(err, sarama.ErrGroupAuthorizationFailed) {
		t.Fatalf("commit error %v does not wrap the broker's error", err)
	}
	if g.Pending() != 1 {
		t.Fatalf("%d partitions pending, want the failed one", g.Pending())
	}
	coord.partErr = nil
	if err := g.Commit(ctx); err != nil || g.Pending() != 0 {
		t.Fatalf("retry: %v, %d pending", err, g.Pending())
	}

	g.Mark("t", 0, 30)
	coord.reqErr = errors.New("connection reset")
	if err := g.Commit(ctx); !errors.As(err, &ce) || len(ce.Partitions) != 1 {
		t.Fatalf("failed request: %v, want partition 0 reported", err)
	}
	if sess.marked["t"] != 30 {
		t.Fatal("marks must reach the session too, or sarama's flush at close would lower the offset")
	}
}

// echoCoordinator accepts every partition of topic "t" below n that a request carries, and
// notes the largest request.
type echoCoordinator struct {
	n, requests, largest int
}

func (c *echoCoordinator) CommitOffset(req *sarama.OffsetCommitRequest) (*sarama.OffsetCommitResponse, error) {
	c.requests++
	resp := &sarama.OffsetCommitResponse{}
	blocks := 0
	for p := int32(0); p < int32(c.n); p++ {
		if _, _, err := req.Offset("t", p); err == nil {
			resp.AddError("t", p, sarama.ErrNoError)
			blocks++
		}
	}
	c.largest = max(c.largest, blocks)
	return resp, nil
}

func TestGroupCommitterSplitsLargeCommits(t *testing.T) {
	const n = 2500
	coord := &echoCoordinator{n: n}
	conf := sarama.NewConfig()
	conf.Version = sarama.V3_6_0_0
	g := NewGroupCommitter(&fakeSession{marked: map[string]int64{}}, coord, "g", conf, nil)
	for p := int32(0); p < n; p++ {
		g.Mark("t", p, int64(p)+1)
	}
	if err := g.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if coord.requests != 3 || coord.largest > commitChunk {
		t.Fatalf("%d requests, the largest of %d partitions; want 3 of at most %d", coord.requests, coord.largest, commitChunk)
	}
	if g.Pending() != 0 {
		t.Fatalf("%d partitions still pending", g.Pending())
	}
}
