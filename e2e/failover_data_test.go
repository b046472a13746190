//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// The failover scenario's data on europe: three topics, each a different way for a source offset
// to hold no record a consumer sees (none in plain; transaction markers and aborted records in
// txn; records removed by the log cleaner in compacted), every record carrying an id of its own
// in its value so that a copy read on the target is tied to its source offset.

const (
	// compactedRounds rounds of compactedPerRound records go to each partition of compacted, a
	// new segment for each round: the cleaner removes superseded records from all but the last.
	compactedRounds   = 6
	compactedPerRound = 400
	compactedHotKeys  = 40
	// txnWriters transactional producers write txnPerWriter transactions each into txn, every
	// third aborted, while the mirror runs.
	txnWriters   = 2
	txnPerWriter = 100
)

// startEurope starts europe with a log cleaner that looks for dirty logs every 200 ms (instead
// of every 15 s), so that compacted is compacted within seconds.
func startEurope(t *testing.T) *cluster {
	t.Helper()
	extra := filepath.Join(t.TempDir(), "cleaner.properties")
	if err := os.WriteFile(extra, []byte("log.cleaner.backoff.ms=200\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startCluster(t, "europe", "--extra-config", extra)
}

// recordID is the id a record of the scenario carries: its value up to the first '|', or the
// "record-NNNNNNNNN" prefix of a startLoad value.
func recordID(v []byte) string {
	if i := bytes.IndexByte(v, '|'); i >= 0 {
		return string(v[:i])
	}
	if len(v) >= 16 && bytes.HasPrefix(v, []byte("record-")) {
		return string(v[:16])
	}
	return string(v)
}

// writeCompacted creates compacted on c (cleanup.policy compact, a new segment every 100 ms, the
// cleaner at the first dirty byte) and writes compactedRounds rounds to each of its 3
// partitions, 300 ms apart: a quarter of each round's records have keys of their own, the rest
// rewrite compactedHotKeys keys. It waits until the cleaner has removed every superseded record
// outside the last segment (offsets with gaps when read), then drops the topic's fast-cleaning
// overrides so that nothing more is removed while the mirrors read it, and so that no mirror
// copies them to its target topic (where a cleaner would remove copies a group is to read).
func writeCompacted(t *testing.T, c *cluster) {
	t.Helper()
	c.createTopic(t, "compacted", 3, 1, map[string]*string{
		"cleanup.policy": ptr("compact"), "segment.ms": ptr("100"), "min.cleanable.dirty.ratio": ptr("0.01"),
	})
	cl := producer(t, c, kgo.ProducerLinger(5*time.Millisecond))
	for round := 0; round < compactedRounds; round++ {
		var rs []*kgo.Record
		for p := int32(0); p < 3; p++ {
			for i := 0; i < compactedPerRound; i++ {
				key := fmt.Sprintf("hot-%d", i%compactedHotKeys)
				if i%4 == 0 {
					key = fmt.Sprintf("cold-%d-%d", round, i)
				}
				id := fmt.Sprintf("c%d-%d-%d", p, round, i)
				rs = append(rs, &kgo.Record{Topic: "compacted", Partition: p, Key: []byte(key),
					Value: []byte(fmt.Sprintf("%s|round=%d|%s", id, round, strings.Repeat("c", 40)))})
			}
		}
		produceSync(t, cl, rs...)
		time.Sleep(300 * time.Millisecond)
	}
	var kept, written int
	waitFor(t, "the cleaner to compact every partition of compacted", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Per partition: keys seen in rounds before the last (superseded copies left there mean
		// the cleaner has not been through), records kept and gaps between offsets.
		type state struct {
			keys       map[string]bool
			dirty      bool
			kept, gaps int
			last       int64
		}
		parts := map[int32]*state{}
		err := verify.ReadRecords(ctx, c.bootstrap, "compacted", func(r *kgo.Record) {
			s := parts[r.Partition]
			if s == nil {
				s = &state{keys: map[string]bool{}, last: -1}
				parts[r.Partition] = s
			}
			if r.Offset != s.last+1 {
				s.gaps++
			}
			s.last = r.Offset
			s.kept++
			if !bytes.Contains(r.Value, []byte(fmt.Sprintf("|round=%d|", compactedRounds-1))) {
				if s.keys[string(r.Key)] {
					s.dirty = true
				}
				s.keys[string(r.Key)] = true
			}
		}, nil)
		if err != nil || len(parts) != 3 {
			return false
		}
		kept = 0
		for _, s := range parts {
			if s.dirty || s.gaps == 0 {
				return false
			}
			kept += s.kept
		}
		return true
	})
	written = 3 * compactedRounds * compactedPerRound
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.admin(t).AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.DeleteConfig, Name: "segment.ms"}, {Op: kadm.DeleteConfig, Name: "min.cleanable.dirty.ratio"},
	}, "compacted")
	if err == nil {
		_, err = resp.On("compacted", nil)
	}
	if err != nil {
		t.Fatalf("drop compacted's cleaning overrides: %v", err)
	}
	t.Logf("compacted: the cleaner kept %d of %d records", kept, written)
}

