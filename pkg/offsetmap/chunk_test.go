package offsetmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"testing"
)

func TestChunkEncodeDecodeRoundTrip(t *testing.T) {
	many := make([]Step, 300)
	for i := range many {
		many[i] = Step{Skip: int64(i % 3), Copy: int64(1 + i%7)}
	}
	cases := []struct {
		name        string
		chunk       Chunk
		end, copies int64
	}{
		{"one copy", Chunk{Topic: "t", Partition: 0, From: 0, Target: 0, Steps: []Step{{Skip: 0, Copy: 1}}}, 1, 1},
		{"no steps", Chunk{Topic: "t", Partition: 1, From: 7, Target: 9, Steps: []Step{}}, 7, 0},
		{"topic ID and leading skip", Chunk{Topic: "orders", Partition: 3, TopicID: "AAAAAAAAAAAAAAAAAAAAAA==",
			From: 100, Target: 5000, Steps: []Step{{Skip: 2, Copy: 10}}}, 112, 10},
		{"markers between runs", Chunk{Topic: "a.b-c_d", Partition: 12, From: 40, Target: 41,
			Steps: []Step{{Skip: 0, Copy: 9}, {Skip: 1, Copy: 9}, {Skip: 1, Copy: 9}, {Skip: 3, Copy: 1}}}, 73, 28},
		{"offsets past 2^32", Chunk{Topic: "big", Partition: math.MaxInt32, From: 1 << 40, Target: 1<<50 + 3,
			Steps: []Step{{Skip: 1 << 33, Copy: 1 << 34}}}, 1<<40 + 1<<33 + 1<<34, 1 << 34},
		{"many steps", Chunk{Topic: "m", Partition: 2, TopicID: "id", From: 0, Target: 0, Steps: many}, sumSteps(many), copiesOf(many)},
		// Version 2: a heartbeat a second, each in a transaction of its own (a marker after each
		// copy on the target), then transactions of differing sizes.
		{"transaction markers as gaps, repeated", Chunk{Topic: "kmirror.heartbeats.us", Partition: 0, TopicID: "id", From: 10, Target: 20,
			Steps: []Step{{Copy: 1}, {Copy: 1, Gap: 1, Repeat: 86398}, {Copy: 7, Gap: 1}, {Skip: 1, Copy: 3, Gap: 1}}}, 10 + 1 + 86399 + 7 + 4, 1 + 86399 + 7 + 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.chunk
			if got := c.End(); got != tc.end {
				t.Errorf("End() = %d, want %d", got, tc.end)
			}
			if got := c.Copies(); got != tc.copies {
				t.Errorf("Copies() = %d, want %d", got, tc.copies)
			}
			if c.Steps != nil && !slices.ContainsFunc(c.Steps, func(s Step) bool { return s.Gap != 0 || s.Repeat != 0 }) {
				if v := c.Encode()[0]; v != chunkVersion {
					t.Errorf("a chunk without gaps or repeats is written as version %d, want %d (readable by older kmirror)", v, chunkVersion)
				}
			}
			got, err := Decode(c.Key(), c.Encode())
			if err != nil {
				t.Fatalf("Decode(Encode()) = %v", err)
			}
			if !reflect.DeepEqual(*got, c) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", *got, c)
			}
		})
	}
}

func sumSteps(ss []Step) int64 {
	var n int64
	for _, s := range ss {
		n += (s.Repeat + 1) * (s.Skip + s.Copy)
	}
	return n
}

func copiesOf(ss []Step) int64 {
	var n int64
	for _, s := range ss {
		n += s.Copy
	}
	return n
}

