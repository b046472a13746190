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
// The model. A Chunk is a run of copies that are contiguous on the target but for the commit
// markers of kmirror's own transactions: it covers the source offsets [From, End) and says, step
// by step, which of them are records (copied to consecutive target offsets from Target on, a
// marker's offset apart across a transaction boundary) and which hold no record (transaction
// markers, aborted records, compacted records, records the refused-record policy skipped). One
// writer (the member that owns the partition) appends to one open chunk; a discontinuity on the
// target (a restart re-copying from the committed position, a resend) starts a new chunk. A chunk
// never says an offset holds no record unless the partition's tracker said every record before
// it was settled: offsets only not yet written stay outside every chunk. Because a run copies
// forward from its start without a hole, and each new run starts at or below where the previous
// one's copies end, the copies at and after the last copy of a record include every later record,
// but for the resend window and a crashed run's re-copies, which taking the lowest of the last
// copies covers (proof sketch in Index.Translate).
//
// The order with the positions. The map must never end before a committed position: a run
// resumes there, so copies committed but not mapped would stay unmapped for ever (a hole that
// translates as "unknown" or "not yet mirrored"). At-least-once writes the map before each
// commit of source offsets (a record is recorded before it is acknowledged). Exactly-once
// commits the positions inside each transaction on the target, so its map is written before
// the transaction commits: once the target has acknowledged the transaction's records, their
// copies are recorded (Recorder.Held vouches for the gaps between records of one transaction,
// not acknowledged yet) and written (Flusher.Write), and only then is EndTxn sent (the
// positions may be added before, while the records are in flight: they are visible only with
// the commit); a write that fails aborts the transaction. A kill between the write and EndTxn
// leaves chunks that map the transaction's records to aborted copies: the run that resumes
// copies them again, higher in the same partition with only aborted records and markers
// between, and maps those copies before committing them; the newest chunk covering an offset
// wins, so until then a position among them translates to an aborted copy, from which a
// read_committed reader reads the copies made again (records before the position among them
// twice: duplicates, never a loss).
//
// The writes. One write at a time reaches the map topic, so that a chunk's versions land in
// order; the flushes that wait while one is under way are written together by the next (a group
// commit, Flusher.flush), so a burst of slots committing at once costs two round trips, not one
// each. A flush returns nil only once a write that holds its chunks succeeded.
//
// The bound. A chunk holds up to MaxSteps distinct steps, a step that repeats the one before
// counting once, so a partition costs a chunk per MaxSteps transactions of differing shape plus
// one per claim; Index.Expired names the chunks no translation needs (below the source's log
// start, or covered by later ones), which the mirror deletes.
package offsetmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Step is part of a chunk: Skip source offsets that hold no record, then Copy records at
// consecutive source offsets copied to consecutive target offsets. Gap target offsets before the
// step's first copy hold nothing of the partition's copies: under exactly-once, the commit marker
// of the transaction the previous copies were written in. The whole pattern (Skip, Gap, Copy)
// happens Repeat+1 times in a row, so a partition whose transactions all look alike (a heartbeat
// a second, each in its own transaction) costs one step however long it runs.
//
// The first step of a chunk has no Gap: the chunk's Target is its first copy.
type Step struct {
	Skip, Copy int64
	Gap        int64
	Repeat     int64
}

// times is how many times the step's pattern happens.
func (s Step) times() int64 { return s.Repeat + 1 }

// Chunk is a run of copies of one source partition that is contiguous on the target but for the
// known gaps of its steps (transaction markers written by kmirror's own transactions).
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
		e += s.times() * (s.Skip + s.Copy)
	}
	return e
}

// Copies is how many records the chunk holds.
func (c *Chunk) Copies() int64 {
	var n int64
	for _, s := range c.Steps {
		n += s.times() * s.Copy
	}
	return n
}

// TargetEnd is the target offset after the chunk's last copy: its copies and gaps are the target
// offsets [Target, TargetEnd).
func (c *Chunk) TargetEnd() int64 {
	t := c.Target
	for _, s := range c.Steps {
		t += s.times() * (s.Gap + s.Copy)
	}
	return t
}

