package offsetmap

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// frozenProducer is the map topic's producer while the leader of its partition is frozen
// (SIGSTOP): a write does not return until released.
type frozenProducer struct {
	sarama.SyncProducer
	release chan struct{}
	mu      sync.Mutex
	written []*sarama.ProducerMessage
}

func (p *frozenProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	<-p.release
	p.mu.Lock()
	p.written = append(p.written, msgs...)
	p.mu.Unlock()
	return nil
}

func (p *frozenProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.written)
}

// TestDoneReturnsByItsDeadlineWhenTheMapPartitionIsFrozen: the last write of a claim's map is
// bounded by its context even when the target never answers, and what was not written is
// written once the target answers again.
func TestDoneReturnsByItsDeadlineWhenTheMapPartitionIsFrozen(t *testing.T) {
	p := &frozenProducer{release: make(chan struct{})}
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: p})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFlusher(FlusherConfig{Store: store, Interval: 50 * time.Millisecond})
	r := NewRecorder("t", 0, "id", 0)
	f.Add(r)
	r.Copied(0, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f.Done(ctx, r) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("Done returned nil with the target frozen")
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Done took %s with a 300ms deadline", took)
		}
		t.Logf("Done returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(3 * time.Second):
		close(p.release)
		t.Fatalf("Done still waiting for the frozen target 3s after its 300ms deadline")
	}
	close(p.release)
}

// TestFlushIsBoundedByWriteTimeoutAndCatchesUp: a flush before a commit returns within
// WriteTimeout while the map partition's leader is frozen, the next one at once (the first write
// still holds the producer), and once the leader answers the chunk is written in its latest
// version.
func TestFlushIsBoundedByWriteTimeoutAndCatchesUp(t *testing.T) {
	p := &frozenProducer{release: make(chan struct{})}
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: p})
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour, WriteTimeout: 200 * time.Millisecond, Index: x})
	r := NewRecorder("t", 0, "id", 0)
	f.Add(r)
	r.Copied(0, 0)
	for i := range 2 {
		start := time.Now()
		if err := f.Flush(context.Background()); err == nil {
			t.Fatalf("flush %d: nil with the target frozen", i)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("flush %d took %s with WriteTimeout 200ms", i, took)
		}
		r.Copied(int64(i+1), int64(i+1))
	}
	close(p.release)
	// The write that outlived its deadline returns now; until it has, flushes give up at once.
	deadline := time.Now().Add(2 * time.Second)
	for err := f.Flush(context.Background()); err != nil; err = f.Flush(context.Background()) {
		if time.Now().After(deadline) {
			t.Fatalf("flush once the target answers: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cs := x.Chunks("t", 0)
	if len(cs) != 1 || cs[0].Copies() != 3 {
		t.Fatalf("after the target answered: %s, want one chunk of 3 copies", fmtChunks(cs))
	}
	if p.count() != 2 {
		t.Fatalf("%d records reached the producer, want 2 (the write that timed out, then the latest version)", p.count())
	}
}

// leaderlessClient is the target's client while the map partition's leader is lost: the end of
// the partition cannot be read until fails runs out, then the partition is empty.
type leaderlessClient struct {
	sarama.Client
	fails     int
	err       error
	calls     int
	refreshed int
}

func (c *leaderlessClient) GetOffset(string, int32, int64) (int64, error) {
	c.calls++
	if c.calls <= c.fails {
		return 0, c.err
	}
	return 0, nil
}

func (c *leaderlessClient) RefreshMetadata(...string) error { c.refreshed++; return nil }

// TestLoadWaitsForTheMapPartitionsLeader: right after the broker that led the map partition was
// lost, Load reads again (with fresh metadata) until a leader answers, instead of failing the
// failover that needs the map; an answer that no wait changes fails at once.
func TestLoadWaitsForTheMapPartitionsLeader(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name      string
		err       error
		fails     int
		wantErr   bool
		wantCalls int
	}{
		{"refused connections", refused, 3, false, 4},
		{"no leader elected yet", sarama.ErrLeaderNotAvailable, 2, false, 3},
		{"not the leader any more", sarama.ErrNotLeaderForPartition, 1, false, 2},
		{"no such topic", sarama.ErrUnknownTopicOrPartition, 5, true, 1},
		{"not authorized", sarama.ErrTopicAuthorizationFailed, 5, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &leaderlessClient{fails: tc.fails, err: tc.err}
			store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Client: c})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = store.Load(ctx, NewIndex())
			if (err != nil) != tc.wantErr || c.calls != tc.wantCalls {
				t.Fatalf("Load: %v after %d reads of the end, want error %v after %d", err, c.calls, tc.wantErr, tc.wantCalls)
			}
			if !tc.wantErr && c.refreshed != tc.fails {
				t.Fatalf("metadata refreshed %d times for %d failed reads", c.refreshed, tc.fails)
			}
		})
	}
	t.Run("bounded by its context", func(t *testing.T) {
		c := &leaderlessClient{fails: 1 << 30, err: refused}
		store, _ := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Client: c})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		if err := store.Load(ctx, NewIndex()); err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("Load with no leader ever: %v after %s, want an error by the 1s deadline", err, time.Since(start))
		}
	})
}

