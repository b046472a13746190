package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// workload makes the benchmark's records: a key out of 10,000, two headers (source and seq) and a
// value of valueBytes cut from a block of random bytes, so values differ from record to record
// and do not compress (Kafka's producer performance tool, the ceiling, writes random payloads
// too). The same seed gives the same records in every run.
type workload struct {
	valueBytes int
	random     []byte
}

// randomBlock is the size of the random block values are cut from.
const randomBlock = 4 << 20

func newWorkload(valueBytes int) workload {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, randomBlock+valueBytes)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return workload{valueBytes: valueBytes, random: b}
}

// record returns record i of the workload for topic t.
func (w workload) record(t string, i int) *kgo.Record {
	at := (i * 7919) % randomBlock // a prime stride: neighbouring records share no bytes
	return &kgo.Record{
		Topic: t,
		Key:   []byte("key-" + strconv.Itoa(i%10_000)),
		Value: w.random[at : at+w.valueBytes],
		Headers: []kgo.RecordHeader{
			{Key: "source", Value: []byte("europe")},
			{Key: "seq", Value: []byte(strconv.Itoa(i))},
		},
	}
}

// compressionCodec maps a --source-compression value to franz-go's codec.
func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--source-compression %q: want none, gzip, snappy, lz4 or zstd", name)
}
