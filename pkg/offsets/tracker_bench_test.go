package offsets

import "testing"

// BenchmarkRegisterAck is the tracker's cost per record on the hot path: one Register by the
// claim goroutine and one in-order Ack by the worker.
func BenchmarkRegisterAck(b *testing.B) {
	p := NewPartition("t", 0, 0, 4096)
	b.ReportAllocs()
	var o int64
	for b.Loop() {
		s, err := p.Register(o)
		if err != nil {
			b.Fatal(err)
		}
		p.Ack(s)
		o++
	}
}

// BenchmarkAckOutOfOrder acks a window of 64 in reverse, so every 64th ack pops 64 slots.
func BenchmarkAckOutOfOrder(b *testing.B) {
	p := NewPartition("t", 0, 0, 4096)
	var seqs [64]uint64
	b.ReportAllocs()
	var o int64
	for b.Loop() {
		for i := range seqs {
			seqs[i], _ = p.Register(o)
			o++
		}
		for i := len(seqs) - 1; i >= 0; i-- {
			p.Ack(seqs[i])
		}
	}
}
