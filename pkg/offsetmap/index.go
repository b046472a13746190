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
type Index struct {
	mu     sync.RWMutex
	chunks map[partitionKey][]*Chunk // sorted by Target
}

type partitionKey struct {
	topic     string
	partition int32
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{chunks: make(map[partitionKey][]*Chunk)} }

// Put adds c, replacing the chunk with the same key (an earlier, shorter version of it).
func (x *Index) Put(c *Chunk) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := partitionKey{c.Topic, c.Partition}
	cs := x.chunks[k]
	i, found := slices.BinarySearchFunc(cs, c.Target, func(e *Chunk, t int64) int { return cmp.Compare(e.Target, t) })
	if found {
		cs[i] = c
		return
	}
	x.chunks[k] = slices.Insert(cs, i, c)
}

// Delete removes the chunk with key (a tombstone in the map topic).
func (x *Index) Delete(topic string, partition int32, target int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := partitionKey{topic, partition}
	cs := x.chunks[k]
	i, found := slices.BinarySearchFunc(cs, target, func(e *Chunk, t int64) int { return cmp.Compare(e.Target, t) })
	if found {
		x.chunks[k] = slices.Delete(cs, i, i+1)
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
	return slices.Clone(x.chunks[partitionKey{topic, partition}])
}

// Len returns the number of chunks held.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for _, cs := range x.chunks {
		n += len(cs)
	}
	return n
}

// Expired returns the chunks of topic/partition that cover only source offsets below logStart
// (records the source no longer holds, so no position there can be read) but never the chunk
// written last, which says where the copies end. Deleting them keeps the map as long as the
// source's retention, whatever the number of runs and transactions.
func (x *Index) Expired(topic string, partition int32, logStart int64) []*Chunk {
	x.mu.RLock()
	defer x.mu.RUnlock()
	cs := x.chunks[partitionKey{topic, partition}]
	var out []*Chunk
	for i, c := range cs {
		if i < len(cs)-1 && c.End() <= logStart {
			out = append(out, c)
		}
	}
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

// Translate returns where a group whose committed source offset for topic/partition is off
// resumes on the target. topicID, when not empty, ignores chunks of another incarnation of the
// topic.
//
// Why the answer is exact. Let n be the first record at or after off (chunks covering off say
// which it is: every offset between off and n was seen to hold no record). The answer is the
// target offset of n's last copy, L. Nothing before off is read from L on, except copies made
// again by a run that started below n and stopped before reaching it (a crash): those are
// duplicates after the translated position, and a run that did reach n would have made a later
// copy of n than L. Nothing at or after off is
// skipped: a record r > n copied only before L would mean that the run that made L stopped
// before r and no later run copied r; but each run starts at the committed position, which never
// exceeds what the previous run copied, so a later run copies r (or r is not yet mirrored at all).
func (x *Index) Translate(topic string, partition int32, off int64, topicID string) Translation {
	x.mu.RLock()
	defer x.mu.RUnlock()
	tr := Translation{Topic: topic, Partition: partition, Source: off, Target: -1, Mirrored: -1}
	var cs []*Chunk
	for _, c := range x.chunks[partitionKey{topic, partition}] {
		if topicID == "" || c.TopicID == "" || c.TopicID == topicID {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		tr.Status, tr.Reason = NotYet, "nothing of this partition is in the offset map yet"
		tr.Behind = -1
		return tr
	}
	first := cs[0].From
	for _, c := range cs {
		tr.Mirrored = max(tr.Mirrored, c.End())
		first = min(first, c.From)
	}
	// The first record at or after off, as the chunks that cover off know it.
	n := int64(-1)
	for _, c := range cs {
		if _, s, ok := c.next(off); ok && (n < 0 || s < n) {
			n = s
		}
	}
	if n >= 0 {
		for _, c := range cs { // n's last copy: chunks are in target order
			if t, ok := c.copyOf(n); ok {
				tr.Target = t
			}
		}
		tr.Status = Exact
		return tr
	}
	switch {
	case off >= tr.Mirrored:
		last := cs[len(cs)-1] // the copies written last
		tr.Status, tr.Behind = NotYet, off-tr.Mirrored
		tr.Reason = fmt.Sprintf("source offsets %d to %d are not mirrored yet", tr.Mirrored, off-1)
		if end := last.End(); end < tr.Mirrored {
			// The run writing now re-copies what an earlier one had copied (a restart): the
			// target's end is a position only once it has caught up again.
			tr.Behind = off - end
			tr.Reason = fmt.Sprintf("the mirror is copying source offsets %d to %d again (a restart); it is at %d", last.From, tr.Mirrored-1, end)
			break
		}
		tr.tail, tr.tailOK = last.Target+last.Copies(), true
	case off < first:
		tr.Status = Unknown
		tr.Reason = fmt.Sprintf("the offset map begins at source offset %d: earlier records were mirrored before it existed, or never", first)
	default:
		tr.Status = Unknown
		tr.Reason = fmt.Sprintf("the offset map has a hole at source offset %d (records deleted from the source before they were mirrored, or mirrored before the map existed)", off)
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
