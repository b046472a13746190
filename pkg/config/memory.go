package config

// Memory is the most memory the configuration lets kmirror hold, by part of the data path, for
// a process that owns a given number of source partitions. Each part follows from a byte budget
// of the configuration (or from a size Kafka bounds), so the total bounds the live heap: an
// operator sets GOMEMLIMIT to Total and the container's limit a little above it. The Go runtime
// keeps its heap under GOMEMLIMIT as long as the live heap fits, whatever runtime.gc_percent
// would let it grow to otherwise. kmirror_memory_bound_bytes reports Total for the partitions
// the process owns (docs/operations.md).
//
// The formula follows today's data path: kmirror's fetch loops (pkg/fetch) feeding the ring
// by whole batches, kmirror's produce pipelines (at least once, or transactional per slot exactly once) behind
// the workers. Records share the buffer they were fetched in (the decompressed batch, or the
// whole fetch response of an uncompressed one): nothing is copied, and a buffer stays whole in
// memory while any of its records is in flight. The parts count
// buffers, not records, and assume every partition progresses (a partition held back while
// the others of its fetch responses move on pins those responses: up to fetch_max_bytes per
// record of it still in flight, not counted here). A new fetch or produce path changes Fetch or
// InFlight and nothing else.
type Memory struct {
	// Ring is what the workers' inboxes hold: ring.workers × ring.inbox_bytes. A record larger
	// than a whole inbox is still admitted into an empty one.
	Ring int64
	// Fetch is what the source consumer holds besides: per partition, what its claim could not
	// push into the ring yet (the fetched batch it was given when it answered full, and one more
	// if a fetch was under way then), each at most one fetch share
	// (consumer.fetch_partition_bytes, or a whole record batch larger than that, which Kafka
	// returns whole: at most producer.max_message_bytes); and the next fetch responses, one per
	// fetch lane, together at most lanes × consumer.fetch_max_bytes and at most partitions ×
	// the share (the lanes divide the partitions). With consumer.max_held_bytes, what the
	// partitions keep is at most that bound (the workers' parts of it) and the responses in
	// flight when it was reached.
	Fetch int64
	// InFlight is what the producers hold, taken from the inboxes and not yet acknowledged by
	// the target. At least once, each worker's produce pipeline (pkg/produce) holds at most
	// PipelineBatches batches of producer.batch_bytes (up to five requests in flight per broker
	// and the batch being filled) plus the records on its way in (ProducerChannelRecords of
	// them, counted as one record batch of producer.max_message_bytes), and twice the batches
	// again (EncodingShare): their records encoded (at most a quarter more than the records,
	// since a buffer is reused only when at most a quarter larger than the encoding) and the
	// buffers and record slices acknowledged batches left for later ones (at most three
	// quarters). This counts one pipeline per worker, as when every target topic has the same
	// max.message.bytes: each further distinct limit among the target topics opens one more
	// pipeline per worker, not counted (records that might fit only compressed go one at a time
	// through a pipeline of their own, at most a record per partition). Exactly once, each slot
	// the process owns (at most delivery.slots, at most one per partition) has a transactional
	// produce pipeline that holds as much as a worker's pipeline at least once; and its open
	// transaction keeps every record it holds until the commit, acknowledged or not, up to
	// delivery.transaction.max_bytes and one record more: the larger of the two counts, with the
	// pipeline's encodings and reused buffers on top.
	InFlight int64
	// Constant is the process without records (MemoryConstant: Go runtime, binary, clients,
	// metadata, telemetry) and the per-partition state besides records (MemoryPerPartition).
	Constant int64
}

// ConsumerChannelRecords is how many records each sarama partition consumer on the source client
// buffers (sarama's ChannelBufferSize; its default of 256 held 8 MiB per partition of 32 KiB
// records). The data path no longer reads through sarama's consumers (pkg/fetch hands whole
// batches to the ring, counted in Fetch); the control reads that still use sarama's consumer
// (the quiet check, group offset sync, the offset map's and heartbeats' readers) hold at most
// this many records per partition they read.
const ConsumerChannelRecords = 16

// ProducerChannelRecords is how many records each target partition's producer (and each
// topic's) buffers in front of its batch (sarama's ChannelBufferSize); the bound counts them as
// one batch: exact for records up to max_message_bytes / 16.
const ProducerChannelRecords = 16

// PipelineBatches is how many batches of producer.batch_bytes a worker's produce pipeline holds
// at most (at least once): five requests in flight (Kafka's bound with idempotence) and the
// batch being filled.
const PipelineBatches = 6

// EncodingShare is how many times its batches a produce pipeline holds besides them: their
// encodings and the buffers kept for reuse (Memory.InFlight).
const EncodingShare = 2

// MemoryConstant is the memory of a kmirror process holding no records: runtime, binary,
// clients and their buffers, telemetry (measured at 25-60 MiB resident with a few topics).
const MemoryConstant = 64 << 20

// MemoryPerPartition is what each owned source partition adds besides its records: its claim,
// fetch and produce state, the offset tracker's pages and the
// metrics' series (the 10,000-partition runs measured 50-60 KiB of live heap per partition,
// benchmarks/results/scale-2026-12-01.md).
const MemoryPerPartition = 64 << 10

// MemoryBound returns the memory bound of a process owning partitions source partitions.
func (c *Config) MemoryBound(partitions int) Memory {
	p := int64(max(partitions, 0))
	batch := int64(c.Producer.MaxMessageBytes)
	share := max(int64(c.Consumer.FetchPartitionBytes), batch)
	if c.Consumer.DistantRTT > 0 {
		// The source may be distant (measured at start): its partitions are fetched larger.
		share = max(share, min(int64(c.Consumer.DistantFetchPartitionBytes), int64(c.Consumer.FetchMaxBytes)))
	}
	response := min(int64(c.Consumer.mostLanes(partitions))*int64(c.Consumer.FetchMaxBytes), p*share)
	kept := p * 2 * share
	if c.Consumer.MaxHeldBytes > 0 {
		// The loops stop fetching at the bound; the fetches then in flight are still delivered.
		kept = min(kept, c.Consumer.MaxHeldBytes+response)
	}
	return Memory{
		Ring:     int64(c.Ring.Workers) * c.Ring.InboxBytes,
		Fetch:    kept + response,
		InFlight: c.inFlight(p, batch),
		Constant: MemoryConstant + p*MemoryPerPartition,
	}
}

// inFlight is Memory.InFlight for p partitions and record batches of at most batch bytes.
func (c *Config) inFlight(p, batch int64) int64 {
	if c.Delivery.Mode == "exactly_once" {
		// A slot's open transaction keeps every record it holds until it commits (acknowledged or
		// not: a commit that fails sends them again): up to delivery.transaction.max_bytes and
		// the record that reached it.
		batches := PipelineBatches * c.PipelineBatchBytes()
		perSlot := max(batches+batch, c.Delivery.Transaction.MaxBytes+batch) + EncodingShare*batches
		return min(int64(c.Delivery.Slots), p) * perSlot
	}
	return int64(c.Ring.Workers) * ((1+EncodingShare)*PipelineBatches*c.PipelineBatchBytes() + batch)
}

// PipelineBatchBytes is the size of the batches a produce pipeline fills (producer.batch_bytes,
// at most producer.max_message_bytes).
func (c *Config) PipelineBatchBytes() int64 {
	return int64(min(c.Producer.BatchBytes, c.Producer.MaxMessageBytes))
}

// Total is the whole bound in bytes.
func (m Memory) Total() int64 { return m.Ring + m.Fetch + m.InFlight + m.Constant }
