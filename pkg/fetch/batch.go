package fetch

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// Batch is what one fetch response held for one partition: its records in offset order and the
// position after them. Keys, values and header bytes point into the response the broker sent (no
// copy is made), so a Batch keeps that response's memory alive until the owner drops it.
type Batch struct {
	Topic     string
	Partition int32
	// Records are the data records, offsets increasing. Empty when the response moved the
	// position past control records or aborted transactions only.
	Records []Record
	// Next is the offset after everything this batch covers (including control records and
	// aborted records skipped at its end): the offset to commit once Records are all written.
	Next int64
	// HighWatermark, LastStable and LogStart are the partition's offsets as the broker answered.
	HighWatermark, LastStable, LogStart int64
	// Bytes is the sum of the records' key, value and header sizes.
	Bytes int
}

// Record is one data record, as the source stored it.
type Record struct {
	Offset int64
	// Timestamp is the record's timestamp (the zero time when the record has none).
	Timestamp time.Time
	// LogAppendTime says the timestamp type is LogAppendTime (the broker's clock) rather than
	// CreateTime (the producer's).
	LogAppendTime bool
	// Key and Value are nil when the record's are null, empty when they are empty.
	Key, Value []byte
	Headers    []*sarama.RecordHeader
	// LeaderEpoch is the partition leader epoch of the batch the record was written in (-1 for
	// the old message format).
	LeaderEpoch int32
}

// controlAbort is the type of an abort marker in a control record's key (version int16, type
// int16; 0 abort, 1 commit).
const controlAbort = 0

// decode turns one partition's answer into a batch from offset from: records below from (a
// fetch in the middle of a batch returns the whole batch) are dropped, control records are never
// returned, and under readCommitted neither are the records of aborted transactions.
//
// next is the position after the batch (from when nothing complete was returned); partial
// reports that the answer ended in a batch cut by the size limit, which is how a batch larger
// than the limit shows up when nothing before it could be returned.
//
// Aborted transactions (KIP-98, as Kafka's consumer does it): the broker lists, for the range it
// returned, each aborted transaction's producer ID and first offset. Walking batches in offset
// order, a producer becomes "aborting" once a batch ends at or after that first offset; its
// transactional batches are dropped until its abort marker (a control batch) is reached. Data of
// the same producer after the marker belongs to a later transaction and is kept.
func decode(block *sarama.FetchResponseBlock, from int64, readCommitted bool) (b *Batch, next int64, partial bool) {
	next = from
	partial = block.Partial
	n := 0
	for _, rs := range block.RecordsSet {
		if rs.RecordBatch != nil {
			n += len(rs.RecordBatch.Records)
		} else if rs.MsgSet != nil {
			n += len(rs.MsgSet.Messages)
		}
	}
	b = &Batch{HighWatermark: block.HighWaterMarkOffset, LastStable: block.LastStableOffset, LogStart: block.LogStartOffset}
	if n > 0 {
		b.Records = make([]Record, 0, n)
	}
	var (
		aborted  []*sarama.AbortedTransaction
		aborting map[int64]struct{}
	)
	if readCommitted && len(block.AbortedTransactions) > 0 {
		aborted = slices.Clone(block.AbortedTransactions)
		slices.SortFunc(aborted, func(x, y *sarama.AbortedTransaction) int {
			switch {
			case x.FirstOffset < y.FirstOffset:
				return -1
			case x.FirstOffset > y.FirstOffset:
				return 1
			}
			return 0
		})
		aborting = make(map[int64]struct{}, len(aborted))
	}
	for _, rs := range block.RecordsSet {
		if rs.MsgSet != nil {
			var cut bool
			next, cut = b.legacy(rs.MsgSet, from, next)
			if cut {
				partial = true
				break
			}
			continue
		}
		rb := rs.RecordBatch
		if rb == nil {
			continue
		}
		if rb.PartialTrailingRecord {
			partial = true
			break
		}
		last := rb.LastOffset()
		for len(aborted) > 0 && aborted[0].FirstOffset <= last {
			aborting[aborted[0].ProducerID] = struct{}{}
			aborted = aborted[1:]
		}
		switch {
		case rb.Control:
			if aborting != nil && isAbortMarker(rb) {
				delete(aborting, rb.ProducerID)
			}
		case aborting != nil && rb.IsTransactional && has(aborting, rb.ProducerID):
			// an aborted transaction's data: skipped, its offsets passed
		default:
			b.appendBatch(rb, from)
		}
		if last+1 > next {
			next = last + 1
		}
	}
	return b, next, partial
}

func has(m map[int64]struct{}, k int64) bool {
	_, ok := m[k]
	return ok
}

// isAbortMarker reads a control batch's record key (version int16, type int16).
func isAbortMarker(rb *sarama.RecordBatch) bool {
	if len(rb.Records) == 0 || len(rb.Records[0].Key) < 4 {
		return false
	}
	return binary.BigEndian.Uint16(rb.Records[0].Key[2:4]) == controlAbort
}

func (b *Batch) appendBatch(rb *sarama.RecordBatch, from int64) {
	for _, r := range rb.Records {
		off := rb.FirstOffset + r.OffsetDelta
		if off < from {
			continue
		}
		var ts time.Time
		switch {
		case rb.LogAppendTime:
			ts = rb.MaxTimestamp
		case !rb.FirstTimestamp.IsZero():
			ts = rb.FirstTimestamp.Add(r.TimestampDelta)
		}
		b.Records = append(b.Records, Record{
			Offset: off, Timestamp: ts, LogAppendTime: rb.LogAppendTime,
			Key: r.Key, Value: r.Value, Headers: r.Headers, LeaderEpoch: rb.PartitionLeaderEpoch,
		})
		b.Bytes += len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			b.Bytes += len(h.Key) + len(h.Value)
		}
	}
}

// legacy appends records of the old message format (magic 0 and 1, which a log written before
// Kafka 0.11 may still hold), the way sarama's consumer reads them: a compressed wrapper holds
// inner messages whose offsets (magic 1) are relative to the wrapper's last one.
func (b *Batch) legacy(ms *sarama.MessageSet, from, next int64) (int64, bool) {
	for _, mb := range ms.Messages {
		inner := mb.Messages()
		for _, m := range inner {
			off := m.Offset
			ts := m.Msg.Timestamp
			if m.Msg.Version >= 1 {
				off += mb.Offset - inner[len(inner)-1].Offset
				if m.Msg.LogAppendTime {
					ts = mb.Msg.Timestamp
				}
			}
			if off >= next {
				next = off + 1
			}
			if off < from {
				continue
			}
			b.Records = append(b.Records, Record{Offset: off, Timestamp: ts, LogAppendTime: m.Msg.LogAppendTime,
				Key: m.Msg.Key, Value: m.Msg.Value, LeaderEpoch: -1})
			b.Bytes += len(m.Msg.Key) + len(m.Msg.Value)
		}
	}
	return next, ms.PartialTrailingMessage
}