// txnWriterSet writes transactions into txn: txnWriters franz-go transactional producers at
// once, so that their transactions interleave in each partition, every third one aborted.
type txnWriterSet struct {
	mu                 sync.Mutex
	committed, aborted int // records
	errs               []error
	stop, done         chan struct{}
}

// startTxnWriters starts the writers into txn on c.
func startTxnWriters(t *testing.T, c *cluster) *txnWriterSet {
	t.Helper()
	w := &txnWriterSet{stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	for n := 0; n < txnWriters; n++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.TransactionalID(fmt.Sprintf("failover-txn-%d", n)),
			kgo.DefaultProduceTopic("txn"), kgo.ProducerLinger(2*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			if err := w.write(cl, n); err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Errorf("transactional writer %d: %w", n, err))
				w.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(w.done) }()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *txnWriterSet) write(cl *kgo.Client, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for x := 0; x < txnPerWriter; x++ {
		select {
		case <-w.stop:
			return nil
		default:
		}
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		commit := x%3 != 2
		size := 20 + (x*37+n*11)%100
		for i := 0; i < size; i++ {
			id := fmt.Sprintf("t%d-%d-%d", n, x, i)
			cl.Produce(ctx, &kgo.Record{Key: []byte(id), Value: []byte(fmt.Sprintf("%s|commit=%v|%s", id, commit, strings.Repeat("t", 60)))}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			return err
		}
		w.mu.Lock()
		if commit {
			w.committed += size
		} else {
			w.aborted += size
		}
		w.mu.Unlock()
		time.Sleep(40 * time.Millisecond)
	}
	return nil
}

// halt stops the writers after their current transaction.
func (w *txnWriterSet) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// wait blocks until every writer has written its transactions.
func (w *txnWriterSet) wait(t *testing.T) (committed, aborted int) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("transactional writers did not finish")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("%d transactional writer errors, first: %v", len(w.errs), w.errs[0])
	}
	return w.committed, w.aborted
}

// sourceRecord is where the source holds a record.
type sourceRecord struct {
	partition int32
	offset    int64
}

// sourceIndex maps each record id of a topic to where the source holds it.
type sourceIndex map[string]sourceRecord

// lastOffsets is the offset of each partition's last record.
func (ix sourceIndex) lastOffsets() map[int32]int64 {
	out := map[int32]int64{}
	for _, r := range ix {
		if o, ok := out[r.partition]; !ok || r.offset > o {
			out[r.partition] = r.offset
		}
	}
	return out
}

// indexSource reads every committed record of topic on c (read_committed, franz-go) and indexes
// the ids.
func indexSource(t *testing.T, c *cluster, topic string) sourceIndex {
	t.Helper()
	ix := sourceIndex{}
	for p, rs := range readRecords(t, c, topic) {
		for _, r := range rs {
			id := recordID(r.Value)
			if prev, dup := ix[id]; dup {
				t.Fatalf("%s on %s holds id %s twice (partition %d offset %d and partition %d offset %d)",
					topic, c.name, id, prev.partition, prev.offset, p, r.Offset)
			}
			ix[id] = sourceRecord{partition: p, offset: r.Offset}
		}
	}
	return ix
}

