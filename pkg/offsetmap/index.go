package offsetmap

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// Status says how far a translation got.
type Status string

const (
	// Exact: the group resumes at Target with nothing skipped and nothing read twice (apart from
	// copies of a record made again after Target by a restart, which are duplicates).
	Exact Status = "exact"
	// NotYet: the records from the group's position on are not all mirrored yet; Behind says how
	// many source offsets lie between what is mirrored and the group's position.
	NotYet Status = "not_yet"
	// Unknown: the map holds nothing for the group's position (records mirrored before the map
	// existed, or lost at the source); Reason says which.
	Unknown Status = "unknown"
)

// Translation is where a group at source offset Source of Topic/Partition resumes on the target.
type Translation struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Source is the group's committed offset on the source: the next record it would read.
	Source int64 `json:"source_offset"`
	// Target is the offset on the target where the group resumes; valid when Status is Exact.
	Target int64  `json:"target_offset"`
	Status Status `json:"status"`
	// Mirrored is the source offset up to which the map knows every copy (-1: nothing mapped).
	Mirrored int64 `json:"mirrored"`
	// Behind is, for NotYet, Source - Mirrored: source offsets not yet mirrored before the group's
	// position (an upper bound on records: markers and compacted offsets count too).
	Behind int64  `json:"behind"`
	Reason string `json:"reason,omitempty"`

	// tail is, for NotYet with every record before Mirrored mapped, the target offset after the
	// last copy written: where the group resumes if the source holds no record in
	// [Mirrored, Source) (only transaction markers, say).
	tail   int64
	tailOK bool
}

// Index holds chunks read from the map topic (or recorded in this process) and translates
// positions. It is safe for concurrent use.
//
// Each partition's chunks are kept in target order (Put and Delete find a chunk by binary
// search) with the highest source offset covered per topic ID, so that a translation visits only
// the chunks written after the position's first copies: newest first, until those it visited
// cover everything from the position to the end of the map.
type Index struct {
	mu     sync.RWMutex
	chunks map[partitionKey]*partChunks
}

type partitionKey struct {
	topic     string
	partition int32
}

// partChunks is one partition's chunks.
type partChunks struct {
	cs  []*Chunk         // sorted by Target
	end map[string]int64 // the highest End of the chunks of each topic ID
}

func (p *partChunks) find(target int64) (int, bool) {
	return slices.BinarySearchFunc(p.cs, target, func(e *Chunk, t int64) int { return cmp.Compare(e.Target, t) })
}

// mirrored returns the source offset up to which chunks of topicID (any, when empty) reach.
func (p *partChunks) mirrored(topicID string) int64 {
	m := int64(-1)
	for id, e := range p.end {
		if topicID == "" || id == "" || id == topicID {
			m = max(m, e)
		}
	}
	return m
}

func (p *partChunks) reindex() {
	clear(p.end)
	for _, c := range p.cs {
		p.end[c.TopicID] = max(p.end[c.TopicID], c.End())
	}
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{chunks: make(map[partitionKey]*partChunks)} }

// Put adds c, replacing the chunk with the same key (an earlier, shorter version of it).
func (x *Index) Put(c *Chunk) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := partitionKey{c.Topic, c.Partition}
	p := x.chunks[k]
	if p == nil {
		p = &partChunks{end: map[string]int64{}}
		x.chunks[k] = p
	}
	i, found := p.find(c.Target)
	if found {
		old := p.cs[i]
		p.cs[i] = c
		if old.TopicID != c.TopicID || old.End() > c.End() {
			p.reindex() // not a chunk that grew: what it reached may be reached by no other
			return
		}
	} else {
		p.cs = slices.Insert(p.cs, i, c)
	}
	p.end[c.TopicID] = max(p.end[c.TopicID], c.End())
}

// Delete removes the chunk with key (a tombstone in the map topic).
func (x *Index) Delete(topic string, partition int32, target int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := partitionKey{topic, partition}
	p := x.chunks[k]
	if p == nil {
		return
	}
	if i, found := p.find(target); found {
		p.cs = slices.Delete(p.cs, i, i+1)
		if len(p.cs) == 0 {
			delete(x.chunks, k)
			return
		}
		p.reindex()
	}
}