func TestKeyParseKeyRoundTrip(t *testing.T) {
	cases := []struct {
		topic     string
		partition int32
		target    int64
		key       string
	}{
		{"orders", 0, 0, "orders/0/0"},
		{"a.b.c", 7, 12345, "a.b.c/7/12345"},
		{"my-topic", 1, 1, "my-topic/1/1"},
		{"my_topic_v2", 2, 99, "my_topic_v2/2/99"},
		{"__consumer_offsets", 49, 1 << 40, "__consumer_offsets/49/1099511627776"},
		{"x.y-z_w.1", math.MaxInt32, math.MaxInt64, "x.y-z_w.1/2147483647/9223372036854775807"},
		{"9", 3, 4, "9/3/4"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			c := Chunk{Topic: tc.topic, Partition: tc.partition, Target: tc.target}
			if got := string(c.Key()); got != tc.key {
				t.Fatalf("Key() = %q, want %q", got, tc.key)
			}
			topic, part, target, err := ParseKey(c.Key())
			if err != nil {
				t.Fatalf("ParseKey(%q) = %v", tc.key, err)
			}
			if topic != tc.topic || part != tc.partition || target != tc.target {
				t.Fatalf("ParseKey(%q) = %q, %d, %d; want %q, %d, %d", tc.key, topic, part, target, tc.topic, tc.partition, tc.target)
			}
		})
	}
}

func TestParseKeyRejectsMalformed(t *testing.T) {
	for _, key := range []string{
		"",
		"orders",
		"orders/1",
		"/1/2",       // no topic
		"orders//2",  // no partition
		"orders/1/",  // no target
		"orders/x/2", // partition not a number
		"orders/1/y", // target not a number
		"orders/-1/2",
		"orders/1/-2",
		"orders/2147483648/2", // partition past int32
		"orders/1/9223372036854775808",
		"orders/1/2 ",
		"orders/ 1/2",
		// Other spellings of a key Key writes as "orders/1/2": the map topic is compacted by key
		// bytes, so an alias would neither replace nor be deleted by the chunk's own key.
		"orders/01/2",
		"orders/1/02",
		"orders/+1/2",
		"orders/1/+2",
		"orders/-0/2",
		"orders/1/-0",
	} {
		t.Run(strconv.Quote(key), func(t *testing.T) {
			topic, part, target, err := ParseKey([]byte(key))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseKey(%q) = %q, %d, %d, %v; want ErrMalformed", key, topic, part, target, err)
			}
		})
	}
}

