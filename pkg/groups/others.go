package groups

import (
	"strings"
	"sync"
)

// ActionCommittedByOthers: another client commits the target group's offsets (a reader that
// assigns partitions itself and commits without joining the group, as Flink and Spark do): the
// group has no member, but its offsets are that client's, and nothing is committed for it
// (Config.Force would commit).
const ActionCommittedByOthers = "target committed by another client"

// commitMetadata starts the metadata of every offset the sync commits on the target: an offset
// whose metadata starts so was written by kmirror (this process or another member).
const commitMetadata = "kmirror translated from source offset "

func writtenByKmirror(metadata string) bool { return strings.HasPrefix(metadata, commitMetadata) }

// written remembers, per target group and partition, the offset kmirror last wrote there (or
// last read there with kmirror's metadata), to tell a client that commits the group's offsets
// without joining it: such a client leaves no member for the group's state to show, only
// offsets that change under kmirror. A partition whose committed offset differs from the one
// remembered and does not carry kmirror's metadata was committed by someone else since.
//
// It lives as long as the Syncer: after a restart nothing is remembered, so the first round
// may move such a client's offsets once more before it is seen again.
//
// It also remembers the last offset it read there from another client's commit: one that moves
// between two reads is another client's at work even where kmirror never wrote (the failover
// command watches such a group for one poll before committing). A partition once seen moved by
// another client stays so until kmirror's own commit is read or written there.
type written struct {
	mu       sync.Mutex
	offsets  map[string]map[partitionKey]int64 // group → target partition → offset kmirror wrote
	observed map[string]map[partitionKey]int64 // group → target partition → another client's offset last read
	moved    map[string]map[partitionKey]bool  // group → target partition → seen moved by another client
	others   map[string]bool                   // groups found committed by another client, until they are not
}

type partitionKey struct {
	topic     string
	partition int32
}

func newWritten() *written {
	return &written{offsets: make(map[string]map[partitionKey]int64), observed: make(map[string]map[partitionKey]int64),
		moved: make(map[string]map[partitionKey]bool), others: make(map[string]bool)}
}

// seen takes a committed offset read on the target with its metadata and reports whether
// another client wrote it since kmirror last wrote there.
func (w *written) seen(group, topic string, partition int32, offset int64, metadata string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := partitionKey{topic, partition}
	if writtenByKmirror(metadata) {
		w.set(group, k, offset)
		return false
	}
	last, wrote := w.offsets[group][k]
	prev, watched := w.observed[group][k]
	if w.observed[group] == nil {
		w.observed[group], w.moved[group] = make(map[partitionKey]int64), make(map[partitionKey]bool)
	}
	w.observed[group][k] = offset
	if (wrote && last != offset) || (watched && prev != offset) {
		w.moved[group][k] = true
	}
	return w.moved[group][k]
}

// wrote records an offset kmirror committed.
func (w *written) wrote(group, topic string, partition int32, offset int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set(group, partitionKey{topic, partition}, offset)
}

// set records kmirror's own offset at k: what another client did before no longer counts.
func (w *written) set(group string, k partitionKey, offset int64) {
	if w.offsets[group] == nil {
		w.offsets[group] = make(map[partitionKey]int64)
	}
	w.offsets[group][k] = offset
	delete(w.observed[group], k)
	delete(w.moved[group], k)
}

// found records whether group is committed by another client now, and reports whether that is
// new (it was not at the previous call).
func (w *written) found(group string, others bool) (appeared bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.others[group]
	if others {
		w.others[group] = true
	} else {
		delete(w.others, group)
	}
	return others && !was
}
