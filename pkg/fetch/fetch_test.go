package fetch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// TestBatchesAreByteIdenticalAndInOrder: what the fetcher delivers equals, record for record,
// what an independent client (franz-go) reads: offsets, keys and values (null stays null, empty
// stays empty), headers (order, duplicates, null values), timestamps and their type, in offset
// order; each delivery holds one partition, and its Next follows its last record. Small byte
// limits force many fetches per partition.
func TestBatchesAreByteIdenticalAndInOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		configs map[string]*string
	}{
		{"create time", nil},
		{"log append time", map[string]*string{"message.timestamp.type": ptr("LogAppendTime")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 1)
			kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
			createTopic(t, kc, "t", 3, tc.configs)
			const perPartition = 300
			var want []*kgo.Record
			for i := range perPartition {
				for p := range int32(3) {
					r := &kgo.Record{Topic: "t", Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i)),
						Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))}
					switch i % 4 {
					case 0:
						r.Key = nil
					case 1:
						r.Key = []byte{}
						r.Headers = []kgo.RecordHeader{{Key: "h", Value: nil}, {Key: "h", Value: []byte("v")}, {Key: "", Value: []byte{}}}
					case 2:
						r.Key = bytes.Repeat([]byte{0, 0xff}, i)
						r.Value = nil
					default:
						r.Key = []byte(strings.Repeat("k", i))
						r.Headers = []kgo.RecordHeader{{Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("1")}}
					}
					want = append(want, r)
				}
				if i%50 == 49 { // several batches per partition
					produce(t, kc, want[len(want)-150:]...)
				}
			}
			// What franz-go reads is the reference (offsets, LogAppendTime stamps).
			ref := consumeAll(t, c, "t", 3*perPartition)

			f := newFetcher(t, Config{Client: client(t, c), MaxBytes: 4 << 10, PartitionMaxBytes: 2 << 10, MaxWait: 100 * time.Millisecond})
			sinks := addCollectors(t, f, "t", 3)
			for p, s := range sinks {
				got := s.waitRecords(t, perPartition, 10*time.Second)
				refp := ref[int32(p)]
				for i, g := range got {
					compareRecord(t, g, refp[i])
				}
				s.mu.Lock()
				last := int64(-1)
				for _, b := range s.batches {
					if b.Topic != "t" || b.Partition != int32(p) || len(b.Records) == 0 {
						t.Fatalf("batch of %s/%d with %d records delivered to partition %d", b.Topic, b.Partition, len(b.Records), p)
					}
					for _, r := range b.Records {
						if r.Offset <= last {
							t.Fatalf("partition %d: offset %d after %d", p, r.Offset, last)
						}
						last = r.Offset
					}
					if b.Next != last+1 {
						t.Fatalf("partition %d: batch Next %d after last offset %d", p, b.Next, last)
					}
				}
				if len(s.batches) < 3 {
					t.Fatalf("partition %d came in %d batches: the byte limits were not applied", p, len(s.batches))
				}
				s.mu.Unlock()
			}
		})
	}
}

func ptr(s string) *string { return &s }

// consumeAll reads n records of topic from the start with franz-go, by partition.
func consumeAll(t *testing.T, c *embedded.Cluster, topic string, n int) map[int32][]*kgo.Record {
	t.Helper()
	cl := kclient(t, c, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	out := map[int32][]*kgo.Record{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("franz-go read %d of %d records", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			got++
		})
	}
	return out
}

func compareRecord(t *testing.T, g Record, w *kgo.Record) {
	t.Helper()
	sameBytes := func(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }
	if g.Offset != w.Offset || !sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) {
		t.Fatalf("offset %d key %q value %q, franz-go read offset %d key %q value %q (nil key %v/%v, nil value %v/%v)",
			g.Offset, g.Key, g.Value, w.Offset, w.Key, w.Value, g.Key == nil, w.Key == nil, g.Value == nil, w.Value == nil)
	}
	if g.Timestamp.UnixMilli() != w.Timestamp.UnixMilli() || g.LogAppendTime != (w.Attrs.TimestampType() == 1) {
		t.Fatalf("offset %d: timestamp %d (log append %v), franz-go read %d (type %d)",
			g.Offset, g.Timestamp.UnixMilli(), g.LogAppendTime, w.Timestamp.UnixMilli(), w.Attrs.TimestampType())
	}
	if len(g.Headers) != len(w.Headers) {
		t.Fatalf("offset %d: %d headers, want %d", g.Offset, len(g.Headers), len(w.Headers))
	}
	for i, h := range g.Headers {
		if string(h.Key) != w.Headers[i].Key || !sameBytes(h.Value, w.Headers[i].Value) {
			t.Fatalf("offset %d header %d: %q=%q, want %q=%q", g.Offset, i, h.Key, h.Value, w.Headers[i].Key, w.Headers[i].Value)
		}
	}
}

