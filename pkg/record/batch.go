package record

// Batch is the unit a worker's inbox carries: records of one source partition, in offset order,
// as the source registered them with the partition's tracker (their sequence numbers follow one
// another). One fetched batch becomes one Batch, or several when the partition's in-flight window
// had room for part of it only; a worker handles a Batch's records in order, so the partition's
// order survives the hand-off.
type Batch struct {
	Records []*Record
	// Size is the sum of the records' Size: what the inbox's byte bound counts.
	Size int64
}
