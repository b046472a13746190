package verify

import (
	"fmt"
	"strings"
)

// Partition is the comparison of one partition.
type Partition struct {
	Topic     string
	Partition int32
	// Source and Target count records on each side.
	Source, Target int
	// From is the source index (FromOffset the offset) of the first record the mirror was to
	// copy: 0 unless it started later than the source's beginning.
	From       int
	FromOffset int64
	// Lost counts source records (from From on) absent from the target, LostRanges lists them;
	// Duplicates counts target records beyond the first copy of a source record; Foreign counts
	// target records that match no source record (changed in transit), FirstForeign locates the
	// first.
	Lost, Duplicates, Foreign int
	LostRanges                []Range
	FirstForeign              Position
	// Runs counts the passes over the source the target holds: 1 for a single pass, more after
	// re-deliveries from a committed position.
	Runs int
	// OutOfOrder is true when the target's first copies are not in the source's order; Reordered
	// counts first copies that came after the first copy of a later source record, and
	// FirstReordered is the first of them.
	OutOfOrder     bool
	Reordered      int
	FirstReordered Position
	// BadReruns counts re-runs that start past the point where the previous run stopped;
	// FirstBadRerun is the first.
	BadReruns     int
	FirstBadRerun Rerun
	// Checksum folds the digests in order: the source's from From on, the target's whole.
	// Exact partitions have equal checksums.
	SourceChecksum, TargetChecksum uint64
}

// Range is a contiguous range of source records: indices [From, To), offsets FromOffset to
// ToOffset inclusive.
type Range struct {
	From, To             int
	FromOffset, ToOffset int64
}

// Len is the number of records in the range.
func (r Range) Len() int { return r.To - r.From }

func (r Range) String() string {
	if r.Len() == 1 {
		return fmt.Sprintf("offset %d", r.FromOffset)
	}
	return fmt.Sprintf("offsets %d-%d (%d records)", r.FromOffset, r.ToOffset, r.Len())
}

// Position locates a target record and the source record it copies (Source and SourceOffset
// are -1 for a record that copies none).
type Position struct {
	Target       int
	TargetOffset int64
	Source       int
	SourceOffset int64
}

// Rerun locates a re-run: its first target record, the source record it starts at, and the
// source index (After, offset AfterOffset) the previous run would have copied next.
type Rerun struct {
	Position
	After       int
	AfterOffset int64
}

// Exact reports whether the target holds exactly the source's records (from From on), in
// order, once each.
func (p Partition) Exact() bool {
	return p.Complete() && p.Duplicates == 0 && p.Target == p.Source-p.From
}

// Complete reports whether nothing was lost or changed, the first copies kept the source's
// order, and every duplicate belongs to a whole re-run from a committed position (what
// at-least-once delivery permits).
func (p Partition) Complete() bool {
	return p.Lost == 0 && p.Foreign == 0 && !p.OutOfOrder && p.BadReruns == 0
}

// Problems describes what keeps the partition from being exact, one phrase each.
func (p Partition) Problems() []string {
	var out []string
	for i, r := range p.LostRanges {
		if i == 5 {
			out = append(out, fmt.Sprintf("... %d more lost ranges", len(p.LostRanges)-i))
			break
		}
		out = append(out, "lost "+r.String())
	}
	if p.Foreign > 0 {
		out = append(out, fmt.Sprintf("%d changed (first at target offset %d)", p.Foreign, p.FirstForeign.TargetOffset))
	}
	if p.OutOfOrder {
		f := p.FirstReordered
		out = append(out, fmt.Sprintf("%d out of order (first: target offset %d holds source offset %d after a later record)",
			p.Reordered, f.TargetOffset, f.SourceOffset))
	}
	if p.BadReruns > 0 {
		f := p.FirstBadRerun
		out = append(out, fmt.Sprintf("%d re-runs skip ahead (first: target offset %d resumes at source offset %d, the previous run stopped before %d)",
			p.BadReruns, f.TargetOffset, f.SourceOffset, f.AfterOffset))
	}
	if p.Duplicates > 0 {
		out = append(out, fmt.Sprintf("%d duplicates in %d runs", p.Duplicates, p.Runs))
	}
	if len(out) == 0 && !p.Exact() {
		out = append(out, fmt.Sprintf("target holds %d records, want %d", p.Target, p.Source-p.From))
	}
	return out
}

// Report is the comparison of whole topics.
type Report struct {
	Partitions []Partition
}

// Sum is a report's figures summed over its partitions.
type Sum struct {
	Source, Target, Lost, Duplicates, Foreign, Reordered, BadReruns int
}

// Sum adds up the report's figures.
func (r Report) Sum() Sum {
	var s Sum
	for _, p := range r.Partitions {
		s.Source += p.Source
		s.Target += p.Target
		s.Lost += p.Lost
		s.Duplicates += p.Duplicates
		s.Foreign += p.Foreign
		s.Reordered += p.Reordered
		s.BadReruns += p.BadReruns
	}
	return s
}

// Totals sums the report.
func (r Report) Totals() (source, target, lost, dups, foreign int) {
	s := r.Sum()
	return s.Source, s.Target, s.Lost, s.Duplicates, s.Foreign
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

// Complete reports whether every partition is complete (duplicates allowed as whole re-runs).
func (r Report) Complete() bool {
	for _, p := range r.Partitions {
		if !p.Complete() {
			return false
		}
	}
	return true
}

// Partition returns the comparison of topic's partition, if the report holds it.
func (r Report) Partition(topic string, partition int32) (Partition, bool) {
	for _, p := range r.Partitions {
		if p.Topic == topic && p.Partition == partition {
			return p, true
		}
	}
	return Partition{}, false
}

// String summarises the report, listing the partitions that differ and how.
func (r Report) String() string {
	s := r.Sum()
	var b strings.Builder
	fmt.Fprintf(&b, "source %d records, target %d records: lost %d, duplicates %d, changed %d, out of order %d, bad re-runs %d",
		s.Source, s.Target, s.Lost, s.Duplicates, s.Foreign, s.Reordered, s.BadReruns)
	for _, p := range r.Partitions {
		if !p.Exact() {
			fmt.Fprintf(&b, "\n  %s/%d: source %d target %d: %s", p.Topic, p.Partition, p.Source-p.From, p.Target,
				strings.Join(p.Problems(), "; "))
		}
	}
	return b.String()
}