// TestOneLoopPerBrokerAndCloseWaits: 60 partitions on 3 brokers are fetched by 3 loops (plus
// the router), and Close leaves no goroutine of the fetcher behind.
func TestOneLoopPerBrokerAndCloseWaits(t *testing.T) {
	c := startCluster(t, 3)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "many", 60, nil)
	var rs []*kgo.Record
	for p := range int32(60) {
		rs = append(rs, &kgo.Record{Topic: "many", Partition: p, Value: []byte(fmt.Sprintf("p%d-0", p))})
	}
	produce(t, kc, rs...)
	cl := client(t, c)
	f, err := New(context.Background(), Config{Client: cl, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sinks := addCollectors(t, f, "many", 60)
	for p, s := range sinks {
		checkSequence(t, int32(p), s.waitRecords(t, 1, 10*time.Second), 1, 0)
	}
	if n := f.Loops(); n != 3 {
		t.Fatalf("%d fetch loops for 60 partitions on 3 brokers, want 3", n)
	}
	// goroutines of the fetcher: 3 loops and the router, none per partition.
	if loops, routers := fetchGoroutines(); loops != 3 || routers != 1 {
		t.Fatalf("%d loop and %d router goroutines for 60 partitions on 3 brokers, want 3 and 1", loops, routers)
	}
	f.Close()
	if loops, routers := fetchGoroutines(); loops+routers != 0 {
		t.Fatalf("%d loop and %d router goroutines after Close", loops, routers)
	}
	if err := f.Add("many", 0, 0, newCollector()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
}

// TestLanesDivideABrokersPartitions: with Lanes 3, the 60 partitions of 2 brokers are fetched
// by 3 loops per broker, each holding only the partitions of its lane, every record in order.
func TestLanesDivideABrokersPartitions(t *testing.T) {
	c := startCluster(t, 2)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "laned", 60, nil)
	var rs []*kgo.Record
	for i := range 3 {
		for p := range int32(60) {
			rs = append(rs, &kgo.Record{Topic: "laned", Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i))})
		}
	}
	produce(t, kc, rs...)
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 100 * time.Millisecond, Lanes: 3})
	sinks := addCollectors(t, f, "laned", 60)
	for p, s := range sinks {
		checkSequence(t, int32(p), s.waitRecords(t, 3, 10*time.Second), 3, 0)
	}
	if n := f.Loops(); n != 6 {
		t.Fatalf("%d fetch loops for 60 partitions on 2 brokers in 3 lanes, want 6", n)
	}
	if loops, _ := fetchGoroutines(); loops != 6 {
		t.Fatalf("%d loop goroutines, want 6", loops)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, l := range f.loops {
		for tp := range l.parts {
			if got := lane(tp, 3); got != key.lane {
				t.Fatalf("%s/%d (lane %d) is fetched by the loop of lane %d", tp.Topic, tp.Partition, got, key.lane)
			}
		}
	}
	used := map[int]int{}
	for p := range int32(60) {
		used[lane(TopicPartition{"laned", p}, 3)]++
	}
	if len(used) != 3 {
		t.Fatalf("60 partitions hash to lanes %v, want all 3 used", used)
	}
}

