// Package offsetmap owns the exact correspondence between source and target offsets: which
// target offset holds the copy of each source record. It is built from the target's produce
// acknowledgements, persisted on the target in kmirror's own compacted topic, and read back to
// translate a consumer group's source position into the target position where the group resumes
// with nothing skipped and nothing read twice.
//
// It must never guess: a source position maps to a target offset only when the map knows where
// every record from that position on was copied (the last copy, when a record was copied more than
// once); otherwise the answer is "not yet mirrored" (with how far behind) or "unknown" (with why).
//
// The model. A Chunk is a run of copies that are contiguous on the target: it covers the source
// offsets [From, End) and says, step by step, which of them are records (copied to consecutive
// target offsets from Target on) and which hold no record (transaction markers, aborted records,
// compacted records, records the refused-record policy skipped). One writer (the member that owns
// the partition) appends to one open chunk; a discontinuity on the target (a restart re-copying
// from the committed position, a resend) starts a new chunk. Because a run copies forward from
// its start without a hole, and each new run starts at or below where the previous one's copies
// end, the copies at and after the last copy of a record include every later record (proof sketch
// in Index.Translate).
package offsetmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Step is part of a chunk: Skip source offsets that hold no record, then Copy records at
// consecutive source offsets copied to consecutive target offsets.
type Step struct {
	Skip, Copy int64
}

// Chunk is a target-contiguous run of copies of one source partition.
type Chunk struct {
	Topic     string
	Partition int32
	// TopicID is the source topic's ID (base64) when known: chunks of an earlier incarnation of a
	// re-created topic are not used for the current one.
	TopicID string
	// From is the first source offset the chunk covers; Target the target offset of its first copy.
	From, Target int64
	Steps        []Step
}

// End is the source offset after the last one the chunk covers.
func (c *Chunk) End() int64 {
	e := c.From
	for _, s := range c.Steps {
		e += s.Skip + s.Copy
	}
	return e
}

// Copies is how many records the chunk holds: its target offsets are [Target, Target+Copies).
func (c *Chunk) Copies() int64 {
	var n int64
	for _, s := range c.Steps {
		n += s.Copy
	}
	return n
}

// next returns the target offset of the first record at or after source offset off within the
// chunk, and that record's source offset; ok is false when off is outside [From, End).
func (c *Chunk) next(off int64) (target, source int64, ok bool) {
	if off < c.From {
		return 0, 0, false
	}
	pos, t := c.From, c.Target
	for _, s := range c.Steps {
		first := pos + s.Skip // the step's first record
		if off < first {
			return t, first, true
		}
		if off < first+s.Copy {
			return t + (off - first), off, true
		}
		pos, t = first+s.Copy, t+s.Copy
	}
	return 0, 0, false
}

// copyOf returns the target offset of the copy of the record at source offset off in the chunk.
func (c *Chunk) copyOf(off int64) (int64, bool) {
	t, s, ok := c.next(off)
	if !ok || s != off {
		return 0, false
	}
	return t, true
}

// Key is the chunk's key in the map topic: "topic/partition/target". Topic names cannot hold
// '/', and a target offset is written once, so each chunk has a key of its own and a rewrite of
// a growing chunk replaces the earlier version when the topic is compacted.
func (c *Chunk) Key() []byte {
	return []byte(c.Topic + "/" + strconv.FormatInt(int64(c.Partition), 10) + "/" + strconv.FormatInt(c.Target, 10))
}

// chunkVersion is the first byte of every encoded chunk.
const chunkVersion = 1

// Encode returns the chunk's value in the map topic: a version byte, the topic ID, From, Target
// and the steps, as varints.
func (c *Chunk) Encode() []byte {
	b := make([]byte, 0, 16+len(c.TopicID)+4*len(c.Steps))
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(len(c.TopicID)))
	b = append(b, c.TopicID...)
	b = binary.AppendVarint(b, c.From)
	b = binary.AppendVarint(b, c.Target)
	b = binary.AppendUvarint(b, uint64(len(c.Steps)))
	for _, s := range c.Steps {
		b = binary.AppendUvarint(b, uint64(s.Skip))
		b = binary.AppendUvarint(b, uint64(s.Copy))
	}
	return b
}

// ErrMalformed is returned for a key or value that is not a chunk of this version.
var ErrMalformed = errors.New("malformed offset-map record")

// ParseKey returns the topic, partition and target offset of a chunk's key.
func ParseKey(key []byte) (topic string, partition int32, target int64, err error) {
	k := string(key)
	i := strings.LastIndexByte(k, '/')
	if i <= 0 {
		return "", 0, 0, fmt.Errorf("%w: key %q", ErrMalformed, k)
	}
	j := strings.LastIndexByte(k[:i], '/')
	if j <= 0 {
		return "", 0, 0, fmt.Errorf("%w: key %q", ErrMalformed, k)
	}
	p, err1 := strconv.ParseInt(k[j+1:i], 10, 32)
	t, err2 := strconv.ParseInt(k[i+1:], 10, 64)
	// Only the spelling Key writes: the map topic is compacted by key bytes, so an alias
	// ("t/01/2" for "t/1/2") would neither replace the chunk nor be deleted with it.
	if err1 != nil || err2 != nil || p < 0 || t < 0 ||
		strconv.FormatInt(p, 10) != k[j+1:i] || strconv.FormatInt(t, 10) != k[i+1:] {
		return "", 0, 0, fmt.Errorf("%w: key %q", ErrMalformed, k)
	}
	return k[:j], int32(p), t, nil
}

// Decode reads a chunk from its key and value.
func Decode(key, value []byte) (*Chunk, error) {
	topic, part, target, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	bad := func(what string) error { return fmt.Errorf("%w: %s: %s", ErrMalformed, key, what) }
	if len(value) == 0 || value[0] != chunkVersion {
		return nil, bad("unknown version")
	}
	b := value[1:]
	// Encode writes each number in its shortest form; an overlong one (a last byte of zero) is
	// another spelling of the same chunk.
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 || n > 1 && b[n-1] == 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	sv := func() (int64, bool) {
		v, n := binary.Varint(b)
		if n <= 0 || n > 1 && b[n-1] == 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	c := &Chunk{Topic: topic, Partition: part}
	l, ok := uv()
	if !ok || l > uint64(len(b)) {
		return nil, bad("topic ID")
	}
	c.TopicID, b = string(b[:l]), b[l:]
	var ok1, ok2 bool
	c.From, ok1 = sv()
	c.Target, ok2 = sv()
	n, ok3 := uv()
	if !ok1 || !ok2 || !ok3 || n > uint64(len(b)) || c.Target != target {
		return nil, bad("header")
	}
	c.Steps = make([]Step, 0, n)
	for range n {
		s, ok1 := uv()
		k, ok2 := uv()
		if !ok1 || !ok2 || k == 0 || s > 1<<62 || k > 1<<62 {
			return nil, bad("steps")
		}
		c.Steps = append(c.Steps, Step{Skip: int64(s), Copy: int64(k)})
	}
	if len(b) != 0 {
		return nil, bad("trailing bytes")
	}
	return c, nil
}
