package offsetmap

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// The model the index tests check Translate against: a source partition, a mirror that copies
// it in runs (each from a committed position, possibly crashing part-way), the target log those
// runs write, and the offset map their recorders build. The oracle reads the simulated target
// log the way a consumer group resumed on the target would.

// simSource is a simulated source partition: offsets [0, len) and, for each, whether it holds a
// record a consumer reads (false: a transaction marker, an aborted or a compacted record).
type simSource []bool

// sourceOf reads a pattern: 'r' is a record, '-' an offset without one.
func sourceOf(pattern string) simSource {
	s := make(simSource, len(pattern))
	for i, ch := range pattern {
		s[i] = ch == 'r'
	}
	return s
}

func (s simSource) end() int64 { return int64(len(s)) }

// nextRecord returns the first record at or after o, or the end.
func (s simSource) nextRecord(o int64) int64 {
	for ; o < s.end(); o++ {
		if s[o] {
			return o
		}
	}
	return s.end()
}

// NoRecords is the source read back by a Prober: whether [from, to) holds no record.
func (s simSource) NoRecords(_ context.Context, _ string, _ int32, from, to int64) (bool, error) {
	return s.nextRecord(max(from, 0)) >= to, nil
}

// simCopy is a record of the target log: the copy of source offset src made by run.
type simCopy struct {
	src int64
	run int
}

// simRun is one run of the mirror: it read the source from start and copied log[first:first+copies].
type simRun struct {
	start         int64
	first, copies int
	lastSrc       int64 // the last record it copied; -1 when none
	// reach is the highest position the run may have committed: it copied every record in
	// [start, reach). The next run starts at or below it.
	reach   int64
	crashed bool // it stopped before copying every record from start on
}

// runSpec is a run of a scenario: it starts at start and copies at most copies records
// (negative: every record to the source's end).
type runSpec struct {
	start  int64
	copies int
}

type mirrorSim struct {
	t    testing.TB
	src  simSource
	base int64 // the target offset of the first copy
	log  []simCopy
	runs []simRun
	idx  *Index
	// flushEvery writes the recorder's Pending chunks after every flushEvery acks (0: at the end
	// of each run), so that growing chunks are written again under the same key.
	flushEvery int
	// viaTopic applies each chunk as the map topic's record (Key, Encode) instead of Put.
	viaTopic bool

	answers []simAnswer // every exact answer, checked again against the final log
	stats   simStats

	lowest    []int64 // lowestLastCopy by position, for a log of lowestFor copies
	lowestFor int
}

type simAnswer struct{ c, target int64 }

// simStats counts, over every state of a scenario, what the oracle saw.
type simStats struct {
	rereads int // copies of records below the position read from the answer (a crashed run's duplicates)
	// final is how many positions got each status once every run was done (before Resolve).
	final map[Status]int
}

func newMirrorSim(t testing.TB, src simSource, base int64) *mirrorSim {
	return &mirrorSim{t: t, src: src, base: base, idx: NewIndex()}
}

// run simulates one run of the mirror and records its copies with a recorder of its own.
func (m *mirrorSim) run(spec runSpec) {
	m.t.Helper()
	if n := len(m.runs); n > 0 && spec.start > m.runs[n-1].reach {
		m.t.Fatalf("scenario: run %d starts at %d, past %d, what run %d copied", n, spec.start, m.runs[n-1].reach, n-1)
	}
	r := NewRecorder("t", 0, "id", spec.start)
	run := simRun{start: spec.start, first: len(m.log), lastSrc: -1}
	for o := spec.start; o < m.src.end(); o++ {
		if !m.src[o] {
			continue
		}
		if spec.copies >= 0 && run.copies == spec.copies {
			run.crashed = true
			break
		}
		r.Copied(o, m.base+int64(len(m.log)))
		m.log = append(m.log, simCopy{src: o, run: len(m.runs)})
		run.copies++
		run.lastSrc = o
		if m.flushEvery > 0 && run.copies%m.flushEvery == 0 {
			m.flush(r)
		}
	}
	m.flush(r)
	run.reach = m.src.nextRecord(spec.start)
	if run.lastSrc >= 0 {
		run.reach = m.src.nextRecord(run.lastSrc + 1)
	}
	m.runs = append(m.runs, run)
}

