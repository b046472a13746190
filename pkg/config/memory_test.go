package config

import "testing"

// TestMemoryBoundOfTheDefaults pins the formula to figures worked out by hand, so that a change
// of a default or of the formula is seen (docs/operations.md quotes them).
func TestMemoryBoundOfTheDefaults(t *testing.T) {
	const MiB = 1 << 20
	const mmb = 1048588 // producer.max_message_bytes, Kafka's default
	c := Default()
	// At least once: 8 workers' pipelines, each 6 batches of 1 MiB, one record batch coming in,
	// and twice the batches again for their encodings and the buffers kept for reuse.
	pipelines := int64(8 * (3*6*MiB + mmb))
	for _, tc := range []struct {
		partitions                      int
		ring, fetch, inFlight, constant int64
	}{
		// No partition: the ring, the workers' pipelines and the constant only.
		{0, 64 * MiB, 0, pipelines, 64 * MiB},
		// 12 partitions: fetch = 12 × 2 shares + the next responses, 12 shares; a share is
		// distant_fetch_partition_bytes (4 MiB), what a distant source's partitions are fetched
		// with.
		{12, 64 * MiB, 12*2*4*MiB + 12*4*MiB, pipelines, 64*MiB + 12*64<<10},
		// 1,000 partitions: the next responses are capped by fetch_max_bytes (50 MiB) in each of
		// a distant source's 4 fetch lanes, and what the partitions keep by max_held_bytes
		// (128 MiB) and the responses in flight when it was reached (2 shares each: 8,000 MiB).
		{1000, 64 * MiB, (128*MiB + 4*50*MiB) + 4*50*MiB, pipelines, 64*MiB + 1000*64<<10},
	} {
		m := c.MemoryBound(tc.partitions)
		want := Memory{Ring: tc.ring, Fetch: tc.fetch, InFlight: tc.inFlight, Constant: tc.constant}
		if m != want {
			t.Errorf("MemoryBound(%d) = %+v, want %+v", tc.partitions, m, want)
		}
		if m.Total() != m.Ring+m.Fetch+m.InFlight+m.Constant {
			t.Errorf("MemoryBound(%d).Total() = %d, not the sum of its parts", tc.partitions, m.Total())
		}
	}
}

// TestMemoryBoundFollowsTheBudgets checks that each budget of the configuration moves its part
// of the bound and only that part.
func TestMemoryBoundFollowsTheBudgets(t *testing.T) {
	base := Default()
	b0 := base.MemoryBound(4)
	c := Default()
	c.Ring.InboxBytes *= 2
	if b := c.MemoryBound(4); b.Ring != 2*b0.Ring || b.Fetch != b0.Fetch || b.InFlight != b0.InFlight {
		t.Errorf("doubling ring.inbox_bytes: %+v from %+v", b, b0)
	}
	c = Default()
	c.Producer.BatchBytes = 256 << 10
	if b := c.MemoryBound(4); b.InFlight != 8*(3*6*(256<<10)+int64(c.Producer.MaxMessageBytes)) || b.Ring != b0.Ring {
		t.Errorf("256 KiB producer.batch_bytes: %+v from %+v", b, b0)
	}
	c = Default()
	c.Consumer.MaxHeldBytes = 0 // no bound across partitions: each keeps two shares
	if b := c.MemoryBound(1000); b.Fetch != 1000*2*4*(1<<20)+4*50*(1<<20) {
		t.Errorf("no consumer.max_held_bytes at 1,000 partitions: %+v", b)
	}
	c = Default()
	c.Ring.Workers *= 2
	if b := c.MemoryBound(4); b.InFlight != 2*b0.InFlight {
		t.Errorf("2 × ring.workers: %+v from %+v", b, b0)
	}
	// Exactly once: a transactional pipeline per slot owned (at most one per partition).
	c = Default()
	c.Delivery.Mode = "exactly_once"
	// Each slot: its open transaction (delivery.transaction.max_bytes, 8 MiB, and one record),
	// more than its pipeline (6 batches of 1 MiB and one record), and the pipeline's encodings
	// and reused buffers (twice its 6 batches).
	pipe := c.Delivery.Transaction.MaxBytes + int64(c.Producer.MaxMessageBytes) + 2*6<<20
	if e := c.MemoryBound(4); e.InFlight != 4*pipe || e.Ring != b0.Ring {
		t.Errorf("exactly once, 4 partitions of 16 slots: %+v, want InFlight %d", e, 4*pipe)
	}
	if e := c.MemoryBound(1000); e.InFlight != 16*pipe {
		t.Errorf("exactly once, 1000 partitions of 16 slots: %+v, want InFlight %d", e, 16*pipe)
	}
	c = Default()
	c.Consumer.FetchPartitionBytes = 8 << 20 // larger than a batch and the distant size: the share is the fetch size
	if b := c.MemoryBound(4); b.Fetch != 4*2*(8<<20)+4*(8<<20) || b.InFlight != b0.InFlight {
		t.Errorf("8 MiB fetch_partition_bytes: %+v from %+v", b, b0)
	}
	c = Default()
	c.Consumer.DistantFetchPartitionBytes = 2 << 20
	if b := c.MemoryBound(4); b.Fetch != 4*2*(2<<20)+4*(2<<20) || b.InFlight != b0.InFlight {
		t.Errorf("2 MiB distant_fetch_partition_bytes: %+v from %+v", b, b0)
	}
	// A source never counted as distant (distant_rtt 0) is fetched with shares of a batch.
	c = Default()
	c.Consumer.DistantRTT = 0
	if b, mmb := c.MemoryBound(4), int64(c.Producer.MaxMessageBytes); b.Fetch != 4*2*mmb+4*mmb {
		t.Errorf("distant_rtt 0: %+v, want Fetch %d", b, 4*2*mmb+4*mmb)
	}
	if b := base.MemoryBound(-1); b != base.MemoryBound(0) {
		t.Errorf("MemoryBound(-1) = %+v, want that of 0 partitions", b)
	}
}

// TestHeldBytesAreSharedByTheWorkers: each worker's partitions hold at most an equal part of
// consumer.max_held_bytes; 0 bounds nothing.
func TestHeldBytesAreSharedByTheWorkers(t *testing.T) {
	c := Default().Consumer
	if got := c.HeldPerWorker(8); got != 16<<20 {
		t.Errorf("128 MiB over 8 workers: %d, want 16 MiB", got)
	}
	if got := c.HeldPerWorker(0); got != 128<<20 {
		t.Errorf("no workers counted: %d, want the whole 128 MiB", got)
	}
	c.MaxHeldBytes = 0
	if got := c.HeldPerWorker(8); got != 0 {
		t.Errorf("max_held_bytes 0: %d, want 0 (no bound)", got)
	}
}
