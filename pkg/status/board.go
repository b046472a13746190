// Package status keeps what a person asks of a running flow and serves it: per source partition
// how far behind the target is (records, bytes, and the RPO: the age of the oldest record not yet
// mirrored) and whether it is stalled; the last heartbeat mirrored; the group offset sync's last
// round; the latest errors. The daemon serves a Report as JSON at /status (Handler); `kmirror
// status` reads it and prints it as a table (Print).
//
// It must never block or slow the data path: what reports to a Board does so at most once a
// second per partition (the source watcher's backlog), once per heartbeat, per sync round or per
// error, never per record, and each report holds one short lock. A Report holds no secret (no
// password, no record content).
package status

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// keptErrors is how many of the latest errors a Board keeps.
const keptErrors = 10

// Board collects the status of one flow as the data path reports it. The zero value is not
// usable; call NewBoard. Its methods are safe for concurrent use.
type Board struct {
	mu     sync.Mutex
	parts  map[topicPartition]*Partition
	hb     Heartbeat
	groups GroupSync
	errs   []Error // oldest first, at most keptErrors
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{parts: make(map[topicPartition]*Partition), groups: GroupSync{Failed: map[string]string{}}}
}

// Assigned notes that this member mirrors topic/partition from now on (nothing known of its
// backlog yet).
func (b *Board) Assigned(topic string, partition int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parts[topicPartition{topic, partition}] = &Partition{Partition: partition, Assigned: time.Now()}
}

// Revoked forgets topic/partition: another member (or none) mirrors it now.
func (b *Board) Revoked(topic string, partition int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.parts, topicPartition{topic, partition})
}

// Backlog sets what topic/partition has not yet mirrored: records and their estimated bytes,
// the age of the oldest of them, and whether it is stalled (a backlog and nothing acknowledged
// for telemetry.stall_after).
func (b *Board) Backlog(topic string, partition int32, records, bytes int64, age time.Duration, stalled bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.parts[topicPartition{topic, partition}]
	if !ok {
		p = &Partition{Partition: partition, Assigned: time.Now()}
		b.parts[topicPartition{topic, partition}] = p
	}
	if stalled && !p.Stalled {
		p.StalledSince = time.Now()
	}
	if !stalled {
		p.StalledSince = time.Time{}
	}
	p.LagRecords, p.LagBytes, p.RPOSeconds, p.Stalled, p.Measured = records, bytes, age.Seconds(), stalled, time.Now()
}

// Heartbeat notes a heartbeat of the flow, written to the source at emitted, acknowledged by
// the target at acked.
func (b *Board) Heartbeat(emitted, acked time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if emitted.Before(b.hb.EmittedAt) {
		return // an older one acknowledged late
	}
	b.hb.EmittedAt, b.hb.MirroredAt = emitted, acked
	b.hb.LatencySeconds = acked.Sub(emitted).Seconds()
}

// GroupSynced notes a group the offset sync went through without error (partitions committed
// on the target, 0 when nothing moved).
func (b *Board) GroupSynced(group string, _ int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.groups.Failed, group)
}

// GroupRound notes the end of a round of the group offset sync.
func (b *Board) GroupRound(at time.Time, groups, untranslatable int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groups.LastRound, b.groups.Groups, b.groups.Untranslatable = at, groups, untranslatable
}

// GroupFailed notes a group the offset sync could not plan or apply.
func (b *Board) GroupFailed(group string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groups.Failed[group] = err.Error()
	b.addError("group sync "+group, err)
}

// Error notes an error where it happened (a short phrase: "source consumer group", "commit").
// Only the latest keptErrors are kept; the same error repeated counts up instead of filling it.
func (b *Board) Error(where string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addError(where, err)
}

func (b *Board) addError(where string, err error) {
	now := time.Now()
	if n := len(b.errs); n > 0 && b.errs[n-1].Where == where && b.errs[n-1].Error == err.Error() {
		b.errs[n-1].At = now
		b.errs[n-1].Count++
		return
	}
	b.errs = append(b.errs, Error{At: now, Where: where, Error: err.Error(), Count: 1})
	if len(b.errs) > keptErrors {
		b.errs = slices.Delete(b.errs, 0, len(b.errs)-keptErrors)
	}
}

// Fill sets the board's part of r: the topics with their partitions (named on the target by
// target), the totals, the heartbeat (when r.Heartbeat is set: heartbeats are on) and the group
// sync (when r.GroupSync is set: it runs), and the errors, latest first.
func (b *Board) Fill(r *Report, target func(source string) string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	byTopic := map[string]*Topic{}
	for tp, p := range b.parts {
		t, ok := byTopic[tp.topic]
		if !ok {
			t = &Topic{Source: tp.topic, Target: target(tp.topic)}
			byTopic[tp.topic] = t
		}
		t.Partitions = append(t.Partitions, *p)
	}
	r.Topics = r.Topics[:0]
	for _, t := range byTopic {
		slices.SortFunc(t.Partitions, func(a, b Partition) int { return cmp.Compare(a.Partition, b.Partition) })
		for _, p := range t.Partitions {
			t.LagRecords += p.LagRecords
			t.RPOSeconds = max(t.RPOSeconds, p.RPOSeconds)
			if p.Stalled {
				t.Stalled++
			}
		}
		r.Partitions += len(t.Partitions)
		r.LagRecords += t.LagRecords
		r.RPOSeconds = max(r.RPOSeconds, t.RPOSeconds)
		r.Stalled += t.Stalled
		r.Topics = append(r.Topics, *t)
	}
	slices.SortFunc(r.Topics, func(a, b Topic) int { return cmp.Compare(a.Source, b.Source) })
	if r.Heartbeat != nil {
		topic := r.Heartbeat.Topic
		*r.Heartbeat = b.hb
		r.Heartbeat.Topic = topic
		if !b.hb.MirroredAt.IsZero() {
			r.Heartbeat.AgeSeconds = r.At.Sub(b.hb.EmittedAt).Seconds()
		}
	}
	if r.GroupSync != nil {
		include := r.GroupSync.Include
		*r.GroupSync = b.groups
		r.GroupSync.Include = include
		r.GroupSync.Failed = make(map[string]string, len(b.groups.Failed))
		for g, e := range b.groups.Failed {
			r.GroupSync.Failed[g] = e
		}
	}
	r.Errors = make([]Error, 0, len(b.errs))
	for i := len(b.errs) - 1; i >= 0; i-- {
		r.Errors = append(r.Errors, b.errs[i])
	}
}