// TestLanesGrowWithABrokersPartitions: with SessionPartitions 3 and MaxLanes 4, a broker's
// partitions open a lane per 3 as they are added, the second topic's after the first's were
// routed (as topics created after the start are); no partition moves to another lane, no lane
// holds more than 3 until all 4 are open, and every record arrives in order.
func TestLanesGrowWithABrokersPartitions(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "early", 7, nil)
	createTopic(t, kc, "late", 8, nil)
	var rs []*kgo.Record
	for topic, n := range map[string]int32{"early": 7, "late": 8} {
		for i := range 3 {
			for p := range n {
				rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i))})
			}
		}
	}
	produce(t, kc, rs...)
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 100 * time.Millisecond, SessionPartitions: 3, MaxLanes: 4})
	lanes := func() map[TopicPartition]int {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := map[TopicPartition]int{}
		for key, l := range f.loops {
			if len(l.parts) > 3 && len(f.loops) < 4 {
				t.Fatalf("lane %d holds %d partitions with %d lanes open, want at most 3 until 4 are", key.lane, len(l.parts), len(f.loops))
			}
			for tp := range l.parts {
				out[tp] = key.lane
			}
		}
		return out
	}
	waitRouted := func(n int) map[TopicPartition]int {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := lanes()
			if len(got) == n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d partitions routed, want %d", len(got), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	early := addCollectors(t, f, "early", 7)
	before := waitRouted(7)
	if n := f.Loops(); n != 3 {
		t.Fatalf("%d fetch loops for 7 partitions of one broker at 3 per session, want 3", n)
	}
	late := addCollectors(t, f, "late", 8)
	after := waitRouted(15)
	if n := f.Loops(); n != 4 {
		t.Fatalf("%d fetch loops for 15 partitions at 3 per session and at most 4 lanes, want 4", n)
	}
	for tp, l := range before {
		if after[tp] != l {
			t.Fatalf("%s/%d moved from lane %d to lane %d when partitions were added", tp.Topic, tp.Partition, l, after[tp])
		}
	}
	held := map[int]int{}
	for _, l := range after {
		held[l]++
	}
	for l, n := range held {
		if n > 4 {
			t.Fatalf("lane %d holds %d of 15 partitions in 4 lanes (%v), want them spread", l, n, held)
		}
	}
	for p, s := range early {
		checkSequence(t, int32(p), s.waitRecords(t, 3, 10*time.Second), 3, 0)
	}
	for p, s := range late {
		checkSequence(t, int32(p), s.waitRecords(t, 3, 10*time.Second), 3, 0)
	}
}

// TestOutOfRangeIsReportedNotReset: an offset below the log start (records deleted) or past its
// end stops the partition and reaches the sink as an *OutOfRangeError naming the offset and the
// log's bounds; the fetcher does not move the position itself.
func TestOutOfRangeIsReportedNotReset(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "gone", 1, nil)
	var rs []*kgo.Record
	for i := range 10 {
		rs = append(rs, &kgo.Record{Topic: "gone", Value: []byte(fmt.Sprintf("p0-%d", i))})
	}
	produce(t, kc, rs...)
	off := kadm.Offsets{}
	off.Add(kadm.Offset{Topic: "gone", Partition: 0, At: 5})
	if resp, err := kadm.NewClient(kc).DeleteRecords(context.Background(), off); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 100 * time.Millisecond})
	for _, tc := range []struct {
		offset int64
	}{{2}, {50}} {
		s := newCollector()
		if err := f.Add("gone", 0, tc.offset, s); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-s.stopped:
		case <-time.After(10 * time.Second):
			t.Fatalf("offset %d: no error reported", tc.offset)
		}
		var oor *OutOfRangeError
		if !errors.As(err, &oor) || !errors.Is(err, sarama.ErrOffsetOutOfRange) {
			t.Fatalf("offset %d: %v, want an *OutOfRangeError", tc.offset, err)
		}
		if *oor != (OutOfRangeError{Topic: "gone", Partition: 0, Offset: tc.offset, LogStart: 5, LogEnd: 10}) {
			t.Fatalf("offset %d: %+v", tc.offset, *oor)
		}
		if rs, _, _ := s.snapshot(); len(rs) != 0 {
			t.Fatalf("offset %d: %d records delivered", tc.offset, len(rs))
		}
		if _, ok := f.Position("gone", 0); ok {
			t.Fatal("the stopped partition is still fetched")
		}
	}
	// The owner decides: it starts again at the log start.
	s := newCollector()
	if err := f.Add("gone", 0, 5, s); err != nil {
		t.Fatal(err)
	}
	got := s.waitRecords(t, 5, 10*time.Second)
	if got[0].Offset != 5 || string(got[0].Value) != "p0-5" || len(got) != 5 {
		t.Fatalf("after re-adding at the log start: %d records from offset %d", len(got), got[0].Offset)
	}
}