// Apply applies one record of the map topic: a chunk, or a tombstone (nil value).
func (x *Index) Apply(key, value []byte) error {
	if value == nil {
		topic, part, target, err := ParseKey(key)
		if err != nil {
			return err
		}
		x.Delete(topic, part, target)
		return nil
	}
	c, err := Decode(key, value)
	if err != nil {
		return err
	}
	x.Put(c)
	return nil
}

// Chunks returns a copy of the chunks of topic/partition, in target order.
func (x *Index) Chunks(topic string, partition int32) []*Chunk {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if p := x.chunks[partitionKey{topic, partition}]; p != nil {
		return slices.Clone(p.cs)
	}
	return nil
}

// Len returns the number of chunks held.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for _, p := range x.chunks {
		n += len(p.cs)
	}
	return n
}

// Expired returns the chunks of topic/partition that no translation needs any more, never the
// chunk written last (which says where the copies end):
//   - those that cover only source offsets below logStart: records the source no longer holds,
//     so no group position there can be read;
//   - those whose every source offset is covered by chunks written after them (of the same
//     topic ID): the copies a restart made again, which a translation always takes over them.
//
// Deleting them keeps the map as long as the source's retention whatever the number of runs and
// transactions, and, for a compacted source whose log start never moves, as long as the copies
// of distinct transactions (a chunk per MaxSteps of them; see Step), not of every restart.
func (x *Index) Expired(topic string, partition int32, logStart int64) []*Chunk {
	x.mu.RLock()
	defer x.mu.RUnlock()
	p := x.chunks[partitionKey{topic, partition}]
	if p == nil {
		return nil
	}
	var out []*Chunk
	later := map[string]spans{} // per topic ID: what the chunks after this one cover
	for i := len(p.cs) - 1; i >= 0; i-- {
		c := p.cs[i]
		switch {
		case i == len(p.cs)-1:
		case c.End() <= logStart || later[c.TopicID].covers(c.From, c.End()):
			out = append(out, c)
		}
		later[c.TopicID] = later[c.TopicID].add(c.From, c.End())
	}
	slices.Reverse(out)
	return out
}

// Partitions returns the partitions the index holds chunks of, by topic.
func (x *Index) Partitions() map[string][]int32 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[string][]int32{}
	for k := range x.chunks {
		out[k.topic] = append(out[k.topic], k.partition)
	}
	return out
}

// spans is a set of source offsets: disjoint [from, to) ranges in ascending order.
type spans []span

// add returns s with [from, to) added.
func (s spans) add(from, to int64) spans {
	if from >= to {
		return s
	}
	i := 0
	for i < len(s) && s[i].to < from {
		i++
	}
	j := i
	for j < len(s) && s[j].from <= to {
		from, to = min(from, s[j].from), max(to, s[j].to)
		j++
	}
	return slices.Replace(s, i, j, span{from, to})
}

// covers reports whether s holds every offset of [from, to).
func (s spans) covers(from, to int64) bool {
	for _, r := range s {
		if r.from <= from && to <= r.to {
			return true
		}
	}
	return from >= to
}