// groupPositions is a consumer group's committed offsets, by topic and partition.
type groupPositions map[string]map[int32]int64

// committedPositions fetches group's committed offsets on c, trying again for 30 s while the
// group coordinator is not available (a cluster just started, or busy).
func committedPositions(t *testing.T, c *cluster, group string) groupPositions {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := c.admin(t)
	offs, err := adm.FetchOffsets(ctx, group)
	for err != nil && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		offs, err = adm.FetchOffsets(ctx, group)
	}
	if err != nil {
		t.Fatalf("fetch %s's offsets on %s: %v", group, c.name, err)
	}
	out := groupPositions{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil || o.At < 0 {
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out
}

// consumeAndCommit runs a franz-go group consumer (read_committed, from the earliest offset) as
// group on c over topics. With limit nil it reads every record of each topic (up to last, the
// offset of each partition's last record) and commits what it polled, as an application does;
// otherwise it processes limit[topic] records of each topic, spread evenly over its partitions,
// marks each processed record and commits the marks, leaving the group that many records into
// each topic. With commit false it polls for a while and leaves without committing.
func consumeAndCommit(t *testing.T, c *cluster, group string, source map[string]sourceIndex, limit map[string]int, commit bool) {
	t.Helper()
	topics := make([]string, 0, len(source))
	for topic := range source {
		topics = append(topics, topic)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.bootstrap...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if limit != nil {
		opts = append(opts, kgo.AutoCommitMarks()) // only what was processed is committed
	} else {
		opts = append(opts, kgo.DisableAutoCommit())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	last := map[string]map[int32]int64{}
	for topic, ix := range source {
		last[topic] = ix.lastOffsets()
	}
	// quota is how many records of each partition to process (limit set).
	quota := func(topic string, p int32) int {
		n := len(last[topic])
		q := limit[topic] / n
		if int(p) < limit[topic]%n {
			q++
		}
		return q
	}
	processed := map[string]map[int32]int{}
	seen := map[string]map[int32]int64{}
	for topic := range source {
		processed[topic], seen[topic] = map[int32]int{}, map[int32]int64{}
	}
	done := func() bool {
		if !commit {
			return false
		}
		for topic := range source {
			for p, o := range last[topic] {
				if limit != nil && processed[topic][p] < quota(topic, p) {
					return false
				}
				if s, ok := seen[topic][p]; limit == nil && (!ok || s < o) {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(3 * time.Second)
	for !done() {
		if !commit && time.Now().After(deadline) {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("group %s on %s: consumed %v of %v, last offsets seen %v", group, c.name, processed, limit, seen)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Logf("group %s: fetch %s/%d: %v", group, topic, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			seen[r.Topic][r.Partition] = r.Offset
			if limit != nil && processed[r.Topic][r.Partition] >= quota(r.Topic, r.Partition) {
				return
			}
			processed[r.Topic][r.Partition]++
			if limit != nil {
				cl.MarkCommitRecords(r)
			}
		})
	}
	if !commit {
		return
	}
	if limit == nil {
		err = cl.CommitUncommittedOffsets(ctx)
	} else {
		err = cl.CommitMarkedOffsets(ctx)
	}
	if err != nil {
		t.Fatalf("group %s commits on %s: %v", group, c.name, err)
	}
}

// commitOn commits offsets of topic for group on c with the admin API (the group must have no
// members).
func commitOn(t *testing.T, c *cluster, group, topic string, offsets map[int32]int64) {
	t.Helper()
	os := make(kadm.Offsets)
	for p, o := range offsets {
		os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.admin(t).CommitOffsets(ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit %s's offsets on %s: %v", group, c.name, err)
	}
}

// joinGroup starts a franz-go member of group on c consuming topic (no commits) and returns once
// it has joined; it leaves when the test ends.
func joinGroup(t *testing.T, c *cluster, group, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	waitFor(t, group+" to have a member on "+c.name, time.Minute, func() bool { return groupJoined(cl) })
}