// endlessClient is the target's client while the map partition's leader is lost for the first
// fails reads of its end.
type endlessClient struct {
	sarama.Client
	mu    sync.Mutex
	fails int
	calls int
}

func (c *endlessClient) GetOffset(topic string, partition int32, at int64) (int64, error) {
	c.mu.Lock()
	c.calls++
	failing := c.calls <= c.fails
	c.mu.Unlock()
	if failing {
		return 0, sarama.ErrNotLeaderForPartition
	}
	return c.Client.GetOffset(topic, partition, at)
}

// TestFollowAlwaysReadsAgainAfterAFailedRead: the mirror's and the failover's follow of the map
// (FollowAlways) does not end when a read fails (the map partition's leader lost): it reads
// again after its pause, and the index gets what was written meanwhile.
func TestFollowAlwaysReadsAgainAfterAFailedRead(t *testing.T) {
	const topic = "__kmirror.offset-map.test"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	sc.Producer.Return.Successes = true
	client, err := sarama.NewClient(c.ListenAddrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	flaky := &endlessClient{Client: client, fails: 2}
	store, err := NewStore(StoreConfig{Topic: topic, Client: flaky, Producer: producer, FollowPause: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	chunk := validChunk()
	if err := store.Write(context.Background(), []*Chunk{&chunk}); err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); store.FollowAlways(ctx, x, nil) }()
	defer func() { cancel(); <-followed }()
	deadline := time.Now().Add(10 * time.Second)
	for len(x.Chunks(chunk.Topic, chunk.Partition)) == 0 {
		if time.Now().After(deadline) {
			flaky.mu.Lock()
			defer flaky.mu.Unlock()
			t.Fatalf("the index has no chunk 10 s after two failed reads (%d reads of the end)", flaky.calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	if flaky.calls < 3 {
		t.Fatalf("%d reads of the end, want two failed and then one that followed", flaky.calls)
	}
}

// slowProducer answers each write after a round trip, counting the writes.
type slowProducer struct {
	sarama.SyncProducer
	rtt    time.Duration
	mu     sync.Mutex
	writes int
	msgs   int
}

func (p *slowProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	time.Sleep(p.rtt)
	p.mu.Lock()
	p.writes++
	p.msgs += len(msgs)
	p.mu.Unlock()
	return nil
}

// TestWritesWaitingForTheTurnShareOneWrite: flushes that come while a write is under way (each
// exactly-once slot writes its recorders before it commits) are written together by the next
// write, not one write each: 8 slots at 100 ms a round trip take two writes and about 200 ms,
// not 8 and 800 ms. Each returns only once its own chunk is written.
func TestWritesWaitingForTheTurnShareOneWrite(t *testing.T) {
	p := &slowProducer{rtt: 100 * time.Millisecond}
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: p})
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour, Index: x})
	const slots = 8
	rs := make([]*Recorder, slots)
	for i := range rs {
		rs[i] = NewRecorder("t", int32(i), "id", 0)
		f.Add(rs[i])
		rs[i].Copied(0, int64(i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, slots)
	for i, r := range rs {
		wg.Go(func() {
			errs[i] = f.Write(context.Background(), r)
			if err := errs[i]; err == nil && len(x.Chunks("t", int32(i))) != 1 {
				errs[i] = fmt.Errorf("returned before its chunk was written")
			}
		})
		if i == 0 {
			time.Sleep(10 * time.Millisecond) // the first write is under way
		}
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("write of slot %d: %v", i, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("%d flushes: %d writes of %d chunks in %s", slots, p.writes, p.msgs, took.Round(time.Millisecond))
	if p.writes > 2 || p.msgs != slots {
		t.Fatalf("%d flushes made %d writes of %d chunks, want 2 writes of %d chunks (the first, then all that waited for it)",
			slots, p.writes, p.msgs, slots)
	}
}

// failingProducer fails the writes while fail is set and counts the messages of the others.
type failingProducer struct {
	sarama.SyncProducer
	mu   sync.Mutex
	fail bool
	msgs int
}

func (p *failingProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return fmt.Errorf("NOT_LEADER_OR_FOLLOWER")
	}
	p.msgs += len(msgs)
	return nil
}

// TestFlushOfEveryRecorderWritesWhatChangedSinceTheLast: a flush of every recorder writes the
// chunks of the recorders that copied since the last flush, and only theirs; what a failed
// flush took is written by the next.
func TestFlushOfEveryRecorderWritesWhatChangedSinceTheLast(t *testing.T) {
	p := &failingProducer{}
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: p})
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour, Index: x})
	rs := make([]*Recorder, 10)
	for i := range rs {
		rs[i] = NewRecorder("t", int32(i), "id", 0)
		if i == 0 {
			rs[i].Copied(0, 100) // before Add: written by the first flush all the same
		}
		f.Add(rs[i])
	}
	rs[3].Copied(0, 300)
	ctx := context.Background()
	if err := f.Flush(ctx); err != nil || p.msgs != 2 {
		t.Fatalf("first flush: %v, %d chunks written; want the 2 of partitions 0 and 3", err, p.msgs)
	}
	if err := f.Flush(ctx); err != nil || p.msgs != 2 {
		t.Fatalf("a flush with nothing copied since: %v, %d chunks written in all; want none more", err, p.msgs)
	}
	rs[5].Copied(0, 500)
	p.fail = true
	if err := f.Flush(ctx); err == nil {
		t.Fatal("a flush the target refused returned nil")
	}
	p.fail = false
	if err := f.Flush(ctx); err != nil || p.msgs != 3 || len(x.Chunks("t", 5)) != 1 {
		t.Fatalf("the flush after the refused one: %v, %d chunks written in all, %d of partition 5; want 3 and 1",
			err, p.msgs, len(x.Chunks("t", 5)))
	}
	if err := f.Done(ctx, rs[5]); err != nil {
		t.Fatal(err)
	}
	rs[5].Copied(1, 501) // after Done: the claim's own last write takes it, no flush of every recorder
	if err := f.Flush(ctx); err != nil || p.msgs != 3 {
		t.Fatalf("a flush after the recorder was done: %v, %d chunks written in all; want 3", err, p.msgs)
	}
}