// Translate returns where a group whose committed source offset for topic/partition is off
// resumes on the target. topicID, when not empty, ignores chunks of another incarnation of the
// topic.
//
// The answer is the lowest target offset among the last copies of the records at or after off
// (a record's last copy is in the latest chunk, in target order, that covers its offset; a
// record that chunk says is not one, compacted away since an earlier copy, has none): reading
// from there skips no record at or after off, and it is the highest offset of which that holds.
//
// Why it re-reads nothing, in the usual case. Let n be the first record at or after off and L
// its last copy. Each run copies forward from its start, and each run starts at the committed
// position, which never exceeds what the previous run copied; so a record r > n has its last
// copy after L (the run that made L copied r later, or stopped before r and a later run copied
// r), and the answer is L. Nothing before off is read from L on, except copies made again by a
// run that started below n and stopped before reaching it (a crash): duplicates after the
// translated position. The resend window is the exception the minimum is there for: a later
// batch that landed before an earlier one sent again has its last copies before the earlier
// one's, and a group between them resumes at the later batch, reading the earlier one again.
//
// The chunks are visited newest first, each only for the offsets no later chunk covers, and the
// visit stops once those reach from off to the end of the map: a group near the head of its
// partition costs a chunk or two, one far behind a chunk per MaxSteps transactions it is behind.
func (x *Index) Translate(topic string, partition int32, off int64, topicID string) Translation {
	x.mu.RLock()
	defer x.mu.RUnlock()
	tr := Translation{Topic: topic, Partition: partition, Source: off, Target: -1, Mirrored: -1}
	match := func(c *Chunk) bool { return topicID == "" || c.TopicID == "" || c.TopicID == topicID }
	p := x.chunks[partitionKey{topic, partition}]
	if p != nil {
		tr.Mirrored = p.mirrored(topicID)
	}
	if tr.Mirrored < 0 {
		tr.Status, tr.Reason = NotYet, "nothing of this partition is in the offset map yet"
		tr.Behind = -1
		return tr
	}
	if off >= tr.Mirrored {
		var last *Chunk // the copies written last
		for i := len(p.cs) - 1; i >= 0 && last == nil; i-- {
			if match(p.cs[i]) {
				last = p.cs[i]
			}
		}
		tr.Status, tr.Behind = NotYet, off-tr.Mirrored
		tr.Reason = fmt.Sprintf("source offsets %d to %d are not mirrored yet", tr.Mirrored, off-1)
		if end := last.End(); end < tr.Mirrored {
			// The run writing now re-copies what an earlier one had copied (a restart): the
			// target's end is a position only once it has caught up again.
			tr.Behind = off - end
			tr.Reason = fmt.Sprintf("the mirror is copying source offsets %d to %d again (a restart); it is at %d", last.From, tr.Mirrored-1, end)
			return tr
		}
		tr.tail, tr.tailOK = last.TargetEnd(), true
		return tr
	}
	var later spans // what the chunks visited cover, from off on
	covered := false
	for i := len(p.cs) - 1; i >= 0 && !later.covers(off, tr.Mirrored); i-- {
		c := p.cs[i]
		lo, end := max(c.From, off), c.End()
		if !match(c) || end <= lo {
			continue
		}
		covered = covered || c.From <= off
		// The first record of [lo, end) that no later chunk covers: within a chunk, copies are
		// in source order, so it has the chunk's lowest last copy.
		for a := lo; a < end; {
			b := end
			for _, r := range later {
				if r.from <= a && a < r.to {
					a = r.to
				} else if r.from > a {
					b = min(b, r.from)
				}
			}
			if a >= b {
				break
			}
			if t, s, ok := c.first(a); ok && s < b {
				if tr.Target < 0 || t < tr.Target {
					tr.Target = t
				}
				break
			}
			a = b
		}
		later = later.add(lo, end)
	}
	if covered {
		tr.Status = Exact
		return tr
	}
	tr.Target = -1
	first := tr.Mirrored
	for _, c := range p.cs {
		if match(c) {
			first = min(first, c.From)
		}
	}
	tr.Status = Unknown
	if off < first {
		tr.Reason = fmt.Sprintf("the offset map begins at source offset %d: earlier records were mirrored before it existed, or never", first)
	} else {
		tr.Reason = fmt.Sprintf("the offset map has a hole at source offset %d (records deleted from the source before they were mirrored, "+
			"mirrored before the map existed, or not written yet behind a later batch that landed first)", off)
	}
	return tr
}

// Prober tells whether the source holds records in a range of offsets: it settles a position
// past the last record mirrored (a group that read up to a transaction marker, say).
type Prober interface {
	// NoRecords reports whether topic/partition holds no record (a consumer reading committed
	// records would read none) at offsets [from, to).
	NoRecords(ctx context.Context, topic string, partition int32, from, to int64) (bool, error)
}

// Resolve finishes a NotYet translation with p: when the source holds no record between what is
// mirrored and the group's position, the group resumes after the last copy written. Any other
// translation is returned as it is; an error of p leaves it NotYet.
func Resolve(ctx context.Context, tr Translation, p Prober) (Translation, error) {
	if tr.Status != NotYet || !tr.tailOK || p == nil {
		return tr, nil
	}
	empty, err := p.NoRecords(ctx, tr.Topic, tr.Partition, tr.Mirrored, tr.Source)
	if err != nil {
		return tr, fmt.Errorf("read source %s/%d offsets %d to %d: %w", tr.Topic, tr.Partition, tr.Mirrored, tr.Source-1, err)
	}
	if empty {
		tr.Status, tr.Target, tr.Behind, tr.Reason = Exact, tr.tail, 0, ""
	}
	return tr, nil
}