// TestLargeRecordMakesProgress: a record far larger than both byte limits is still delivered,
// and the records after it too.
func TestLargeRecordMakesProgress(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	createTopic(t, kc, "big", 2, nil)
	big := bytes.Repeat([]byte("x"), 200<<10)
	produce(t, kc, &kgo.Record{Topic: "big", Partition: 0, Value: []byte("p0-0")})
	produce(t, kc, &kgo.Record{Topic: "big", Partition: 0, Value: big}, &kgo.Record{Topic: "big", Partition: 1, Value: big})
	produce(t, kc, &kgo.Record{Topic: "big", Partition: 0, Value: []byte("p0-2")})
	f := newFetcher(t, Config{Client: client(t, c), MaxBytes: 2 << 10, PartitionMaxBytes: 1 << 10, MaxWait: 50 * time.Millisecond})
	s0, s1 := newCollector(), newCollector()
	_ = f.Add("big", 0, 0, s0)
	_ = f.Add("big", 1, 0, s1)
	got := s0.waitRecords(t, 3, 10*time.Second)
	if !bytes.Equal(got[1].Value, big) || string(got[2].Value) != "p0-2" {
		t.Fatalf("records after the large one: %q…", got[2].Value)
	}
	if got := s1.waitRecords(t, 1, 10*time.Second); !bytes.Equal(got[0].Value, big) {
		t.Fatal("the large record of partition 1 differs")
	}
}

// fetchGoroutines counts the goroutines running a fetch loop and the router.
func fetchGoroutines() (loops, routers int) {
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		switch {
		case strings.Contains(g, "pkg/fetch.(*loop).run("):
			loops++
		case strings.Contains(g, "pkg/fetch.(*Fetcher).router("):
			routers++
		}
	}
	return loops, routers
}

// TestCutBatchRaisesThePartitionLimit: an answer that holds only the start of a batch (a broker
// cuts a batch larger than the partition's limit when it is not the first data of the response)
// makes the next request ask for twice the limit for that partition. Once the batch arrived the
// partition keeps the raised limit, up to KeepMaxBytes (its next batches are as large, and a
// limit back at PartitionMaxBytes would have them cut again), or goes back to PartitionMaxBytes
// without KeepMaxBytes.
func TestCutBatchRaisesThePartitionLimit(t *testing.T) {
	for _, c := range []struct {
		keep, after int32
	}{
		{keep: 0, after: 1000},    // nothing kept
		{keep: 4000, after: 2000}, // kept as raised
		{keep: 1500, after: 1500}, // kept up to KeepMaxBytes
	} {
		t.Run(fmt.Sprintf("keep=%d", c.keep), func(t *testing.T) {
			limits := cutBatchLimits(t, c.keep)
			if len(limits) < 3 || limits[0] != 1000 || limits[1] != 2000 || limits[len(limits)-1] != c.after {
				t.Fatalf("partition limits asked for: %v; want 1000, then 2000 after the cut batch, then %d", limits, c.after)
			}
		})
	}
}

// TestPartitionWithLargeBatchesIsNotStarved: a broker answers a partition whose next batch is
// larger than its limit with nothing at all (not a cut batch) unless it is the first partition
// of the response with data (KIP-74), so with every partition's batches larger than the limit
// each response used to carry one batch. An empty answer for a partition that holds records past
// the position raises its limit as a cut batch does, and the raised limit is kept (KeepMaxBytes):
// both partitions then come in each response. Without KeepMaxBytes (nothing kept or raised for
// an empty answer) the same batches take about twice the fetches. In a fetch session the
// withheld partition is left out of the answer; without one (protocol 1.0, fetch v6) it is
// answered empty: both are run.
func TestPartitionWithLargeBatchesIsNotStarved(t *testing.T) {
	for _, v := range []sarama.KafkaVersion{sarama.V3_6_0_0, sarama.V1_0_0_0} {
		t.Run("kafka "+v.String(), func(t *testing.T) { largeBatchesNotStarved(t, v) })
	}
}

