package worker

import (
	"encoding/binary"

	"github.com/IBM/sarama"
)

// batchOverhead is the header of a record batch (magic 2): what a broker adds to the records
// before it compares the batch with the topic's max.message.bytes.
const batchOverhead = 61

// soloBound is the batch bound of the producer that sends records alone: the largest request
// sarama sends, less its own margin.
var soloBound = int(sarama.MaxRequestSize) - 64<<10

// batchBound is the uncompressed size to which a producer keeps each partition's batches so that
// a broker whose topic limit is limit accepts them: the produce pipeline fills a batch by its
// records' exact encoded sizes, so a batch never exceeds bound + batchOverhead. Compression may
// grow incompressible data a little (block headers), hence a margin when batches are compressed.
func batchBound(limit int, compressed bool) int {
	b := limit - batchOverhead
	if compressed {
		b -= limit/100 + 512
	}
	return max(b, 1024)
}

// BatchBound is batchBound for a target topic limit of limit: the batch bound of the producer a
// worker uses for that topic's records.
func BatchBound(limit int, compressed bool) int { return batchBound(limit, compressed) }

// aloneBytes is the exact size of the batch m makes by itself, uncompressed: what the broker
// compares with max.message.bytes when the batch is not compressed.
func aloneBytes(m *sarama.ProducerMessage) int {
	body := 1 + 1 + 1 // attributes, timestamp delta 0, offset delta 0
	body += bytesField(m.Key) + bytesField(m.Value)
	body += varintLen(int64(len(m.Headers)))
	for _, h := range m.Headers {
		body += varintLen(int64(len(h.Key))) + len(h.Key)
		if h.Value == nil {
			body += varintLen(-1)
		} else {
			body += varintLen(int64(len(h.Value))) + len(h.Value)
		}
	}
	return batchOverhead + varintLen(int64(body)) + body
}

func bytesField(e sarama.Encoder) int {
	if e == nil {
		return varintLen(-1)
	}
	n := e.Length()
	return varintLen(int64(n)) + n
}

func varintLen(n int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], n)
}