// TestFlushesRacingCopiesLoseNoChunk: recorders copy while flushes of every recorder run; after
// the last copy one flush writes each recorder's chunk in its final state.
func TestFlushesRacingCopiesLoseNoChunk(t *testing.T) {
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: &failingProducer{}})
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour, Index: x})
	const recorders, copies = 8, 3000
	stop := make(chan struct{})
	var flushes sync.WaitGroup
	flushes.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = f.Flush(context.Background())
			}
		}
	})
	var copiers sync.WaitGroup
	for i := range recorders {
		r := NewRecorder("t", int32(i), "id", 0)
		f.Add(r)
		copiers.Go(func() {
			for o := range int64(copies) {
				r.Copied(o, o)
			}
		})
	}
	copiers.Wait()
	close(stop)
	flushes.Wait()
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range int32(recorders) {
		cs := x.Chunks("t", i)
		if len(cs) != 1 || cs[0].Steps[0].Copy != copies {
			t.Fatalf("partition %d: chunks %+v in the map, want one of %d copies", i, cs, copies)
		}
	}
}

// BenchmarkFlushOfIdleRecorders is what each flush_interval costs with 10,000 owned partitions
// and nothing copied since the last flush.
func BenchmarkFlushOfIdleRecorders(b *testing.B) {
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: &failingProducer{}})
	if err != nil {
		b.Fatal(err)
	}
	f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour})
	for i := range 10000 {
		r := NewRecorder("orders", int32(i), "", 0)
		f.Add(r)
		r.Copied(0, 0)
	}
	if err := f.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := f.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDoneOfManyClaimsAtOnce is the end of 10,000 claims at once (a revocation or a stop
// at 10,000 owned partitions), each with a chunk not yet written, at 2 ms a write.
func BenchmarkDoneOfManyClaimsAtOnce(b *testing.B) {
	store, err := NewStore(StoreConfig{Topic: "__kmirror.offset-map.test", Producer: &slowProducer{rtt: 2 * time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		b.StopTimer()
		f := NewFlusher(FlusherConfig{Store: store, Interval: time.Hour})
		rs := make([]*Recorder, 10000)
		for i := range rs {
			rs[i] = NewRecorder("orders", int32(i), "", 0)
			f.Add(rs[i])
			rs[i].Copied(0, int64(i))
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for _, r := range rs {
			wg.Go(func() {
				if err := f.Done(context.Background(), r); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
}