// validChunk is a chunk whose encoding has a multi-byte varint in every field.
func validChunk() Chunk {
	return Chunk{Topic: "orders", Partition: 3, TopicID: "q1w2e3", From: 1000, Target: 70000,
		Steps: []Step{{Skip: 0, Copy: 200}, {Skip: 1, Copy: 3}, {Skip: 300, Copy: 1}}}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	c := validChunk()
	key, value := c.Key(), c.Encode()
	with := func(edit func(b []byte) []byte) []byte { return edit(bytes.Clone(value)) }
	header := func(topicID string, from, target int64, steps ...uint64) []byte {
		b := []byte{chunkVersion}
		b = binary.AppendUvarint(b, uint64(len(topicID)))
		b = append(b, topicID...)
		b = binary.AppendVarint(b, from)
		b = binary.AppendVarint(b, target)
		for _, s := range steps {
			b = binary.AppendUvarint(b, s)
		}
		return b
	}
	v2 := func(b []byte) []byte { b[0] = chunkVersionV2; return b }
	cases := []struct {
		name       string
		key, value []byte
	}{
		{"nil value", key, nil},
		{"empty value", key, []byte{}},
		{"version 0", key, with(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2 body of version 1", key, with(func(b []byte) []byte { b[0] = 2; return b })},
		{"version 3", key, with(func(b []byte) []byte { b[0] = 3; return b })},
		{"trailing byte", key, append(bytes.Clone(value), 0)},
		{"trailing step", key, append(bytes.Clone(value), 1, 1)},
		{"key target differs from value's", []byte("orders/3/70001"), value},
		{"malformed key", []byte("orders/3"), value},
		{"zero copy", key, header("", 1000, 70000, 1, 5, 0)},
		{"zero copy after a good step", key, header("", 1000, 70000, 2, 0, 4, 1, 0)},
		{"version byte only", key, []byte{chunkVersion}},
		{"topic ID length past the end", key, append([]byte{chunkVersion, 10}, "abc"...)},
		{"step count past the end", key, header("", 1000, 70000, 1000, 1, 1)},
		{"step count one too many", key, header("", 1000, 70000, 2, 1, 1)},
		{"skip past 2^62", key, header("", 1000, 70000, 1, 1<<62+1, 1)},
		{"copy past 2^62", key, header("", 1000, 70000, 1, 0, 1<<62+1)},
		{"varint overflowing 64 bits", key, append(header("", 1000, 70000, 1, 0),
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		// Encode writes every number in its shortest form; a longer one would decode to the same
		// chunk from other bytes.
		{"overlong step count", key, append(header("", 1000, 70000), 0x81, 0x00, 0, 1)},
		{"overlong topic ID length", key, append([]byte{chunkVersion, 0x80, 0x00}, header("", 1000, 70000, 0)[2:]...)},
		{"overlong copy", key, append(header("", 1000, 70000, 1, 0), 0x81, 0x80, 0x00)},
		{"version 2 without a gap or a repeat", key, v2(header("", 1000, 70000, 1, 0, 5, 0, 0))},
		{"version 2 gap before the first copy", key, v2(header("", 1000, 70000, 1, 0, 5, 1, 0))},
		{"version 2 repeats past 2^62 offsets", key, v2(header("", 1000, 70000, 1, 0, 5, 0, 1<<62))},
		{"version 2 step cut short", key, v2(header("", 1000, 70000, 2, 0, 5, 0, 1, 0, 5, 1))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.key, tc.value)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %+v, %v; want ErrMalformed", got, err)
			}
			if got != nil {
				t.Fatalf("Decode returned a chunk with its error: %+v", got)
			}
		})
	}
}

func TestDecodeRejectsEveryTruncation(t *testing.T) {
	c := validChunk()
	key, value := c.Key(), c.Encode()
	if _, err := Decode(key, value); err != nil {
		t.Fatalf("the whole value: %v", err)
	}
	for n := range len(value) {
		if got, err := Decode(key, value[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("value cut to %d of %d bytes: Decode = %+v, %v; want ErrMalformed", n, len(value), got, err)
		}
	}
}

// FuzzDecode feeds arbitrary keys and values to Decode: it must never panic, must fail only with
// ErrMalformed, and a chunk it returns must encode back to exactly the key and value it was read
// from (one chunk, one spelling: the map topic is compacted by key bytes).
func FuzzDecode(f *testing.F) {
	seeds := []Chunk{
		validChunk(),
		{Topic: "t", Partition: 0, From: 0, Target: 0, Steps: []Step{{Skip: 0, Copy: 1}}},
		{Topic: "a.b-c_d", Partition: 9, TopicID: "xyz", From: 5, Target: 1 << 40, Steps: []Step{{Skip: 3, Copy: 1}, {Skip: 1, Copy: 1 << 20}}},
		{Topic: "e", Partition: 1, From: -3, Target: 7, Steps: nil},
		{Topic: "h", Partition: 0, From: 0, Target: 0, Steps: []Step{{Copy: 1}, {Copy: 1, Gap: 1, Repeat: 99}}},
	}
	for _, c := range seeds {
		f.Add(c.Key(), c.Encode())
	}
	f.Add([]byte("t/0/0"), []byte{chunkVersion, 0x80, 0x00, 0, 0, 0})
	f.Add([]byte("t/01/0"), []byte{chunkVersion, 0, 0, 0, 0})
	f.Add([]byte("a/b/1/2"), []byte{})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c, err := Decode(key, value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error %v is not ErrMalformed", err)
			}
			if c != nil {
				t.Fatalf("Decode returned a chunk with its error: %+v", c)
			}
			return
		}
		if got := c.Key(); !bytes.Equal(got, key) {
			t.Fatalf("key %q decoded to a chunk whose key is %q", key, got)
		}
		if got := c.Encode(); !bytes.Equal(got, value) {
			t.Fatalf("value %x decoded to %+v, which encodes as %x", value, c, got)
		}
		for i, s := range c.Steps {
			if s.Copy <= 0 || s.Skip < 0 || s.Gap < 0 || s.Repeat < 0 || i == 0 && s.Gap != 0 {
				t.Fatalf("decoded step %+v: Copy must be positive, Skip, Gap and Repeat not negative, no Gap first", s)
			}
		}
	})
}
