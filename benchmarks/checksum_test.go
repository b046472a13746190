package benchmarks

import (
	"hash/crc32"
	"testing"
)

// BenchmarkChecksum times the CRC-32C of a record batch (what sarama computes when it encodes a
// produce request and checks when it decodes a fetch response) over 1 MiB pieces: "cached" sums
// the same piece again and again, as the produce side sums a batch it has just written;
// "memory" sums the pieces of 64 MiB in turn, each no longer in the CPU's caches, as the fetch
// side sums a response of many megabytes read before it is decoded. On the benchmark machine of
// docs/benchmarks.md the second is several times slower, which is why the fetch side's check
// costs kmirror far more CPU than the produce side's sum of the same bytes.
func BenchmarkChecksum(b *testing.B) {
	const piece, span = 1 << 20, 64 << 20
	table := crc32.MakeTable(crc32.Castagnoli)
	buf := make([]byte, span)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, c := range []struct {
		name string
		next func(i int) []byte
	}{
		{"cached", func(int) []byte { return buf[:piece] }},
		{"memory", func(i int) []byte { off := i % (span / piece) * piece; return buf[off : off+piece] }},
	} {
		b.Run("from="+c.name, func(b *testing.B) {
			b.SetBytes(piece)
			var sum uint32
			for i := range b.N {
				sum += crc32.Checksum(c.next(i), table)
			}
			if sum == 1 {
				b.Log(sum) // keeps the sums from being optimised away
			}
		})
	}
}