func (m *mirrorSim) flush(r *Recorder) {
	m.t.Helper()
	for _, c := range r.Pending() {
		if !m.viaTopic {
			m.idx.Put(c)
			continue
		}
		if err := m.idx.Apply(c.Key(), c.Encode()); err != nil {
			m.t.Fatalf("Apply(%s): %v", c.Key(), err)
		}
	}
}

// expect is the oracle's translation of position c in the current state.
func (m *mirrorSim) expect(c int64) (status Status, target, behind, mirrored int64) {
	mirrored, covered, lastEnd := int64(-1), false, int64(-1)
	for _, r := range m.runs {
		if r.copies == 0 {
			continue
		}
		mirrored = max(mirrored, r.lastSrc+1)
		lastEnd = r.lastSrc + 1 // where the copies written last end
		// A run's recorder covers [start, lastSrc]: it saw every offset there, record or not.
		covered = covered || r.start <= c && c <= r.lastSrc
	}
	switch {
	case covered:
		return Exact, m.lowestLastCopy(c), 0, mirrored
	case mirrored < 0:
		return NotYet, -1, -1, -1
	case c >= mirrored && lastEnd < mirrored:
		// The run that copied last re-copies what an earlier one had copied, and has not caught
		// up: the target's end is no position yet.
		return NotYet, -1, c - lastEnd, mirrored
	case c >= mirrored:
		return NotYet, -1, c - mirrored, mirrored
	default: // before the first run that copied anything, or in a hole between runs' coverage
		return Unknown, -1, 0, mirrored
	}
}

// lowestLastCopy is the lowest target offset among the last copies of the records at or after
// c: reading from there skips none of the copies on the target, whatever later runs will do.
func (m *mirrorSim) lowestLastCopy(c int64) int64 {
	if m.lowestFor != len(m.log) { // the suffix minimum of the last copies, once per state
		last := make([]int64, m.src.end()+1)
		for i := range last {
			last[i] = -1
		}
		for i, cp := range m.log {
			last[cp.src] = m.base + int64(i)
		}
		for i := len(last) - 2; i >= 0; i-- {
			if next := last[i+1]; next >= 0 && (last[i] < 0 || next < last[i]) {
				last[i] = next
			}
		}
		m.lowest, m.lowestFor = last, len(m.log)
	}
	return m.lowest[c]
}

func (m *mirrorSim) lastCopy(src int64) int64 {
	for i := len(m.log) - 1; i >= 0; i-- {
		if m.log[i].src == src {
			return m.base + int64(i)
		}
	}
	m.t.Fatalf("oracle: record %d was never copied", src)
	return -1
}

// check translates every position from 0 to the source's end (inclusive) and compares with
// the oracle; each exact answer is read from the target log as a consumer would.
func (m *mirrorSim) check() {
	m.t.Helper()
	m.checkChunksMatchLog()
	final := map[Status]int{}
	for c := int64(0); c <= m.src.end(); c++ {
		tr := m.idx.Translate("t", 0, c, "id")
		status, target, behind, mirrored := m.expect(c)
		final[tr.Status]++
		if tr.Topic != "t" || tr.Partition != 0 || tr.Source != c || tr.Status != status ||
			tr.Target != target || tr.Behind != behind || tr.Mirrored != mirrored {
			m.t.Fatalf("after %d runs, Translate(%d) = %+v; want status %s target %d behind %d mirrored %d%s",
				len(m.runs), c, tr, status, target, behind, mirrored, m.describe())
		}
		if (tr.Status == Exact) != (tr.Reason == "") {
			m.t.Fatalf("Translate(%d) = %s with reason %q", c, tr.Status, tr.Reason)
		}
		if tr.Status == NotYet {
			res, err := Resolve(context.Background(), tr, m.src)
			if err != nil {
				m.t.Fatalf("Resolve(%d): %v", c, err)
			}
			if mirrored >= 0 && behind == c-mirrored && m.src.nextRecord(mirrored) >= c {
				// Only offsets without a record lie between what is mirrored and c: the group
				// resumes after the copies written last.
				if res.Status != Exact || res.Target != m.base+int64(len(m.log)) || res.Behind != 0 || res.Reason != "" {
					m.t.Fatalf("Resolve(Translate(%d)) = %+v; want exact at the log's end %d%s", c, res, m.base+int64(len(m.log)), m.describe())
				}
				tr = res
			} else if res != tr {
				m.t.Fatalf("Resolve(Translate(%d)) = %+v; want it unchanged, records lie in [%d, %d)", c, res, mirrored, c)
			}
		}
		if tr.Status == Exact {
			m.read(c, tr.Target)
			m.answers = append(m.answers, simAnswer{c, tr.Target})
		}
	}
	m.stats.final = final
}

