package offsetmap

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// MaxSteps bounds a chunk's steps, so that a record of the map topic stays a few KiB however many
// transaction markers or compacted offsets a run crosses (steps that repeat the one before count
// once: see Step).
const MaxSteps = 1024

// MaxGap is the largest target gap a chunk's step records: one commit marker between two
// transactions. A larger jump on the target (another writer, a copy made again) starts a new
// chunk.
const MaxGap = 1

// Settled is what a recorder asks of its partition's tracker (*offsets.Partition): whether every
// record fetched before the one at a source offset has been acknowledged or deliberately skipped.
type Settled interface {
	SettledBefore(offset int64) bool
}

// Recorder builds the chunks of one claim of a source partition from the target's
// acknowledgements. Copied is called from the producers' goroutines; Pending from the writer's.
//
// It never says that a source offset holds no record unless it knows: a gap in the source
// offsets acknowledged is a skip only when the tracker says every record fetched before the
// acknowledged one is settled and this claim copied none of the gap's offsets. Otherwise (a
// later batch that landed before an earlier one, which the worker sends again: the window its
// resend leaves) the copy starts a new chunk at itself, and the offsets in between stay outside
// every chunk until their copies land (a translation there is "unknown", never a wrong position).
type Recorder struct {
	topic     string
	partition int32
	topicID   string
	track     Settled

	mu       sync.Mutex
	from     int64  // where this claim's coverage starts: the offset it started reading at
	open     *Chunk // the chunk being appended to; nil before the first copy or after a close
	lastSrc  int64
	lastTgt  int64
	covered  []span   // source offsets this claim's chunks cover, disjoint, ascending (usually one)
	pending  []*Chunk // chunks changed since the last Pending, in target order
	openSent bool     // the open chunk is in pending
	// some is len(pending) > 0, kept under mu and read without it: one with nothing pending
	// answers Pending without its lock. A copy recorded before the flush was asked for
	// (happens-before) has set it.
	some atomic.Bool
	// dirtied, when set (Flusher.Add), is told each time some turns true, under mu: a flush of
	// every recorder asks only those that were told.
	dirtied func(*Recorder)
	copied  int64
	// heldBefore: every record fetched before it is settled, or held by the open transaction
	// being recorded ahead of the record at heldBefore (Held); chain: the transaction's records
	// held so far vouch so.
	heldBefore int64
	chain      bool
}

// span is the source offsets [from, to).
type span struct{ from, to int64 }

// NewRecorder returns the recorder of a claim of topic/partition that starts reading at from.
func NewRecorder(topic string, partition int32, topicID string, from int64) *Recorder {
	return &Recorder{topic: topic, partition: partition, topicID: topicID, from: from, lastSrc: -1, lastTgt: -1}
}

// Track makes the recorder ask t before it takes a gap in the source offsets acknowledged for
// offsets that hold no record. Without it every gap is taken as such (acknowledgements in source
// order, as tests and tools that replay a known log give them).
func (r *Recorder) Track(t Settled) {
	r.mu.Lock()
	r.track = t
	r.mu.Unlock()
}

// Topic and Partition name the recorded partition.
func (r *Recorder) Topic() string    { return r.topic }
func (r *Recorder) Partition() int32 { return r.partition }

// Copied records that the source record at offset src was acknowledged at target offset tgt.
// An acknowledgement that continues the open chunk forward in both source and target offsets
// extends it: a source gap (markers, aborted or compacted records, records skipped by policy)
// when known to hold no record, and a target gap (the commit marker of kmirror's own
// transaction under exactly-once) as a step's Gap. Any other (a copy made again, a record that
// lands after a later one) starts a new chunk.
func (r *Recorder) Copied(src, tgt int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copied++
	c := r.open
	switch {
	case c != nil && src == r.lastSrc+1 && tgt == r.lastTgt+1:
		c.Steps[len(c.Steps)-1].Copy++ // the last step of the open chunk never repeats
		r.cover(src, src+1)
	case c != nil && src > r.lastSrc && tgt > r.lastTgt && tgt <= r.lastTgt+1+MaxGap &&
		(src == r.lastSrc+1 || r.noRecords(r.lastSrc+1, src)) &&
		appendStep(c, Step{Skip: src - r.lastSrc - 1, Gap: tgt - r.lastTgt - 1, Copy: 1}):
		r.cover(r.lastSrc+1, src+1)
	default:
		from := r.coverFrom(src)
		r.open = &Chunk{Topic: r.topic, Partition: r.partition, TopicID: r.topicID, From: from, Target: tgt,
			Steps: []Step{{Skip: src - from, Copy: 1}}}
		r.openSent = false
		r.cover(from, src+1)
	}
	r.lastSrc, r.lastTgt = src, tgt
	if !r.openSent {
		r.pending = append(r.pending, r.open)
		r.openSent = true
		r.setSome()
	}
}

