// Package verify compares what a source cluster holds with what the target holds, partition by
// partition, using franz-go (a client kmirror itself does not use for mirroring), and says which
// records were lost, duplicated, reordered or changed, and where (in source offsets).
//
// It must never call a partition complete unless every source record is on the target, the
// first copies stand in the source's order, and every duplicate belongs to a whole re-run from
// an earlier position (the only kind at-least-once delivery makes); nor exact unless, besides,
// each record is there once.
package verify

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Digest identifies one record's content: key, value, headers (in order) and timestamp, with
// null and empty told apart.
type Digest uint64

// Of computes the digest of a record.
func Of(r *kgo.Record) Digest {
	h := fnv.New64a()
	var b [8]byte
	writeBytes := func(p []byte) {
		if p == nil {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint64(b[:], uint64(len(p)))
		h.Write(b[:])
		h.Write(p)
	}
	writeBytes(r.Key)
	writeBytes(r.Value)
	binary.BigEndian.PutUint64(b[:], uint64(len(r.Headers)))
	h.Write(b[:])
	for _, hd := range r.Headers {
		writeBytes([]byte(hd.Key))
		writeBytes(hd.Value)
	}
	binary.BigEndian.PutUint64(b[:], uint64(r.Timestamp.UnixMilli()))
	h.Write(b[:])
	return Digest(h.Sum64())
}

// Compare reads every partition of each source topic (map key) and of its target topic (map
// value) up to their current ends and compares them, for a mirror that started at the source's
// beginning.
func Compare(ctx context.Context, sourceAddrs, targetAddrs []string, topics map[string]string) (Report, error) {
	return CompareWith(ctx, sourceAddrs, targetAddrs, topics, Options{})
}

// Options tune CompareWith.
type Options struct {
	// From holds, per source topic and partition, the offset of the first record the mirror was
	// to copy (a mirror started at the newest offset); other partitions start at their beginning.
	From map[string]map[int32]int64
	// SourceOpts and TargetOpts are added to the franz-go clients of each side (TLS, SASL).
	SourceOpts, TargetOpts []kgo.Opt
}

// CompareWith is Compare with options. A target partition the source lacks counts its records
// as changed.
func CompareWith(ctx context.Context, sourceAddrs, targetAddrs []string, topics map[string]string, opt Options) (Report, error) {
	var rep Report
	names := make([]string, 0, len(topics))
	for s := range topics {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, src := range names {
		srcParts, err := readPartitions(ctx, sourceAddrs, opt.SourceOpts, src, nil)
		if err != nil {
			return rep, fmt.Errorf("read source topic %q: %w", src, err)
		}
		tgtParts, err := readPartitions(ctx, targetAddrs, opt.TargetOpts, topics[src], nil)
		if err != nil {
			return rep, fmt.Errorf("read target topic %q: %w", topics[src], err)
		}
		parts := make([]int32, 0, len(srcParts))
		for p := range srcParts {
			parts = append(parts, p)
		}
		for p := range tgtParts {
			if _, ok := srcParts[p]; !ok {
				parts = append(parts, p)
			}
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			rep.Partitions = append(rep.Partitions, CheckPartition(src, p, srcParts[p], tgtParts[p], opt.From[src][p]))
		}
	}
	return rep, nil
}

// CompareSince is Compare for a target topic that held records before the source topic's current
// incarnation (a source topic deleted and created again while the target kept the old records):
// in each target partition, only the records at or after since[target topic][partition] are
// compared with the source partition; a partition absent from since is compared whole.
func CompareSince(ctx context.Context, sourceAddrs, targetAddrs []string, topics map[string]string, since map[string]map[int32]int64) (Report, error) {
	var rep Report
	names := make([]string, 0, len(topics))
	for s := range topics {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, src := range names {
		srcParts, err := ReadPartitions(ctx, sourceAddrs, src)
		if err != nil {
			return rep, fmt.Errorf("read source topic %q: %w", src, err)
		}
		tgtParts, err := ReadPartitionsFrom(ctx, targetAddrs, topics[src], since[topics[src]])
		if err != nil {
			return rep, fmt.Errorf("read target topic %q: %w", topics[src], err)
		}
		parts := make([]int32, 0, len(srcParts))
		for p := range srcParts {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			rep.Partitions = append(rep.Partitions, CheckPartition(src, p, srcParts[p], tgtParts[p], 0))
		}
	}
	return rep, nil
}

// ReadTopic reads every partition of topic from its start to its end offset at the time of the
// call and returns each partition's digests in log order.
func ReadTopic(ctx context.Context, addrs []string, topic string) (map[int32][]Digest, error) {
	logs, err := ReadPartitions(ctx, addrs, topic)
	out := make(map[int32][]Digest, len(logs))
	for p, l := range logs {
		out[p] = l.Digests
	}
	return out, err
}

// ReadPartitions reads every partition of topic from its start to its end offset at the time of
// the call and returns each partition's digests and offsets in log order.
func ReadPartitions(ctx context.Context, addrs []string, topic string) (map[int32]Log, error) {
	return ReadPartitionsFrom(ctx, addrs, topic, nil)
}

// ReadPartitionsFrom is ReadPartitions starting each partition at from[partition] (or its log
// start, if later); a partition absent from from is read from its log start.
func ReadPartitionsFrom(ctx context.Context, addrs []string, topic string, from map[int32]int64) (map[int32]Log, error) {
	return readPartitions(ctx, addrs, nil, topic, from)
}

func readPartitions(ctx context.Context, addrs []string, opts []kgo.Opt, topic string, from map[int32]int64) (map[int32]Log, error) {
	out := make(map[int32]Log)
	err := readRecords(ctx, addrs, opts, topic, from, func(r *kgo.Record) {
		l := out[r.Partition]
		l.Digests = append(l.Digests, Of(r))
		l.Offsets = append(l.Offsets, r.Offset)
		out[r.Partition] = l
	}, func(p int32) { out[p] = Log{Digests: []Digest{}, Offsets: []int64{}} })
	return out, err
}

// ReadRecords calls fn for every committed record of topic, partition by partition in log order,
// up to the last stable offsets found at the start. Aborted records are not returned. seen, when set, is called once for every partition.
func ReadRecords(ctx context.Context, addrs []string, topic string, fn func(*kgo.Record), seen func(int32)) error {
	return readRecords(ctx, addrs, nil, topic, nil, fn, seen)
}

func readRecords(ctx context.Context, addrs []string, opts []kgo.Opt, topic string, from map[int32]int64, fn func(*kgo.Record), seen func(int32)) error {
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		return err
	}
	defer adm.Close()
	// The last stable offset: every offset below it is decided (committed or aborted).
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := kadm.NewClient(adm).ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list start offsets: %w", err)
	}
	assign := make(map[int32]kgo.Offset)
	remaining := make(map[int32]int64)
	var topicErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			topicErr = o.Err
			return
		}
		if seen != nil {
			seen(o.Partition)
		}
		start, _ := starts.Lookup(topic, o.Partition)
		first := max(start.Offset, from[o.Partition])
		if o.Offset > first {
			assign[o.Partition] = kgo.NewOffset().At(first)
			remaining[o.Partition] = o.Offset
		}
	})
	if topicErr != nil {
		return fmt.Errorf("topic %q: %w", topic, topicErr)
	}
	if len(assign) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are kept so that a partition ending in one is seen to end.
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(16 << 20),
	}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %d partitions unfinished: %w", topic, len(remaining), err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("%s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				fn(r)
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return nil
}

// EndOffsets sums the end offsets of every partition of topic: the number of records it holds
// when nothing was deleted and no transaction markers were written. It returns an error while
// the topic does not exist or cannot be listed.
func EndOffsets(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	var firstErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && firstErr == nil {
			firstErr = o.Err
		}
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n, firstErr
}