// read plays a consumer group that committed c on the source and resumes at target on the
// target, reading the target log to its current end.
func (m *mirrorSim) read(c, target int64) {
	m.t.Helper()
	if target < m.base || target > m.base+int64(len(m.log)) {
		m.t.Fatalf("position %d resumes at %d, outside the target log [%d, %d]", c, target, m.base, m.base+int64(len(m.log)))
	}
	last := m.runs[len(m.runs)-1]
	seen := make([]bool, m.src.end())
	for _, cp := range m.log[target-m.base:] {
		seen[cp.src] = true
		if cp.src >= c {
			continue
		}
		// A record below c is read again only as a duplicate made by a run that started below
		// c and crashed before reaching the first record from c on (a run that reached it would
		// have made the copy the answer names). Once a run has finished, every run that crashed
		// before it is followed by one that copied that record again, so nothing is re-read.
		if !m.runs[cp.run].crashed || !last.crashed {
			m.t.Fatalf("after %d runs, position %d resumes at %d and re-reads record %d copied by run %d%s",
				len(m.runs), c, target, cp.src, cp.run, m.describe())
		}
		m.stats.rereads++
	}
	// Nothing from c on is skipped: every record from c up to where the last run stopped lies
	// after the answer (the next run starts at or below that point and copies the rest).
	for r := c; r < last.reach; r++ {
		if m.src[r] && !seen[r] {
			m.t.Fatalf("after %d runs, position %d resumes at %d and skips record %d%s", len(m.runs), c, target, r, m.describe())
		}
	}
}

// checkFinal reads every answer given in any state from the final target log: a group that
// resumed there, however early, reads every record from its position on.
func (m *mirrorSim) checkFinal() {
	m.t.Helper()
	if last := m.runs[len(m.runs)-1]; last.crashed {
		m.t.Fatalf("scenario: the last run must copy to the source's end")
	}
	seen := make([]bool, m.src.end())
	for _, a := range m.answers {
		clear(seen)
		for _, cp := range m.log[a.target-m.base:] {
			seen[cp.src] = true
		}
		for r := a.c; r < m.src.end(); r++ {
			if m.src[r] && !seen[r] {
				m.t.Fatalf("position %d, answered %d before a later run, skips record %d in the final log%s", a.c, a.target, r, m.describe())
			}
		}
	}
}

// checkChunksMatchLog checks the index against the target log copy by copy.
func (m *mirrorSim) checkChunksMatchLog() {
	m.t.Helper()
	var copies int64
	for _, c := range m.idx.Chunks("t", 0) {
		if c.TopicID != "id" {
			continue
		}
		copies += c.Copies()
		src, tgt := c.From, c.Target
		for _, s := range c.Steps {
			for range s.Repeat + 1 {
				src, tgt = src+s.Skip, tgt+s.Gap
				for range s.Copy {
					if i := tgt - m.base; i < 0 || i >= int64(len(m.log)) || m.log[i].src != src {
						m.t.Fatalf("chunk at target %d says %d holds a copy of %d%s", c.Target, tgt, src, m.describe())
					}
					src, tgt = src+1, tgt+1
				}
			}
		}
	}
	if copies != int64(len(m.log)) {
		m.t.Fatalf("the index holds %d copies, the target log %d%s", copies, len(m.log), m.describe())
	}
}

func (m *mirrorSim) describe() string {
	var b strings.Builder
	b.WriteString("\nsource: ")
	for _, r := range m.src {
		b.WriteByte("-r"[btoi(r)])
	}
	for i, r := range m.runs {
		fmt.Fprintf(&b, "\nrun %d: start %d, copies %d (targets %d-%d), last %d, reach %d, crashed %t",
			i, r.start, r.copies, m.base+int64(r.first), m.base+int64(r.first+r.copies)-1, r.lastSrc, r.reach, r.crashed)
	}
	b.WriteString("\nchunks: " + fmtChunks(m.idx.Chunks("t", 0)))
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