func largeBatchesNotStarved(t *testing.T, version sarama.KafkaVersion) {
	const batches = 12
	fetches := func(t *testing.T, keep int32) int {
		c := startCluster(t, 1)
		kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
		createTopic(t, kc, "large", 2, nil)
		value := bytes.Repeat([]byte("v"), 3000)
		for i := 0; i < batches; i++ { // one record per batch: each produced alone
			produce(t, kc, &kgo.Record{Topic: "large", Partition: 0, Value: value})
			produce(t, kc, &kgo.Record{Topic: "large", Partition: 1, Value: value})
		}
		var n atomic.Int32
		k := c.Fake()
		k.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			k.KeepControl()
			if len(kreq.(*kmsg.FetchRequest).Topics) > 0 {
				// Counted: the fetches that move a position. An idle fetch names no partition
				// (those after the last record, whose waits lengthen back to MaxWait, session.go).
				n.Add(1)
			}
			return nil, nil, false
		})
		cl := client(t, c, func(sc *sarama.Config) { sc.Version = version })
		f := newFetcher(t, Config{Client: cl, PartitionMaxBytes: 1000, KeepMaxBytes: keep, MaxWait: 50 * time.Millisecond})
		s0, s1 := newCollector(), newCollector()
		_ = f.Add("large", 0, 0, s0)
		_ = f.Add("large", 1, 0, s1)
		for part, s := range []*collector{s0, s1} {
			for i, r := range s.waitRecords(t, batches, 10*time.Second) {
				if r.Offset != int64(i) || !bytes.Equal(r.Value, value) {
					t.Fatalf("partition %d record %d: offset %d, %d bytes", part, i, r.Offset, len(r.Value))
				}
			}
		}
		return int(n.Load())
	}
	kept, reset := fetches(t, 4096), fetches(t, 0)
	t.Logf("figures: %d fetches for %d batches of 3 KB on each of 2 partitions with a 1,000-byte limit kept up to 4,096 bytes, %d without", kept, batches, reset)
	if reset < 2*batches || kept > batches+4 {
		t.Fatalf("%d fetches with the limit kept, %d without; want at most %d and at least %d", kept, reset, batches+4, 2*batches)
	}
}

// cutBatchLimits answers the first fetch of a partition with a cut batch, lets the next fetches
// through, and returns the partition limit of each request that named the partition, the last
// one sent after the batch arrived.
func cutBatchLimits(t *testing.T, keep int32) []int32 {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "cut", 1, nil)
	produce(t, kc, &kgo.Record{Topic: "cut", Value: []byte("p0-0")})
	k := c.Fake()
	var (
		mu     sync.Mutex
		limits []int32 // partition limit of each request naming the partition
		cut    bool
	)
	k.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				limits = append(limits, rp.PartitionMaxBytes)
			}
		}
		if cut || len(req.Topics) == 0 {
			return nil, nil, false
		}
		cut = true
		// The first 17 bytes of a batch that claims 200,000: base offset, length, leader
		// epoch, magic 2.
		head := binary.BigEndian.AppendUint64(nil, 0)
		head = binary.BigEndian.AppendUint32(head, 200_000)
		head = binary.BigEndian.AppendUint32(head, 0)
		head = append(head, 2, 0, 0, 0)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = "cut"
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.HighWatermark, rp.LastStableOffset = 1, 1
		rp.RecordBatches = head
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	f := newFetcher(t, Config{Client: client(t, c), PartitionMaxBytes: 1000, KeepMaxBytes: keep, MaxWait: 50 * time.Millisecond})
	s := newCollector()
	_ = f.Add("cut", 0, 0, s)
	checkSequence(t, 0, s.waitRecords(t, 1, 5*time.Second), 1, 0)
	produce(t, kc, &kgo.Record{Topic: "cut", Value: []byte("p0-1")})
	checkSequence(t, 0, s.waitRecords(t, 2, 5*time.Second), 2, 0)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(limits)
}

// TestContextEndStopsTheFetcher: when the context given to New ends, the loops and the router
// return by themselves (Close then only waits), and Add refuses.
func TestContextEndStopsTheFetcher(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c)
	createTopic(t, kc, "ctx", 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	f, err := New(ctx, Config{Client: client(t, c), MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = f.Add("ctx", 0, 0, newCollector())
	_ = f.Add("ctx", 1, 0, newCollector())
	for f.Loops() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		loops, routers := fetchGoroutines()
		if loops+routers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d loops and %d routers still run 2 s after the context ended", loops, routers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Add("ctx", 0, 5, newCollector()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after the context ended: %v, want ErrClosed", err)
	}
}
