package offsetmap

import (
	"cmp"
	"slices"
	"sync"
)

// MaxSteps bounds a chunk's steps, so that a record of the map topic stays a few KiB however many
// transaction markers or compacted offsets a run crosses.
const MaxSteps = 1024

// Recorder builds the chunks of one claim of a source partition from the target's
// acknowledgements. Copied is called from the producers' goroutines; Pending from the writer's.
type Recorder struct {
	topic     string
	partition int32
	topicID   string

	mu       sync.Mutex
	from     int64  // where the next chunk's coverage starts: the claim's start, then each chunk's end
	open     *Chunk // the chunk being appended to; nil before the first copy or after a close
	lastSrc  int64
	lastTgt  int64
	pending  []*Chunk // chunks changed since the last Pending, in target order
	openSent bool     // the open chunk is in pending
	copied   int64
}

// NewRecorder returns the recorder of a claim of topic/partition that starts reading at from.
func NewRecorder(topic string, partition int32, topicID string, from int64) *Recorder {
	return &Recorder{topic: topic, partition: partition, topicID: topicID, from: from, lastSrc: -1, lastTgt: -1}
}

// Topic and Partition name the recorded partition.
func (r *Recorder) Topic() string    { return r.topic }
func (r *Recorder) Partition() int32 { return r.partition }

// Copied records that the source record at offset src was acknowledged at target offset tgt.
// Acknowledgements of one partition arrive in source order; one that does not continue the open
// chunk on the target (a resend, a record sent alone) starts a new chunk.
func (r *Recorder) Copied(src, tgt int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copied++
	c := r.open
	switch {
	case c != nil && tgt == r.lastTgt+1 && src == r.lastSrc+1:
		c.Steps[len(c.Steps)-1].Copy++
	case c != nil && tgt == r.lastTgt+1 && src > r.lastSrc && len(c.Steps) < MaxSteps:
		c.Steps = append(c.Steps, Step{Skip: src - r.lastSrc - 1, Copy: 1})
	default:
		from := r.from
		if c != nil {
			from = c.End()
		}
		if src < from {
			from = src // a copy made again: its coverage starts at the record itself
		}
		r.open = &Chunk{Topic: r.topic, Partition: r.partition, TopicID: r.topicID, From: from, Target: tgt,
			Steps: []Step{{Skip: src - from, Copy: 1}}}
		r.openSent = false
	}
	r.lastSrc, r.lastTgt = src, tgt
	if !r.openSent {
		r.pending = append(r.pending, r.open)
		r.openSent = true
	}
}

// Pending returns a copy of every chunk that changed since the last call, in target order, to be
// written to the map topic. What it returns must be written (or handed back with Retry).
func (r *Recorder) Pending() []*Chunk {
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
	return out
}

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
}

// Copies returns how many acknowledgements were recorded.
func (r *Recorder) Copies() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copied
}
