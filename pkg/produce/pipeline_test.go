package produce

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceAll produces n records to each partition, one batch each (linger 0), and returns the
// values per partition in production order.
func produceAll(p *Pipeline, partitions int32, n int) map[int32][]string {
	want := map[int32][]string{}
	for i := range n {
		for part := range partitions {
			v := val(part, i)
			want[part] = append(want[part], v)
			p.Produce(msg(part, v))
		}
	}
	return want
}

func open(t *testing.T, cfg Config, o *outcomes) *Pipeline {
	t.Helper()
	p, err := New(cfg, o.done)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// faultOnce fails, once, the first produce request carrying partition 0's batch with sequence
// seq, after holding it 100 ms so that the pipeline has the batches behind it in flight.
func faultOnce(c *kfake.Cluster, seq int32, err *kerr.Error) *kfake.FaultHandle {
	var held, hit atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if s, ok := produceSeqs(req)[0]; ok && s == seq && !held.Swap(true) {
			c.SleepControl(func() { time.Sleep(100 * time.Millisecond) })
		}
		return nil, nil, false
	})
	return c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: "t", Partitions: []int32{0}, Err: err, Count: 1,
		When: func(req kmsg.Request) bool {
			s, ok := produceSeqs(req)[0]
			return ok && s == seq && !hit.Swap(true)
		},
	})
}

func TestOrderKeptWhenTheLeaderMovesWithFiveInFlight(t *testing.T) {
	c := fakeTarget(t, 3, 2)
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 3000
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		for i := range 4 {
			time.Sleep(40 * time.Millisecond)
			for part := range int32(2) {
				to := (c.LeaderFor("t", part) + 1 + int32(i%2)) % 3
				if err := c.MoveTopicPartition("t", part, to); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	want := produceAll(p, 2, n)
	o.wait(t, 2*n, 60*time.Second)
	<-moved
	for part := range int32(2) {
		checkLog(t, c, o, part, want[part])
	}
	st := p.Stats()
	if len(o.failed) > 0 {
		t.Fatalf("%d records failed", len(o.failed))
	}
	if st.PeakInFlight != MaxInFlight || st.Resends == 0 {
		t.Fatalf("stats %+v: want %d requests in flight at a peak and resends after the moves", st, MaxInFlight)
	}
	t.Logf("stats %+v", st)
}

func TestOutOfOrderSequenceBehindARetriedBatchIsRetried(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	faultOnce(c, 200, kerr.NotLeaderForPartition)
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 1000
	want := produceAll(p, 1, n)
	o.wait(t, n, 30*time.Second)
	checkLog(t, c, o, 0, want[0])
	st := p.Stats()
	if st.OutOfOrder == 0 || st.EpochBumps != 0 {
		t.Fatalf("stats %+v: want OUT_OF_ORDER_SEQUENCE_NUMBER answers behind the failed batch, retried without an epoch bump", st)
	}
	t.Logf("stats %+v", st)
}

func TestABatchWrittenButAnsweredTimedOutIsNotDuplicated(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	// kfake writes a batch it answers REQUEST_TIMED_OUT: the resend is a duplicate sequence.
	faultOnce(c, 100, kerr.RequestTimedOut)
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 500
	want := produceAll(p, 1, n)
	o.wait(t, n, 30*time.Second)
	checkLog(t, c, o, 0, want[0])
	if st := p.Stats(); st.Resends == 0 {
		t.Fatalf("stats %+v: the timed-out batch was not sent again", st)
	}
}

func TestRefusedBatchFailsItsPartitionAndNothingAfterIsSent(t *testing.T) {
	c := fakeTarget(t, 1, 2)
	const refusedSeq = 300
	var mu sync.Mutex
	sent := map[int32]int{} // partition 0's sequences, how often each was sent
	// Every record is queued before the refusal is answered (the first request waits for it):
	// records produced after the failure was reported would rightly start a new queue.
	queued := make(chan struct{})
	var first atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !first.Swap(true) {
			c.SleepControl(func() { <-queued })
		}
		if s, ok := produceSeqs(req)[0]; ok {
			mu.Lock()
			sent[s]++
			mu.Unlock()
		}
		return nil, nil, false
	})
	faultOnce(c, refusedSeq, kerr.MessageTooLarge)
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 2000
	want := produceAll(p, 2, n)
	close(queued)
	o.wait(t, 2*n, 30*time.Second)

	checkLog(t, c, o, 0, want[0][:refusedSeq])
	checkLog(t, c, o, 1, want[1]) // the other partition goes on
	if err := o.failed[want[0][refusedSeq]]; !errors.Is(err, sarama.ErrMessageSizeTooLarge) {
		t.Fatalf("%s: error %v, want MESSAGE_TOO_LARGE", want[0][refusedSeq], err)
	}
	behind := 0
	for _, v := range want[0][refusedSeq:] {
		err := o.failed[v]
		if !failedFor(err, sarama.ErrMessageSizeTooLarge) {
			t.Fatalf("%s: error %v, want MESSAGE_TOO_LARGE, or not written behind it", v, err)
		}
		if errors.Is(err, ErrNotWritten) {
			behind++
			// The worker would take a record the target refused for what it is for one to skip
			// or dead-letter: one only behind it must not look refused.
			if errors.Is(err, sarama.ErrMessageSizeTooLarge) {
				t.Fatalf("%s: %v: not written, yet it looks refused by the target", v, err)
			}
		}
	}
	if behind == 0 {
		t.Fatal("no record was failed behind the refused batch")
	}
	mu.Lock()
	for s, times := range sent {
		if s >= refusedSeq && times > 1 {
			t.Errorf("sequence %d sent %d times after the refusal", s, times)
		}
		if s >= refusedSeq+MaxInFlight {
			t.Errorf("sequence %d sent although batch %d was refused before it could be in flight", s, refusedSeq)
		}
	}
	mu.Unlock()

	// A record produced after the failure was reported starts again where the refused one was.
	p.Produce(msg(0, "after"))
	o.wait(t, 2*n+1, 10*time.Second)
	checkLog(t, c, o, 0, append(want[0][:refusedSeq:refusedSeq], "after"))
}

