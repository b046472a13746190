package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/produce"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/topics"
)

// target is a fake target cluster: producers opened on it take a partition's records in one
// call (as the produce pipeline does), hand each, one at a time and in order, to verdict, keep
// what it accepts in written, and tell the worker the fates in that order.
type target struct {
	mu        sync.Mutex
	verdict   func(bound int, m *sarama.ProducerMessage) error
	written   []string // "topic/partition@offset", in the order the target took them
	bounds    []int    // the batch bound of every producer opened
	producers []*fakeProducer
	// runs tells the fates of a hand-over a run at a time: its consecutive records of one fate in
	// one call, as the pipeline tells a batch's; by default, one record per call.
	runs   bool
	handed []int // records per hand-over
}

func (tg *target) open(bound int, done produce.Done) (Producer, error) {
	p := &fakeProducer{tg: tg, bound: bound, done: done,
		in: make(chan []*sarama.ProducerMessage), finished: make(chan struct{})}
	tg.mu.Lock()
	tg.bounds = append(tg.bounds, bound)
	tg.producers = append(tg.producers, p)
	tg.mu.Unlock()
	go p.run()
	return p, nil
}

func (tg *target) log() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.written...)
}

// fakeProducer is a producer on a fake target (a Producer).
type fakeProducer struct {
	tg       *target
	bound    int
	done     produce.Done
	in       chan []*sarama.ProducerMessage // hand-overs, in order
	mu       sync.Mutex
	aborted  bool
	closed   bool
	finished chan struct{} // closed once every outcome was told
}

func (p *fakeProducer) ProduceBatch(ctx context.Context, msgs []*sarama.ProducerMessage) int {
	p.tg.mu.Lock()
	p.tg.handed = append(p.tg.handed, len(msgs))
	p.tg.mu.Unlock()
	topic, partition := msgs[0].Topic, msgs[0].Partition
	for _, m := range msgs {
		if m.Topic != topic || m.Partition != partition {
			panic(fmt.Sprintf("a batch of %s/%d holds a record of %s/%d", topic, partition, m.Topic, m.Partition))
		}
	}
	select {
	case p.in <- slices.Clone(msgs): // the worker reuses msgs once the call returns
		return len(msgs)
	case <-ctx.Done():
		return 0
	}
}

func (p *fakeProducer) run() {
	defer close(p.finished)
	for msgs := range p.in {
		var run []*sarama.ProducerMessage
		var runErr error
		for _, m := range msgs {
			err := p.judge(m)
			if !p.tg.runs {
				p.done([]*sarama.ProducerMessage{m}, err) // told at once, before the next is judged
				continue
			}
			if len(run) > 0 && err != runErr {
				p.done(run, runErr)
				run = nil
			}
			run, runErr = append(run, m), err
		}
		if len(run) > 0 {
			p.done(run, runErr)
		}
	}
}

// judge returns the target's verdict on m, noting m as written when it takes it.
func (p *fakeProducer) judge(m *sarama.ProducerMessage) error {
	p.mu.Lock()
	aborted := p.aborted
	p.mu.Unlock()
	var err error
	switch {
	case aborted:
		err = sarama.ErrClosedClient
	case m.ByteSize(2) > p.bound:
		err = sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes")
	case p.tg.verdict != nil:
		err = p.tg.verdict(p.bound, m)
	}
	p.mu.Lock()
	if p.aborted && err == nil {
		err = sarama.ErrClosedClient // held in the producer (not yet sent) when the connection closed
	}
	p.mu.Unlock()
	if err == nil {
		p.tg.mu.Lock()
		p.tg.written = append(p.tg.written, fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, record.Of(m).Offset))
		p.tg.mu.Unlock()
	}
	return err
}

func (p *fakeProducer) AsyncClose() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.in)
	}
}
func (p *fakeProducer) Done() <-chan struct{}             { return p.finished }
func (p *fakeProducer) Knows(string, int32) (bool, error) { return true, nil }
func (p *fakeProducer) Release()                          {}
func (p *fakeProducer) Abort() {
	p.mu.Lock()
	p.aborted = true
	p.mu.Unlock()
}

type countingObserver struct {
	NopObserver
	mu                     sync.Mutex
	acked, skipped, failed int
}

func (c *countingObserver) Acked(int, *record.Record, time.Time) {
	c.mu.Lock()
	c.acked++
	c.mu.Unlock()
}

