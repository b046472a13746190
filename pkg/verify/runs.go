package verify

import (
	"encoding/binary"
	"hash/fnv"
	"sort"
)

// Log is one partition's records in log order.
type Log struct {
	Digests []Digest
	// Offsets holds the offset of each record (Offsets[i] is that of Digests[i]); nil means the
	// offsets are the indices 0, 1, 2, ...
	Offsets []int64
}

// offset is the offset of record i; for i == len(Digests) it is the offset the next record
// would have.
func (l Log) offset(i int) int64 {
	if l.Offsets == nil {
		return int64(i)
	}
	if i < len(l.Offsets) {
		return l.Offsets[i]
	}
	if len(l.Offsets) == 0 {
		return 0
	}
	return l.Offsets[len(l.Offsets)-1] + 1
}

// index is the index of the first record at or after offset.
func (l Log) index(offset int64) int {
	if l.Offsets == nil {
		return int(min(max(offset, 0), int64(len(l.Digests))))
	}
	return sort.Search(len(l.Offsets), func(i int) bool { return l.Offsets[i] >= offset })
}

// ComparePartition compares a source partition's digests with its target's, both in log order,
// for a mirror that started at the source's first record. Offsets in the result are indices.
func ComparePartition(topic string, partition int32, src, tgt []Digest) Partition {
	return CheckPartition(topic, partition, Log{Digests: src}, Log{Digests: tgt}, 0)
}

// CheckPartition compares a source partition with its target for a mirror whose first record
// to copy was the source's record at offset from (0, or any offset at or before the first
// record, when it started at the beginning).
//
// At-least-once delivery allows exactly one shape: the target is a concatenation of runs
// src[a1:b1] ++ src[a2:b2] ++ ... where a1 is from's index, every re-run restarts at or before
// the point where the previous run stopped (a(k+1) <= b(k): a restart from a committed
// position, never skipping ahead), and the runs together reach the source's end. Anything else
// is reported: records never copied (Lost, by range), copies of nothing in the source
// (Foreign), first copies out of source order (OutOfOrder), and re-runs that skip ahead
// (BadReruns).
//
// The target is matched by position, not by counting digests, so identical records (the same
// digest at several source positions) are told apart by where they stand in their run. A
// target record continues the current run when it equals the next source record; otherwise it
// starts a re-run at the latest source position at or before the current one that holds the
// same digest. Taking the latest such position never rejects a valid target: restarting later
// leaves every restart an earlier one allowed still allowed. So the verdict (Complete, Exact)
// is exact even with repeats; only the diagnosis of an invalid target (which copy was lost,
// which duplicated) is one of several that explain it equally well.
func CheckPartition(topic string, partition int32, src, tgt Log, from int64) Partition {
	n := len(src.Digests)
	start := src.index(from)
	p := Partition{
		Topic: topic, Partition: partition, Source: n, Target: len(tgt.Digests),
		From: start, FromOffset: src.offset(start),
		SourceChecksum: checksum(src.Digests[start:]), TargetChecksum: checksum(tgt.Digests),
	}
	positions := make(map[Digest][]int, n-start) // ascending source indices of each digest
	for i := start; i < n; i++ {
		positions[src.Digests[i]] = append(positions[src.Digests[i]], i)
	}
	covered := make([]bool, n)
	next := start     // the source index the current run copies next
	frontier := start // one past the highest source index copied so far
	matched := false
	for j, d := range tgt.Digests {
		at := -1
		ps := positions[d]
		if len(ps) == 0 {
			if p.Foreign == 0 {
				p.FirstForeign = Position{Target: j, TargetOffset: tgt.offset(j), Source: -1, SourceOffset: -1}
			}
			p.Foreign++
			continue
		}
		if k := sort.SearchInts(ps, next+1); k > 0 {
			at = ps[k-1] // continues the run (at == next) or restarts at or before it
		} else {
			at = ps[0] // skips ahead of the current run's end
			if next < frontier {
				// A re-run (behind the frontier) that skips ahead: records between where it
				// stood and where it resumes are missing from this run.
				if p.BadReruns == 0 {
					p.FirstBadRerun = Rerun{
						Position: Position{Target: j, TargetOffset: tgt.offset(j), Source: at, SourceOffset: src.offset(at)},
						After:    next, AfterOffset: src.offset(next),
					}
				}
				p.BadReruns++
			}
		}
		if !matched || at != next {
			p.Runs++
			matched = true
		}
		switch {
		case covered[at]:
			p.Duplicates++
		case at < frontier:
			// The first copy of a record comes after a later record's first copy.
			if !p.OutOfOrder {
				p.OutOfOrder = true
				p.FirstReordered = Position{Target: j, TargetOffset: tgt.offset(j), Source: at, SourceOffset: src.offset(at)}
			}
			p.Reordered++
			covered[at] = true
		default:
			covered[at] = true
		}
		next = at + 1
		frontier = max(frontier, next)
	}
	for i := start; i < n; {
		if covered[i] {
			i++
			continue
		}
		r := Range{From: i}
		for i < n && !covered[i] {
			i++
		}
		r.To = i
		r.FromOffset, r.ToOffset = src.offset(r.From), src.offset(r.To-1)
		p.LostRanges = append(p.LostRanges, r)
		p.Lost += r.Len()
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