func TestUnknownProducerIDBumpsTheEpochAndKeepsOrder(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	var inits atomic.Int32
	c.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		inits.Add(1)
		return nil, nil, false
	})
	faultOnce(c, 150, kerr.UnknownProducerID)
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 800
	want := produceAll(p, 1, n)
	o.wait(t, n, 30*time.Second)
	checkLog(t, c, o, 0, want[0])
	if st := p.Stats(); st.EpochBumps != 1 || inits.Load() != 2 {
		t.Fatalf("stats %+v, %d InitProducerId requests: want one epoch bump", st, inits.Load())
	}
}

func TestAbortReturnsEverythingAndSendsNothingMore(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	var seqs []int32 // the batches that reached the broker
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		seqs = append(seqs, produceSeqs(req)[0])
		mu.Unlock()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	const n = 300
	produceAll(p, 1, n)
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().PeakInFlight < MaxInFlight && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.Abort()
	o.wait(t, n, 2*time.Second)
	close(release)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	for _, s := range seqs {
		// The first MaxInFlight batches (one record each) were in flight when Abort ran.
		if s >= MaxInFlight {
			t.Errorf("batch %d reached the broker: it was sent after Abort (seen %v)", s, seqs)
		}
	}
	mu.Unlock()
	for v, err := range o.failed {
		if !errors.Is(err, ErrAborted) {
			t.Fatalf("%s: %v, want ErrAborted", v, err)
		}
	}
	if len(o.failed) != n {
		t.Fatalf("%d of %d records came back failed (%d acked)", len(o.failed), n, len(o.acked))
	}
	p.Produce(msg(0, "late"))
	o.wait(t, n+1, time.Second)
	if !errors.Is(o.failed["late"], ErrAborted) {
		t.Fatalf("a record produced after Abort: %v, want ErrAborted", o.failed["late"])
	}
}

func TestRetriesEndAtTheDeliveryTimeout(t *testing.T) {
	c := fakeTarget(t, 1, 2)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t", Partitions: []int32{0}, Err: kerr.NotLeaderForPartition, Count: -1})
	cfg := testConfig(c)
	cfg.DeliveryTimeout = 700 * time.Millisecond
	o := newOutcomes()
	p := open(t, cfg, o)
	start := time.Now()
	want := produceAll(p, 2, 20)
	o.wait(t, 40, 5*time.Second)
	if took := time.Since(start); took < cfg.DeliveryTimeout {
		t.Fatalf("records failed after %s, before the delivery timeout %s", took, cfg.DeliveryTimeout)
	}
	if err := o.failed[want[0][0]]; !errors.Is(err, ErrDeliveryTimeout) || !errors.Is(err, sarama.ErrNotLeaderForPartition) {
		t.Fatalf("%s: %v, want the delivery timeout with the last error", want[0][0], err)
	}
	for _, v := range want[0] {
		if err := o.failed[v]; !failedFor(err, ErrDeliveryTimeout) || !failedFor(err, sarama.ErrNotLeaderForPartition) {
			t.Fatalf("%s: %v, want the delivery timeout with the last error, or not written behind it", v, err)
		}
	}
	checkLog(t, c, o, 1, want[1])
}