// setSome records that r has chunks pending. r.mu is held.
func (r *Recorder) setSome() {
	if len(r.pending) > 0 && !r.some.Swap(true) && r.dirtied != nil {
		r.dirtied(r)
	}
}

// notify has f told each time r has chunks pending from now on, and at once if it has.
func (r *Recorder) notify(f func(*Recorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirtied = f
	if r.some.Load() {
		f(r)
	}
}

// appendStep closes the chunk's last step, folding it into the one before when it repeats its
// pattern, and appends s; false when the chunk has MaxSteps steps.
func appendStep(c *Chunk, s Step) bool {
	if n := len(c.Steps); n >= 2 {
		a, b := &c.Steps[n-2], c.Steps[n-1]
		if a.Skip == b.Skip && a.Gap == b.Gap && a.Copy == b.Copy {
			a.Repeat += b.Repeat + 1
			c.Steps = c.Steps[:n-1]
		}
	}
	if len(c.Steps) >= MaxSteps {
		return false
	}
	c.Steps = append(c.Steps, s)
	return true
}

// noRecords reports whether the source offsets [from, to) are known to hold no record to copy:
// every record fetched before to is settled, and this claim copied none of them.
func (r *Recorder) noRecords(from, to int64) bool {
	for _, s := range r.covered {
		if s.from < to && from < s.to {
			return false
		}
	}
	return r.track == nil || to <= r.heldBefore || r.track.SettledBefore(to)
}

// Held says that the record at src is held by the open transaction being recorded (to be
// copied, or passed by its position), first when it is the transaction's first record of the
// partition; it is called for each such record in order, before its Copied. Exactly-once records
// a transaction's copies before it commits, while none of its records is acknowledged: a gap
// between two records of one transaction still holds no record (every record fetched in it would
// be held between them), provided every record fetched before the transaction's first one was
// settled, which the tracker tells. Should the transaction abort, its claim ends with it (the
// mirror stops), and with it this recorder.
func (r *Recorder) Held(src int64, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first {
		r.chain = r.track == nil || r.track.SettledBefore(src)
	}
	if r.chain {
		r.heldBefore = max(r.heldBefore, src)
	}
}

// coverFrom returns where a chunk whose first copy is the record at src starts covering: the end
// of what this claim covers below src (or the claim's start) when the offsets between are known
// to hold no record, else src itself.
func (r *Recorder) coverFrom(src int64) int64 {
	from := r.from
	for _, s := range r.covered {
		if s.from <= src && src < s.to {
			return src // copied again: its coverage starts at the record itself
		}
		if s.to <= src {
			from = max(from, s.to)
		}
	}
	if from < src && r.noRecords(from, src) {
		return from
	}
	return src
}

// cover adds [from, to) to what this claim covers.
func (r *Recorder) cover(from, to int64) {
	if n := len(r.covered); n > 0 && r.covered[n-1].from <= from && from <= r.covered[n-1].to {
		r.covered[n-1].to = max(r.covered[n-1].to, to) // in order: the usual case
		return
	}
	cs := append(r.covered, span{from, to})
	slices.SortFunc(cs, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	merged := cs[:1]
	for _, s := range cs[1:] {
		if last := &merged[len(merged)-1]; s.from <= last.to {
			last.to = max(last.to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	r.covered = merged
}

// Pending returns a copy of every chunk that changed since the last call, in target order, to be
// written to the map topic. What it returns must be written (or handed back with Retry).
func (r *Recorder) Pending() []*Chunk {
	if !r.some.Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Chunk, len(r.pending))
	for i, c := range r.pending {
		cc := *c
		cc.Steps = slices.Clone(c.Steps)
		out[i] = &cc
	}
	r.pending = r.pending[:0]
	r.openSent = false
	r.some.Store(false)
	return out
}

// hasPending reports whether Pending would return chunks.
func (r *Recorder) hasPending() bool { return r.some.Load() }

// Retry hands back chunks Pending returned that could not be written: they are written again
// with the next Pending (the open chunk in its latest state).
func (r *Recorder) Retry(cs []*Chunk) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var back []*Chunk
	for _, c := range cs {
		if r.open != nil && c.Target == r.open.Target {
			if !r.openSent {
				back = append(back, r.open)
				r.openSent = true
			}
			continue
		}
		if !slices.ContainsFunc(r.pending, func(p *Chunk) bool { return p.Target == c.Target }) {
			back = append(back, c)
		}
	}
	r.pending = append(back, r.pending...)
	slices.SortFunc(r.pending, func(a, b *Chunk) int { return cmp.Compare(a.Target, b.Target) })
	r.setSome()
}

// Copies returns how many acknowledgements were recorded.
func (r *Recorder) Copies() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copied
}