func (c *countingObserver) Skipped(int, *record.Record, error) {
	c.mu.Lock()
	c.skipped++
	c.mu.Unlock()
}

func (c *countingObserver) Failed(int, *record.Record, error) {
	c.mu.Lock()
	c.failed++
	c.mu.Unlock()
}

func (c *countingObserver) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked + c.skipped + c.failed
}

// feed registers n records of one partition of topic "src" (target "dst"), pushes them into
// inbox in batches of up to three records and returns them; sizes[i] overrides the value size
// of record i.
func feed(t *testing.T, inbox *ring.Queue[*record.Batch], track *offsets.Partition, n int, limit int, sizes map[int]int) []*record.Record {
	t.Helper()
	var fed []*record.Record
	for i := 0; i < n; i++ {
		value := make([]byte, 10)
		if s, ok := sizes[i]; ok {
			value = []byte(strings.Repeat("v", s))
		}
		m := &sarama.ConsumerMessage{Topic: track.Topic(), Partition: track.Partition(), Offset: int64(i), Value: value}
		r := record.From(m, "dst", track, limit)
		seq, err := track.Register(m.Offset)
		if err != nil {
			t.Fatal(err)
		}
		r.Seq = seq
		fed = append(fed, r)
	}
	push(t, inbox, fed, 3)
	return fed
}

// push pushes rs into inbox in batches of up to per records.
func push(t *testing.T, inbox *ring.Queue[*record.Batch], rs []*record.Record, per int) {
	t.Helper()
	for len(rs) > 0 {
		b := &record.Batch{Records: rs[:min(per, len(rs))]}
		for _, r := range b.Records {
			b.Size += r.Size
		}
		if !inbox.TryPush(b, b.Size) {
			t.Fatal("inbox full")
		}
		rs = rs[len(b.Records):]
	}
}