func TestARecordLargerThanABatchIsRefusedBeforeItIsSent(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	cfg := testConfig(c)
	cfg.MaxBatchBytes = 1000
	o := newOutcomes()
	p := open(t, cfg, o)
	p.Produce(msg(0, strings.Repeat("x", 1000)))
	p.Produce(msg(0, "small"))
	o.wait(t, 2, 5*time.Second)
	if err := o.failed[strings.Repeat("x", 1000)]; !errors.Is(err, sarama.ErrMessageSizeTooLarge) {
		t.Fatalf("oversize record: %v, want MESSAGE_TOO_LARGE", err)
	}
	checkLog(t, c, o, 0, []string{"small"})
}

// failedFor reports whether err is cause, or says that its record was not written because an
// earlier batch failed for cause (without wrapping it: the record was not judged by the target).
func failedFor(err, cause error) bool {
	if errors.Is(err, cause) {
		return true
	}
	return errors.Is(err, ErrNotWritten) && strings.Contains(err.Error(), cause.Error())
}

// TestNoBatchLingersWhileARecordWaitsForRoom: batches that linger for an hour and hold the
// whole buffer are sent as soon as a record waits for room (as Kafka's producer does when its
// buffer is exhausted), so the records flow at the target's pace, in order, instead of waiting
// for the linger.
func TestNoBatchLingersWhileARecordWaitsForRoom(t *testing.T) {
	c := fakeTarget(t, 1, 3)
	o := newOutcomes()
	cfg := testConfig(c)
	cfg.Linger = time.Hour
	cfg.MaxBufferedBytes = 8 << 10 // a few dozen records of the three partitions
	p := open(t, cfg, o)
	const n = 300
	queued := make(chan map[int32][]string)
	go func() { queued <- produceAll(p, 3, n) }()
	var want map[int32][]string
	select {
	case want = <-queued:
	case <-time.After(20 * time.Second):
		o.mu.Lock()
		settled := o.settled
		o.mu.Unlock()
		t.Fatalf("the records still wait for room after 20 s (%d of %d settled): the batches linger while the buffer is full", settled, 3*n)
	}
	// The last records may linger: they fit the buffer.
	flushed := make(chan struct{})
	go func() { p.Close(); close(flushed) }()
	o.wait(t, 3*n, 20*time.Second)
	<-flushed
	if len(o.failed) > 0 {
		t.Fatalf("%d records failed", len(o.failed))
	}
	for part := range int32(3) {
		checkLog(t, c, o, part, want[part])
	}
}

// TestAPartitionsFirstBatchGoesAlone: a broker before Kafka 4.5 takes the first batch of a
// producer it has no state for on a partition whatever its sequence (KAFKA-15591), so with two
// batches of a just-created partition in flight, a later one that reaches the log first is
// written, and the earlier one is then refused out of order: a reorder. The e2e run that found it
// froze the target as 2,000 just-created partitions got their first records. So a partition
// sends nothing more until its first batch under the producer id and epoch is acknowledged;
// then five may be in flight, and any batch out of sequence is refused. The broker holds the
// first batch's request 300 ms; the pipeline must have no other request in flight meanwhile.
func TestAPartitionsFirstBatchGoesAlone(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	var p atomic.Pointer[Pipeline]
	var during atomic.Int64 // the pipeline's peak of requests in flight while the first was held
	var heldOnce atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if seq, ok := produceSeqs(req)[0]; ok && seq == 0 && !heldOnce.Swap(true) {
			c.SleepControl(func() {
				time.Sleep(300 * time.Millisecond)
				if pl := p.Load(); pl != nil {
					during.Store(int64(pl.Stats().PeakInFlight))
				}
			})
		}
		return nil, nil, false
	})
	o := newOutcomes()
	cfg := testConfig(c)
	cfg.BatchRecords = 10 // many batches, more than one request's worth at once
	pl := open(t, cfg, o)
	p.Store(pl)
	const n = 200
	want := produceAll(pl, 1, n)
	o.wait(t, n, 30*time.Second)
	checkLog(t, c, o, 0, want[0])
	if !heldOnce.Load() {
		t.Fatal("the first batch's request was never seen")
	}
	if d := during.Load(); d != 1 {
		t.Fatalf("%d requests in flight while the partition's first batch was unanswered, want 1: a broker before 4.5 may write a later one first", d)
	}
	if st := pl.Stats(); st.PeakInFlight < 2 {
		t.Fatalf("stats %+v: no pipelining after the first batch was acknowledged", st)
	}
}
