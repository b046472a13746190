// Package verify compares what a source cluster holds with what the target holds, partition by
// partition, using franz-go (a client kmirror itself does not use for mirroring), and says which
// records were lost, duplicated, reordered or changed.
//
// It must never call a partition equal unless every source record is on the target, in the same
// order, with the same key, value, headers and timestamp.
package verify

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

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

// Partition is the comparison of one partition.
type Partition struct {
	Topic     string
	Partition int32
	// Source and Target count records on each side.
	Source, Target int
	// Lost counts source records absent from the target; Duplicates counts target records
	// beyond the first copy of a source record; Foreign counts target records that match no
	// source record (changed in transit).
	Lost, Duplicates, Foreign int
	// OutOfOrder is true when the target's first copies are not in the source's order.
	OutOfOrder bool
	// Checksum folds the source's digests in order; equal partitions have equal checksums.
	SourceChecksum, TargetChecksum uint64
}

// Exact reports whether the target holds exactly the source's records, in order, once each.
func (p Partition) Exact() bool {
	return p.Lost == 0 && p.Duplicates == 0 && p.Foreign == 0 && !p.OutOfOrder && p.Source == p.Target
}

// Complete reports whether nothing was lost or changed and order held (duplicates allowed, as
// at-least-once delivery permits).
func (p Partition) Complete() bool { return p.Lost == 0 && p.Foreign == 0 && !p.OutOfOrder }

// Report is the comparison of whole topics.
type Report struct {
	Partitions []Partition
}

// Totals sums the report.
func (r Report) Totals() (source, target, lost, dups, foreign int) {
	for _, p := range r.Partitions {
		source += p.Source
		target += p.Target
		lost += p.Lost
		dups += p.Duplicates
		foreign += p.Foreign
	}
	return
}

// Exact reports whether every partition is exact.
func (r Report) Exact() bool {
	for _, p := range r.Partitions {
		if !p.Exact() {
			return false
		}
	}
	return true
}

// Complete reports whether every partition is complete (duplicates allowed).
func (r Report) Complete() bool {
	for _, p := range r.Partitions {
		if !p.Complete() {
			return false
		}
	}
	return true
}

// String summarises the report, listing the partitions that differ.
func (r Report) String() string {
	s, t, lost, dups, foreign := r.Totals()
	var b strings.Builder
	fmt.Fprintf(&b, "source %d records, target %d records: lost %d, duplicates %d, changed %d", s, t, lost, dups, foreign)
	for _, p := range r.Partitions {
		if !p.Exact() {
			fmt.Fprintf(&b, "\n  %s/%d: source %d target %d lost %d duplicates %d changed %d out-of-order %v",
				p.Topic, p.Partition, p.Source, p.Target, p.Lost, p.Duplicates, p.Foreign, p.OutOfOrder)
		}
	}
	return b.String()
}

// Compare reads every partition of each source topic (map key) and of its target topic (map
// value) up to their current ends and compares them.
func Compare(ctx context.Context, sourceAddrs, targetAddrs []string, topics map[string]string) (Report, error) {
	var rep Report
	names := make([]string, 0, len(topics))
	for s := range topics {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, src := range names {
		srcParts, err := ReadTopic(ctx, sourceAddrs, src)
		if err != nil {
			return rep, fmt.Errorf("read source topic %q: %w", src, err)
		}
		tgtParts, err := ReadTopic(ctx, targetAddrs, topics[src])
		if err != nil {
			return rep, fmt.Errorf("read target topic %q: %w", topics[src], err)
		}
		parts := make([]int32, 0, len(srcParts))
		for p := range srcParts {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			rep.Partitions = append(rep.Partitions, ComparePartition(src, p, srcParts[p], tgtParts[p]))
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
		srcParts, err := ReadTopic(ctx, sourceAddrs, src)
		if err != nil {
			return rep, fmt.Errorf("read source topic %q: %w", src, err)
		}
		tgtParts, err := ReadTopicFrom(ctx, targetAddrs, topics[src], since[topics[src]])
		if err != nil {
			return rep, fmt.Errorf("read target topic %q: %w", topics[src], err)
		}
		parts := make([]int32, 0, len(srcParts))
		for p := range srcParts {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			rep.Partitions = append(rep.Partitions, ComparePartition(src, p, srcParts[p], tgtParts[p]))
		}
	}
	return rep, nil
}

// ComparePartition compares a source partition's digests with its target's, both in log order.
func ComparePartition(topic string, partition int32, src, tgt []Digest) Partition {
	p := Partition{Topic: topic, Partition: partition, Source: len(src), Target: len(tgt)}
	p.SourceChecksum = checksum(src)
	p.TargetChecksum = checksum(tgt)
	want := make(map[Digest]int, len(src))
	for _, d := range src {
		want[d]++
	}
	seen := make(map[Digest]int, len(tgt))
	var firsts []Digest
	for _, d := range tgt {
		switch {
		case want[d] == 0:
			p.Foreign++
		case seen[d] < want[d]:
			seen[d]++
			firsts = append(firsts, d)
		default:
			p.Duplicates++
		}
	}
	for d, n := range want {
		if seen[d] < n {
			p.Lost += n - seen[d]
		}
	}
	// The first copies must follow the source's order. At-least-once redelivery re-sends a
	// suffix, so the first copies, in target order, are a subsequence-equal prefix of the
	// source when nothing is lost.
	j := 0
	for _, d := range firsts {
		for j < len(src) && src[j] != d {
			j++
		}
		if j == len(src) {
			p.OutOfOrder = true
			break
		}
		j++
	}
	return p
}

func checksum(ds []Digest) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, d := range ds {
		binary.BigEndian.PutUint64(b[:], uint64(d))
		h.Write(b[:])
	}
	return h.Sum64()
}

// ReadTopic reads every partition of topic from its start to its end offset at the time of the
// call and returns each partition's digests in log order.
func ReadTopic(ctx context.Context, addrs []string, topic string) (map[int32][]Digest, error) {
	return ReadTopicFrom(ctx, addrs, topic, nil)
}

// ReadTopicFrom is ReadTopic starting each partition at from[partition] (or its log start, if
// later); a partition absent from from is read from its log start.
func ReadTopicFrom(ctx context.Context, addrs []string, topic string, from map[int32]int64) (map[int32][]Digest, error) {
	out := make(map[int32][]Digest)
	err := readRecords(ctx, addrs, topic, from, func(r *kgo.Record) {
		out[r.Partition] = append(out[r.Partition], Of(r))
	}, func(p int32) { out[p] = out[p][:0:0] })
	return out, err
}

// ReadRecords calls fn for every committed record of topic, partition by partition in log order,
// up to the last stable offsets found at the start. Aborted records are not returned. seen, when set, is called once for every partition.
func ReadRecords(ctx context.Context, addrs []string, topic string, fn func(*kgo.Record), seen func(int32)) error {
	return readRecords(ctx, addrs, topic, nil, fn, seen)
}

func readRecords(ctx context.Context, addrs []string, topic string, from map[int32]int64, fn func(*kgo.Record), seen func(int32)) error {
	adm, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
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
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are kept so that a partition ending in one is seen to end.
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(16<<20),
	)
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