// startWorker starts a worker of cfg and returns it and stop, which cancels it and returns what
// its Run returned (once; later calls return the same).
func startWorker(t *testing.T, cfg Config) (w *Worker, stop func() error) {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

// runWorker runs a worker until until holds (or 10 s pass), then stops it.
func runWorker(t *testing.T, cfg Config, until func() bool) *Worker {
	t.Helper()
	w, stop := startWorker(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for !until() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestRecordsGivenBackAreSentAgainInOrder: the target is unreachable from offset 5 on (sarama
// gives the records back: no broker to talk to). Nothing at or after offset 5 is acknowledged
// or written while it is away, and once it is back every record is written once, in order,
// with no fatal error: the outage is the delivery deadline's to judge, not the producer's.
//
// The producer tells the fates one record per call, or a run of records of one fate per call (as
// the produce pipeline tells a batch's: records written and records given back in one call each).
func TestRecordsGivenBackAreSentAgainInOrder(t *testing.T) {
	for _, runs := range []bool{false, true} {
		t.Run(map[bool]string{false: "fates-by-record", true: "fates-by-run"}[runs], func(t *testing.T) {
			testRecordsGivenBackAreSentAgainInOrder(t, runs)
		})
	}
}

func testRecordsGivenBackAreSentAgainInOrder(t *testing.T, runs bool) {
	var down atomic.Bool
	down.Store(true)
	tg := &target{runs: runs, verdict: func(_ int, m *sarama.ProducerMessage) error {
		if record.Of(m).Offset >= 5 && down.Load() {
			return sarama.ErrOutOfBrokers
		}
		return nil
	}}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	feed(t, inbox, track, 10, 0, nil)
	var fatal atomic.Pointer[error]
	w, err := New(Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedFail,
		Fatal: func(err error) { fatal.Store(&err) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(time.Second) // several attempts while the target is away
	if got := fmt.Sprint(tg.log()); track.Committed() != 5 || got != "[dst/0@0 dst/0@1 dst/0@2 dst/0@3 dst/0@4]" {
		t.Fatalf("while away: committed %d, written %s; want 5 and offsets 0-4 only", track.Committed(), got)
	}
	down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for track.Committed() != 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	want := "[dst/0@0 dst/0@1 dst/0@2 dst/0@3 dst/0@4 dst/0@5 dst/0@6 dst/0@7 dst/0@8 dst/0@9]"
	if got := fmt.Sprint(tg.log()); track.Committed() != 10 || got != want {
		t.Fatalf("after the target came back: committed %d, written %s; want 10 and %s", track.Committed(), got, want)
	}
	if f := fatal.Load(); f != nil {
		t.Fatalf("fatal error %v for an outage the target recovered from", *f)
	}
}

// TestTargetRefusalThatPassedTheChecksStopsThePartition: a batch the target refuses for what it
// is although the records passed kmirror's checks (its config changed since) stops the
// partition at the exact offset and the mirror with it.
func TestTargetRefusalThatPassedTheChecksStopsThePartition(t *testing.T) {
	tg := &target{verdict: func(_ int, m *sarama.ProducerMessage) error {
		if record.Of(m).Offset == 5 {
			return sarama.ErrInvalidTimestamp
		}
		return nil
	}}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	feed(t, inbox, track, 10, 0, nil)
	var fatal atomic.Pointer[error]
	runWorker(t, Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedFail,
		Fatal: func(err error) { fatal.Store(&err) }}, func() bool { return track.Stopped() && inbox.Len() == 0 })
	if got := track.Committed(); got != 5 {
		t.Fatalf("committed = %d, want 5: nothing at or after the refused offset 5", got)
	}
	f := fatal.Load()
	if f == nil || !errors.Is(*f, sarama.ErrInvalidTimestamp) || !strings.Contains((*f).Error(), "offset 5") {
		t.Fatalf("fatal = %v, want the target's refusal naming offset 5", f)
	}
}

// TestNothingOfAStoppedPartitionIsSent: once a partition stopped (a record failed, or its claim
// was given up and fenced), the records of it still in the inbox never reach the target, while
// other partitions of the same worker go on.
func TestNothingOfAStoppedPartitionIsSent(t *testing.T) {
	for _, how := range []string{"failed", "fenced"} {
		t.Run(how, func(t *testing.T) {
			tg := &target{}
			inbox := ring.NewQueue[*record.Batch](64, 1<<20)
			stopped := offsets.NewPartition("src", 0, 0, 64)
			other := offsets.NewPartition("src", 1, 0, 64)
			feed(t, inbox, stopped, 5, 0, nil)
			feed(t, inbox, other, 5, 0, nil)
			if how == "failed" {
				stopped.Expire(errors.New("no acknowledgement within the delivery timeout"))
			} else {
				stopped.Fence()
			}
			pool := &record.Pool{}
			runWorker(t, Config{Inbox: inbox, Records: pool, NewProducer: tg.open, Policy: config.RefusedFail},
				func() bool { return other.Committed() == 5 })
			for _, w := range tg.log() {
				if strings.HasPrefix(w, "dst/0@") {
					t.Fatalf("a record of the stopped partition reached the target: %v", tg.log())
				}
			}
			if len(tg.log()) != 5 || stopped.Committed() != 0 {
				t.Fatalf("written %v, stopped partition committed %d; want the other partition's 5 and 0", tg.log(), stopped.Committed())
			}
		})
	}
}

// TestAbortSendsNothingMore: after Abort, records still in the inbox are not sent and records a
// producer held come back failed, so their partitions do not commit past them.
func TestAbortSendsNothingMore(t *testing.T) {
	release := make(chan struct{})
	tg := &target{verdict: func(_ int, m *sarama.ProducerMessage) error {
		if record.Of(m).Offset == 2 {
			<-release // the target hangs on offset 2
		}
		return nil
	}}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	feed(t, inbox, track, 10, 0, nil)
	obs := &countingObserver{}
	w, err := New(Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedFail, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for track.Committed() != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	w.Abort()
	close(release) // too late: offset 2 was aborted while in the producer
	cancel()
	<-done
	if got := tg.log(); len(got) != 2 {
		t.Fatalf("written after abort: %v, want only offsets 0 and 1", got)
	}
	if track.Committed() != 2 || !track.Stopped() {
		t.Fatalf("committed %d stopped %v; want 2 and stopped", track.Committed(), track.Stopped())
	}
}

func TestRecordTheTargetRefusesForItsSizeFollowsThePolicy(t *testing.T) {
	for _, policy := range []string{config.RefusedSkip, config.RefusedFail, config.RefusedDeadLetter} {
		t.Run(policy, func(t *testing.T) {
			tg := &target{}
			inbox := ring.NewQueue[*record.Batch](64, 1<<20)
			track := offsets.NewPartition("src", 0, 0, 64)
			feed(t, inbox, track, 4, 1000, map[int]int{1: 5000})
			obs := &countingObserver{}
			dl := &deadLetters{}
			var fatals []error
			var mu sync.Mutex
			runWorker(t, Config{
				Inbox: inbox, NewProducer: tg.open, Policy: policy, Observer: obs, DeadLetter: dl,
				Fatal: func(err error) { mu.Lock(); fatals = append(fatals, err); mu.Unlock() },
			}, func() bool { return obs.total() >= 2 && (track.Committed() == 4 || track.Stopped()) })
			mu.Lock()
			defer mu.Unlock()
			switch policy {
			case config.RefusedSkip, config.RefusedDeadLetter:
				if obs.skipped != 1 || len(fatals) != 0 || track.Committed() != 4 {
					t.Fatalf("skipped %d fatals %d committed %d; want 1, 0, 4", obs.skipped, len(fatals), track.Committed())
				}
				if want := []string{"dst/0@0", "dst/0@2", "dst/0@3"}; fmt.Sprint(tg.log()) != fmt.Sprint(want) {
					t.Fatalf("written %v, want %v", tg.log(), want)
				}
				if policy == config.RefusedDeadLetter && (len(dl.offsets) != 1 || dl.offsets[0] != 1) {
					t.Fatalf("dead letters %v, want offset 1", dl.offsets)
				}
			case config.RefusedFail:
				if len(fatals) != 1 || track.Committed() != 1 {
					t.Fatalf("fatals %v committed %d; want 1 and 1", fatals, track.Committed())
				}
				msg := fatals[0].Error()
				for _, want := range []string{"src/0 offset 1", "max.message.bytes 1000", "refused_policy"} {
					if !strings.Contains(msg, want) {
						t.Errorf("the error %q does not say %q", msg, want)
					}
				}
				if got := tg.log(); fmt.Sprint(got) != "[dst/0@0]" {
					t.Fatalf("written %v: nothing after the refused record may reach the target", got)
				}
			}
		})
	}
}

type deadLetters struct {
	mu      sync.Mutex
	offsets []int64
}

func (d *deadLetters) Write(_ context.Context, r *record.Record, _ error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.offsets = append(d.offsets, r.Offset)
	return nil
}

// TestBatchesStayWithinEachTargetTopicsLimit: records of topics with different limits go through
// producers whose batch bound fits each limit (a topic with max.message.bytes 65536 must never
// receive a 1 MiB batch).
func TestBatchesStayWithinEachTargetTopicsLimit(t *testing.T) {
	tg := &target{}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	small := offsets.NewPartition("small", 0, 0, 64)
	large := offsets.NewPartition("large", 0, 0, 64)
	feed(t, inbox, small, 5, 65536, nil)
	feed(t, inbox, large, 5, 5<<20, nil)
	runWorker(t, Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedFail},
		func() bool { return small.Committed() == 5 && large.Committed() == 5 })
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if len(tg.bounds) != 2 || tg.bounds[0]+batchOverhead > 65536 || tg.bounds[1]+batchOverhead > 5<<20 || tg.bounds[1] < 5<<20-1024 {
		t.Fatalf("producer bounds %v: want one within 65536 and one within (and near) 5 MiB", tg.bounds)
	}
}

// TestRecordThatMayFitOnlyCompressedTravelsAloneInOrder: with compression on, a record larger
// than its topic's limit uncompressed is sent by itself once everything before it in its
// partition is on the target, and nothing after it is sent before it is settled.
func TestRecordThatMayFitOnlyCompressedTravelsAloneInOrder(t *testing.T) {
	for _, accepted := range []bool{true, false} {
		t.Run(fmt.Sprintf("accepted=%v", accepted), func(t *testing.T) {
			tg := &target{verdict: func(bound int, m *sarama.ProducerMessage) error {
				if m.ByteSize(2) > 1000 && !accepted {
					return sarama.ErrMessageSizeTooLarge // the broker's verdict on the compressed batch
				}
				return nil
			}}
			inbox := ring.NewQueue[*record.Batch](64, 1<<20)
			track := offsets.NewPartition("src", 0, 0, 64)
			feed(t, inbox, track, 6, 1000, map[int]int{3: 3000})
			obs := &countingObserver{}
			runWorker(t, Config{Inbox: inbox, NewProducer: tg.open, Compressed: true, Policy: config.RefusedSkip, Observer: obs},
				func() bool { return track.Committed() == 6 })
			want := "[dst/0@0 dst/0@1 dst/0@2 dst/0@3 dst/0@4 dst/0@5]"
			if !accepted {
				want = "[dst/0@0 dst/0@1 dst/0@2 dst/0@4 dst/0@5]"
			}
			if got := fmt.Sprint(tg.log()); got != want {
				t.Fatalf("written %s, want %s", got, want)
			}
			if !accepted && obs.skipped != 1 {
				t.Fatalf("skipped %d, want the one record the broker refused", obs.skipped)
			}
		})
	}
}

func TestWorkerRecyclesOnlyRecordsWhoseFateIsFinal(t *testing.T) {
	tg := &target{verdict: func(_ int, m *sarama.ProducerMessage) error {
		if record.Of(m).Offset == 4 {
			return sarama.ErrInvalidTimestamp // refused though it passed the checks
		}
		return nil
	}}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	fed := feed(t, inbox, track, 5, 1000, map[int]int{1: 5000})
	obs := &countingObserver{}
	runWorker(t, Config{
		Inbox: inbox, Records: &record.Pool{}, NewProducer: tg.open, Policy: config.RefusedSkip, Observer: obs,
	}, func() bool { return obs.total() == 5 })
	// A record put back is reset: it no longer names its message or its tracker.
	for i, r := range fed[:4] {
		if r.Track != nil || r.Msg.Metadata != nil {
			t.Errorf("offset %d (acknowledged or skipped) was not put back", i)
		}
	}
	if r := fed[4]; r.Track != track || record.Of(&r.Msg) != r || r.Offset != 4 {
		t.Errorf("offset 4 failed, yet it was put back and reset: %+v", r)
	}
}

func TestAloneBytesIsTheExactBatchSize(t *testing.T) {
	// A 1 KiB value with a 3-byte key and one header, checked against the encoding sarama
	// itself produces for a batch of one record.
	m := &sarama.ProducerMessage{Key: sarama.ByteEncoder("key"), Value: sarama.ByteEncoder(make([]byte, 1024)),
		Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("v")}}}
	for _, tc := range []struct {
		name string
		m    *sarama.ProducerMessage
		rec  kmsg.Record
	}{
		{"key, value, header", m, kmsg.Record{Key: []byte("key"), Value: make([]byte, 1024),
			Headers: []kmsg.Header{{Key: "h", Value: []byte("v")}}}},
		{"null key, large value", &sarama.ProducerMessage{Value: sarama.ByteEncoder(make([]byte, 300_000))},
			kmsg.Record{Value: make([]byte, 300_000)}},
		{"tombstone", &sarama.ProducerMessage{Key: sarama.ByteEncoder("k")}, kmsg.Record{Key: []byte("k")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// franz-go's encoding of the same batch of one record, independently of ours.
			rec := tc.rec
			rec.Length = int32(len(rec.AppendTo(nil)) - 1)
			body := rec.AppendTo(nil)
			batch := kmsg.RecordBatch{Magic: 2, NumRecords: 1, Records: body}
			want := len(batch.AppendTo(nil))
			if got := aloneBytes(tc.m); got != want {
				t.Fatalf("aloneBytes = %d, the batch encodes in %d bytes", got, want)
			}
		})
	}
}

// TestRecordTheTargetTopicRefusesIsNamedBeforeItIsSent: a keyless record bound for a compacted
// target topic and one 2 h ahead of a topic that accepts 1 h are caught before sending, by
// their own offsets, and the policy applies to them alone.
func TestRecordTheTargetTopicRefusesIsNamedBeforeItIsSent(t *testing.T) {
	tg := &target{}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	accept := &topics.Topic{Target: "dst", Compacted: true, TimestampAfterMax: time.Hour}
	for i := range 6 {
		m := &sarama.ConsumerMessage{Topic: "src", Offset: int64(i), Key: []byte("k"), Value: []byte("v"), Timestamp: time.Now()}
		switch i {
		case 2:
			m.Key = nil
		case 4:
			m.Timestamp = time.Now().Add(2 * time.Hour)
		}
		r := record.From(m, "dst", track, 1<<20)
		r.Accept = accept
		r.Seq, _ = track.Register(m.Offset)
		push(t, inbox, []*record.Record{r}, 1)
	}
	obs := &countingObserver{}
	var refused []string
	var mu sync.Mutex
	runWorker(t, Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedSkip, Observer: &reasons{obs, &mu, &refused}},
		func() bool { return track.Committed() == 6 })
	if got := fmt.Sprint(tg.log()); got != "[dst/0@0 dst/0@1 dst/0@3 dst/0@5]" {
		t.Fatalf("written %s, want every record but offsets 2 and 4", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(refused) != "[2:keyless_in_compacted_topic 4:timestamp_in_future]" {
		t.Fatalf("refused %v", refused)
	}
}

type reasons struct {
	*countingObserver
	mu  *sync.Mutex
	out *[]string
}

func (o *reasons) Skipped(w int, r *record.Record, err error) {
	o.mu.Lock()
	*o.out = append(*o.out, fmt.Sprintf("%d:%s", r.Offset, ReasonOf(err)))
	o.mu.Unlock()
	o.countingObserver.Skipped(w, r, err)
}

// fromTargetObserver notes the offsets skipped as come from the target.
type fromTargetObserver struct {
	countingObserver
	offsets []int64
	other   []error
}

func (o *fromTargetObserver) Skipped(w int, r *record.Record, err error) {
	o.mu.Lock()
	if errors.Is(err, ErrFromTarget) {
		o.offsets = append(o.offsets, r.Offset)
	} else {
		o.other = append(o.other, err)
	}
	o.mu.Unlock()
	o.countingObserver.Skipped(w, r, err)
}

// TestRecordsFromTheTargetAreNotCopiedButCommitted: records marked as come from the target
// (their provenance header names it) are never written, each is reported skipped with
// ErrFromTarget, and the partition's position moves past them, a run of them at the end too:
// the partition is not held back by records it will never copy.
func TestRecordsFromTheTargetAreNotCopiedButCommitted(t *testing.T) {
	tg := &target{}
	inbox := ring.NewQueue[*record.Batch](64, 1<<20)
	track := offsets.NewPartition("src", 0, 0, 64)
	fed := feed(t, inbox, track, 10, 0, nil)
	for _, i := range []int{0, 3, 4, 8, 9} {
		fed[i].FromTarget = true
	}
	obs := &fromTargetObserver{}
	runWorker(t, Config{ID: 0, Inbox: inbox, NewProducer: tg.open, Observer: obs, Policy: config.RefusedFail},
		func() bool { return track.Committed() == 10 })
	if got, want := fmt.Sprint(tg.log()), "[dst/0@1 dst/0@2 dst/0@5 dst/0@6 dst/0@7]"; got != want {
		t.Fatalf("written %s, want %s", got, want)
	}
	if got := fmt.Sprint(obs.offsets); got != "[0 3 4 8 9]" || len(obs.other) > 0 || obs.acked != 5 || obs.failed != 0 {
		t.Fatalf("skipped from the target %s (other skips %v), acked %d, failed %d; want [0 3 4 8 9], none, 5, 0",
			got, obs.other, obs.acked, obs.failed)
	}
	if track.Committed() != 10 {
		t.Fatalf("committed %d, want 10: the records from the target must be committed as done", track.Committed())
	}
}

// TestRecordsAreHandedOverByPartitionBatch: records of a partition waiting in the inbox reach a
// producer in one call per run of that partition (at most maxPending), not one call per
// record, and every partition's records are written once, in order.
func TestRecordsAreHandedOverByPartitionBatch(t *testing.T) {
	tg := &target{}
	inbox := ring.NewQueue[*record.Batch](1024, 1<<30)
	a := offsets.NewPartition("src", 0, 0, 1024)
	b := offsets.NewPartition("src", 1, 0, 1024)
	feed(t, inbox, a, 300, 0, nil) // a run of 300: two hand-overs (256 + 44)
	feed(t, inbox, b, 100, 0, nil) // a run of 100: one
	runWorker(t, Config{Inbox: inbox, NewProducer: tg.open, Policy: config.RefusedFail},
		func() bool { return a.Committed() == 300 && b.Committed() == 100 })
	if a.Committed() != 300 || b.Committed() != 100 {
		t.Fatalf("committed %d and %d, want 300 and 100", a.Committed(), b.Committed())
	}
	tg.mu.Lock()
	handed := append([]int(nil), tg.handed...)
	tg.mu.Unlock()
	if want := []int{256, 44, 100}; fmt.Sprint(handed) != fmt.Sprint(want) {
		t.Errorf("records per hand-over: %v, want %v (one call per partition's run, at most %d)", handed, want, maxPending)
	}
	var next [2]int64
	for _, w := range tg.log() {
		var part int32
		var off int64
		if _, err := fmt.Sscanf(w, "dst/%d@%d", &part, &off); err != nil {
			t.Fatal(err)
		}
		if off != next[part] {
			t.Fatalf("dst/%d: offset %d written after %d: out of order or duplicated", part, off, next[part]-1)
		}
		next[part]++
	}
}