// next returns the target offset of the first record at or after source offset off within the
// chunk, and that record's source offset; ok is false when off is outside [From, End).
func (c *Chunk) next(off int64) (target, source int64, ok bool) {
	if off < c.From {
		return 0, 0, false
	}
	pos, t := c.From, c.Target
	for _, s := range c.Steps {
		period, tperiod := s.Skip+s.Copy, s.Gap+s.Copy
		if span := s.times() * period; off >= pos+span {
			pos, t = pos+span, t+s.times()*tperiod
			continue
		}
		i := (off - pos) / period // the repetition holding off
		first, tfirst := pos+i*period+s.Skip, t+i*tperiod+s.Gap
		if off < first {
			return tfirst, first, true
		}
		return tfirst + (off - first), off, true
	}
	return 0, 0, false
}

// first is next for a chunk's start without walking its steps.
func (c *Chunk) first(off int64) (target, source int64, ok bool) {
	if off == c.From && len(c.Steps) > 0 {
		return c.Target, c.From + c.Steps[0].Skip, true
	}
	return c.next(off)
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

// The first byte of every encoded chunk: version 1 holds (Skip, Copy) per step, version 2
// (Skip, Copy, Gap, Repeat). Encode writes version 1 whenever no step has a gap or a repeat, so
// that a map written without exactly-once stays readable by a kmirror that knows only version 1
// (one that meets a version 2 chunk ignores it with a warning: translations past it are
// "unknown", never wrong).
const (
	chunkVersion   = 1
	chunkVersionV2 = 2
)

// maxSpan bounds every offset count of a decoded chunk, so that sums of them cannot overflow.
const maxSpan = 1 << 62

// Encode returns the chunk's value in the map topic: a version byte, the topic ID, From, Target
// and the steps, as varints.
func (c *Chunk) Encode() []byte {
	version := byte(chunkVersion)
	for _, s := range c.Steps {
		if s.Gap != 0 || s.Repeat != 0 {
			version = chunkVersionV2
			break
		}
	}
	b := make([]byte, 0, 16+len(c.TopicID)+4*len(c.Steps))
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(c.TopicID)))
	b = append(b, c.TopicID...)
	b = binary.AppendVarint(b, c.From)
	b = binary.AppendVarint(b, c.Target)
	b = binary.AppendUvarint(b, uint64(len(c.Steps)))
	for _, s := range c.Steps {
		b = binary.AppendUvarint(b, uint64(s.Skip))
		b = binary.AppendUvarint(b, uint64(s.Copy))
		if version == chunkVersionV2 {
			b = binary.AppendUvarint(b, uint64(s.Gap))
			b = binary.AppendUvarint(b, uint64(s.Repeat))
		}
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
	if len(value) == 0 || value[0] != chunkVersion && value[0] != chunkVersionV2 {
		return nil, bad("unknown version")
	}
	v2 := value[0] == chunkVersionV2
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
	extended := false            // a step with a gap or a repeat: what version 2 is for
	var span, tspan int64 = 0, 0 // the source and target offsets covered so far
	for i := range n {
		s, ok1 := uv()
		k, ok2 := uv()
		var g, r uint64
		ok3, ok4 := true, true
		if v2 {
			g, ok3 = uv()
			r, ok4 = uv()
		}
		if !ok1 || !ok2 || !ok3 || !ok4 || k == 0 || s > maxSpan || k > maxSpan || g > maxSpan || r > maxSpan {
			return nil, bad("steps")
		}
		if i == 0 && g != 0 {
			return nil, bad("a gap before the first copy (the chunk's target is its first copy)")
		}
		st := Step{Skip: int64(s), Copy: int64(k), Gap: int64(g), Repeat: int64(r)}
		period, tperiod := st.Skip+st.Copy, st.Gap+st.Copy
		if st.times() > (maxSpan-span)/period || st.times() > (maxSpan-tspan)/tperiod {
			return nil, bad("steps past 2^62 offsets")
		}
		span, tspan = span+st.times()*period, tspan+st.times()*tperiod
		extended = extended || g != 0 || r != 0
		c.Steps = append(c.Steps, st)
	}
	if v2 && !extended {
		return nil, bad("version 2 without a gap or a repeat (written as version 1)")
	}
	if len(b) != 0 {
		return nil, bad("trailing bytes")
	}
	return c, nil
}
