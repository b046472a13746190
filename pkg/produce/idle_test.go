package produce

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestInitProducerIDIsRetriedWithGrowingPauses: a target that cannot give a producer id for a
// while (its coordinator loading, a broker not yet up) is asked again after growing pauses, not
// three times in a row, and the pipeline opens once it answers.
func TestInitProducerIDIsRetriedWithGrowingPauses(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	var calls atomic.Int32
	var at []time.Time
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		at = append(at, time.Now())
		if calls.Add(1) > 4 {
			return nil, nil, false
		}
		res := req.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
		res.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return res, nil, true
	})
	o := newOutcomes()
	p := open(t, testConfig(c), o)
	if n := calls.Load(); n != 5 {
		t.Fatalf("InitProducerId asked %d times, want 5 (4 refusals, then an id)", n)
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 5*time.Millisecond {
			t.Errorf("InitProducerId attempt %d came %s after the one before: want a pause", i+1, gap)
		}
	}
	if total := at[len(at)-1].Sub(at[0]); total < 60*time.Millisecond {
		t.Errorf("4 refusals were retried within %s: want growing pauses (at least 60 ms in all)", total)
	}
	p.Produce(msg(0, "a"))
	o.wait(t, 1, 10*time.Second)
	if len(o.failed) > 0 {
		t.Fatalf("failed: %v", o.failed)
	}
}

// TestInitProducerIDGivesUpOnAFatalError: an answer no retry changes (not authorized) fails New
// at once, naming it.
func TestInitProducerIDGivesUpOnAFatalError(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	var calls atomic.Int32
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		calls.Add(1)
		res := req.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
		res.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return res, nil, true
	})
	start := time.Now()
	_, err := New(testConfig(c), newOutcomes().done)
	if err == nil {
		t.Fatal("New succeeded without a producer id")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("InitProducerId asked %d times after CLUSTER_AUTHORIZATION_FAILED, want 1", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("New took %s to give up on a fatal error", d)
	}
	t.Log(err)
}

// TestIdlePartitionsCostNothing: with 10,000 partitions that each held a record and are now
// idle, neither the control loop nor the sinks visit any partition: what the pipeline does per
// tick grows with the partitions that hold data, not with all it ever saw.
func TestIdlePartitionsCostNothing(t *testing.T) {
	const partitions = 10_000
	c := fakeTarget(t, 1, partitions)
	o := newOutcomes()
	cfg := testConfig(c)
	p := open(t, cfg, o)
	for part := range int32(partitions) {
		p.Produce(msg(part, val(part, 0)))
	}
	o.wait(t, partitions, time.Minute)
	if len(o.failed) > 0 {
		t.Fatalf("%d records failed", len(o.failed))
	}
	before := p.Stats().Visits
	time.Sleep(time.Second)
	idle := p.Stats().Visits - before
	t.Logf("partition visits in 1 s idle with %d partitions: %d", partitions, idle)
	if idle > 0 {
		t.Errorf("the pipeline visited partitions %d times in 1 s while all %d were idle, want 0", idle, partitions)
	}
}

// TestProduceBatchStopsAtARefusedRecord: records of one partition handed in one call are written
// in order up to a record refused before it is sent; that record is named with its error and
// the records after it fail with ErrNotWritten, none of them written.
func TestProduceBatchStopsAtARefusedRecord(t *testing.T) {
	c := fakeTarget(t, 1, 1)
	o := newOutcomes()
	cfg := testConfig(c)
	cfg.MaxBatchBytes = 1000
	p := open(t, cfg, o)
	p.ProduceBatch(context.Background(), []*sarama.ProducerMessage{msg(0, "a"), msg(0, "b"), msg(0, strings.Repeat("x", 1000)), msg(0, "c"), msg(0, "d")})
	o.wait(t, 5, 10*time.Second)
	if !errors.Is(o.failed[strings.Repeat("x", 1000)], sarama.ErrMessageSizeTooLarge) {
		t.Errorf("the large record failed with %v, want MESSAGE_TOO_LARGE", o.failed[strings.Repeat("x", 1000)])
	}
	for _, v := range []string{"c", "d"} {
		if err := o.failed[v]; !errors.Is(err, ErrNotWritten) || errors.Is(err, sarama.ErrMessageSizeTooLarge) {
			t.Errorf("%q behind the refused record failed with %v, want ErrNotWritten (not the refusal)", v, err)
		}
	}
	checkLog(t, c, o, 0, []string{"a", "b"})
}

// TestOneRecordBatchesHoldRoomForTheirRunOnly: with many partitions that each get a record now
// and then, each partition's open batch holds room for the records its caller handed over, not
// for a whole batch of them (BatchRecords 1000 here): at 10,000 partitions room for a whole batch
// each was 260 MiB of kmirror's 410 MiB in use. Runs of many records still get room for the run.
func TestOneRecordBatchesHoldRoomForTheirRunOnly(t *testing.T) {
	const parts = 2000
	c := fakeTarget(t, 1, parts)
	cfg := testConfig(c)
	cfg.Linger = time.Minute // the batches stay open while they are measured
	cfg.BatchBytes = 1 << 20
	o := newOutcomes()
	p := open(t, cfg, o)
	ctx := context.Background()
	msgs := make([]*sarama.ProducerMessage, parts)
	for i := range msgs {
		msgs[i] = msg(int32(i), val(int32(i), 0))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, m := range msgs {
		p.ProduceBatch(ctx, []*sarama.ProducerMessage{m})
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / parts
	t.Logf("%d one-record batches opened: %d bytes allocated per batch", parts, per)
	if per > 2048 {
		t.Fatalf("a batch opened for one record allocated %d bytes, want at most 2 KiB (room for one record, not a whole batch)", per)
	}
}
