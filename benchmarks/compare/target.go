package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tailWindow is how far below a partition's last stable offset the completion check of an
// exactly-once contender starts reading: far enough to pass the commit markers at the end.
const tailWindow = 64

// targetCount is the progress of a contender on the target: the sum of the partitions' end
// offsets. For an at-least-once contender that is the high watermark, which counts every record
// written (a duplicate too). For an exactly-once contender it is the last stable offset, what a
// read_committed consumer can read: records of open transactions are not counted, but the commit
// markers (one offset each, per partition and transaction) are, so the sum runs slightly ahead of
// the records committed. Completion is therefore decided by complete, not by this count.
func targetCount(ctx context.Context, adm *kadm.Client, c contender, t string) (int64, map[int32]int64) {
	list := adm.ListEndOffsets
	if c.exactlyOnce {
		list = adm.ListCommittedOffsets
	}
	offs, err := list(ctx, t)
	ends := map[int32]int64{}
	if err != nil {
		return 0, ends
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Partition >= 0 {
			n += o.Offset
			ends[o.Partition] = o.Offset
		}
	})
	return n, ends
}

// complete reports whether a catch-up run is done, given the target's count and offsets of one
// listing. At-least-once: the high watermarks add up to the records preloaded. Exactly-once:
// the committed offsets add up to at least that (markers only add), and the last committed
// record of every partition is the last record of the same source partition (both mirrors keep
// partitions and order, and an exactly-once mirror writes no duplicate, so then all are there).
func (h *harness) complete(ctx context.Context, c contender, load preloaded, t string, n int64, ends map[int32]int64) bool {
	if n < int64(load.records) {
		return false
	}
	if !c.exactlyOnce {
		return true
	}
	from := map[int32]int64{}
	for p, e := range ends {
		from[p] = max(0, e-tailWindow)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, last, err := readRange(cctx, h.target, t, from, ends, true)
	if err != nil || len(last) != len(load.last) {
		return false
	}
	for p, seq := range load.last {
		if last[p] != seq {
			return false
		}
	}
	return true
}

// readRange reads partitions from from[p] up to (not including) to[p] of topic t, with
// read_committed if committed, and returns the records read (control records left out) and the
// seq header of the last record of each partition. Control records are kept while reading: the
// offset just below a last stable offset is a commit marker or a committed record, so the read
// knows when it has reached to[p] either way.
func readRange(ctx context.Context, brokers []string, t string, from, to map[int32]int64, committed bool, extra ...kgo.Opt) (int64, map[int32]string, error) {
	parts := map[int32]kgo.Offset{}
	left := 0
	for p, f := range from {
		if to[p] > f {
			parts[p] = kgo.NewOffset().At(f)
			left++
		}
	}
	last := map[int32]string{}
	if left == 0 {
		return 0, last, nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t: parts}), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	var n int64
	done := map[int32]bool{}
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, last, fmt.Errorf("read %s: %d partitions not read to their end: %w", t, left, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Partition] || r.Offset >= to[r.Partition] {
				return
			}
			if !r.Attrs.IsControl() {
				n++
				last[r.Partition] = seqOf(r)
			}
			if r.Offset == to[r.Partition]-1 {
				done[r.Partition] = true
				left--
			}
		})
	}
	return n, last, nil
}

func seqOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == "seq" {
			return string(h.Value)
		}
	}
	return ""
}

// readSourceTails notes the seq of the last record of each partition of the source topic t,
// preloaded with n records, for the completion check of the exactly-once contenders.
func (h *harness) readSourceTails(ctx context.Context, adm *kadm.Client, t string, n int) (preloaded, error) {
	ends, err := adm.ListEndOffsets(ctx, t)
	if err != nil {
		return preloaded{}, err
	}
	from, to := map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			from[o.Partition], to[o.Partition] = o.Offset-1, o.Offset
		}
	})
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, last, err := readRange(cctx, h.source, t, from, to, false)
	if err != nil {
		return preloaded{}, fmt.Errorf("read the tails of %q: %w", t, err)
	}
	return preloaded{topic: t, records: n, last: last}, nil
}

// verifyCommitted reads the whole target topic with read_committed, after the timed part of an
// exactly-once run: a read_committed consumer must see each preloaded record exactly once. It
// also counts the transactional ids on the (freshly started) target, evidence that the
// contender wrote transactions.
func (h *harness) verifyCommitted(ctx context.Context, adm *kadm.Client, t string) (records int64, txnIDs int, err error) {
	_, ends := targetCount(ctx, adm, contender{exactlyOnce: true}, t)
	from := map[int32]int64{}
	for p := range ends {
		from[p] = 0
	}
	cctx, cancel := context.WithTimeout(ctx, h.o.timeout)
	defer cancel()
	records, _, err = readRange(cctx, h.target, t, from, ends, true)
	if err != nil {
		return records, 0, err
	}
	txns, err := adm.ListTransactions(ctx, nil, nil)
	delete(txns, warmUpTxnID)
	return records, len(txns), err
}

// warmUpTxnID is the transactional id of warmUpTransactions, left out of the ids counted.
const warmUpTxnID = "bench-txn-warm-up"

// warmUpTransactions commits one transaction on the freshly started target before an
// exactly-once contender starts: the first transactional producer of a cluster waits for the
// broker to create its transaction state topic and load the coordinators (about 10 s here), a
// one-time cost of the cluster, not of catching up.
func (h *harness) warmUpTransactions(ctx context.Context) error {
	const t = "bench-txn-warm-up"
	if err := h.createTargetTopic(ctx, t, nil); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.target...), kgo.TransactionalID(warmUpTxnID), kgo.DefaultProduceTopic(t))
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(cctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
		return fmt.Errorf("warm up the target's transactions: %w", err)
	}
	return cl.EndTransaction(cctx, kgo.TryCommit)
}

// batchCount counts the record batches a client read and their bytes (kgo.HookFetchBatchRead).
type batchCount struct{ batches, bytes int64 }

func (b *batchCount) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	b.batches++
	b.bytes += int64(m.CompressedBytes)
}

// targetBatches reads topic t of the target from the start to its end and returns how many
// record batches it holds and their bytes (control batches included): how full the mirror made
// its batches, which decides much of what each GB costs the target broker.
func targetBatches(ctx context.Context, adm *kadm.Client, brokers []string, t string) (batchCount, error) {
	ends, err := adm.ListEndOffsets(ctx, t)
	if err != nil {
		return batchCount{}, err
	}
	from, to := map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { from[o.Partition], to[o.Partition] = 0, o.Offset })
	var c batchCount
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, _, err = readRange(cctx, brokers, t, from, to, false, kgo.WithHooks(&c))
	return c, err
}
