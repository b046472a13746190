// Package produce owns kmirror's idempotent produce pipeline on sarama's protocol layer: records
// of a partition are batched into sarama.RecordBatch values stamped with one producer id, its
// epoch and per-partition sequence numbers, and sent with Broker.AsyncProduce, up to
// MaxInFlight (5, Kafka's bound with idempotence) requests at a time per target broker, acks=all.
// Each acknowledgement returns the target offset of every record (base offset + position).
//
// It must never write a partition's records to the target out of the order they were produced
// in, never report a record acknowledged that the target did not acknowledge, and never send
// anything of a partition after one of its batches failed for good (or after Abort).
//
// Why order is kept, whatever is retried or in flight. State per partition lives under the
// pipeline's one mutex; each claim below is checked there.
//
//  1. A partition's batches form a queue; batches[:sent] have been handed to a request in the
//     current round, the rest not yet. A request carries at most one batch of a partition, and a
//     partition's requests go to one broker connection (its sink), which sarama writes and
//     answers in order (Broker.AsyncProduce pipelines on one connection, responses are read in
//     correlation order). So the broker receives a partition's batches in queue order, and its
//     answers come back in that order too.
//  2. A batch's sequence (FirstSequence) is given when it is first sent, from the partition's
//     counter, so sequences follow queue order; the broker appends a batch only if its
//     sequence follows the last one it appended for this producer id and epoch. Nothing can be
//     written out of order even when five requests are in flight. The broker has that last one
//     only once it appended a batch of the producer id and epoch to the partition: before,
//     brokers before Kafka 4.5 take any sequence (KAFKA-15591), so a later batch that reached
//     the log first would be written and the earlier one refused. So a partition sends its
//     first batch under a producer id and epoch alone, and more only once it is acknowledged
//     (TestAPartitionsFirstBatchGoesAlone).
//  3. Only the answer for the queue's first batch is acted on. An answer for a later batch when
//     the first has not been settled means the first failed in this round: the later batch is
//     sent again after it (the broker answers a batch it already holds, one of the last five of
//     the producer, with its original offset, or DUPLICATE_SEQUENCE_NUMBER, which is success).
//     This is why OUT_OF_ORDER_SEQUENCE_NUMBER behind a retried batch is expected and retried.
//  4. On a retriable failure of the first batch (NOT_LEADER_OR_FOLLOWER, a timeout, a broken
//     connection, ...) the partition stops sending (rewind) until nothing of it is in flight;
//     then, after a growing pause and, for leadership errors, a metadata refresh that may move
//     it to another broker's sink, it sends its queue again from the first batch with the same
//     sequences. A partition changes sink only with nothing in flight, so (1) holds across
//     leader moves. After a retry the first request goes alone, and pipelining resumes at its
//     first acknowledgement.
//  5. OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the first batch (nothing before it
//     unsettled: the broker lost our state, e.g. the producer id expired) asks for an epoch bump
//     (KIP-360: InitProducerId with the current id and epoch). The whole pipeline then stops
//     sending; once no request is in flight anywhere, the epoch is bumped (or, on brokers
//     before 2.5, a new producer id taken) and every partition numbers its queue from 0 under
//     the new epoch, still in queue order. A batch written under the old epoch whose answer was
//     lost is then written again: a duplicate, never a reorder.
//  6. A non-retriable failure of the first batch (MESSAGE_TOO_LARGE, INVALID_TIMESTAMP,
//     INVALID_RECORD, RECORD_LIST_TOO_LARGE, authorization, ...) fails it and every later
//     batch of the partition, in flight or not; later batches in flight cannot be written (their
//     sequences do not follow), and nothing more of the partition is sent until nothing of it
//     is in flight, so a record produced after the failure was reported starts a new queue at
//     the failed batch's sequence.
//  7. A partition whose first batch has waited longer than DeliveryTimeout, with nothing in
//     flight, fails its whole queue with ErrDeliveryTimeout.
//
// Abort fails everything the pipeline holds at once and closes its connections; a request
// already being written when Abort ran may still reach the broker (the caller resends what came
// back only after the pipeline has closed).
//
// Cost grows with the partitions that hold records, not with all the pipeline has seen: the
// control loop and each sink look only at partitions holding a batch (Pipeline.busy and
// sink.parts, kept as batches are queued and settled), and the control loop ticks only while
// there are some, so thousands of idle partitions cost nothing.
//
// Outcomes are delivered by one goroutine, in the order they were settled, so a partition's
// records come back in order.
//
// Memory: besides the records it holds (MaxBufferedBytes), a pipeline holds their encodings and
// the slices and encoding buffers acknowledged batches left for later ones, at most twice
// MaxBufferedBytes together (spares.go). Only an acknowledged batch leaves anything: a failed or
// aborted one may still be in a request being encoded.
//
// # Transactions
//
// A Txn (txn.go) runs the same pipeline under a transactional id: InitProducerId with the id
// fences every older producer of it; batches are marked transactional; a partition sends
// nothing of a transaction before AddPartitionsToTxn added it (the partitions waiting are added
// together); Commit flushes, adds the positions (AddOffsetsToTxn, then TxnOffsetCommit to the
// group's coordinator) and ends with EndTxn. SendPositions sends the positions before the flush,
// while batches are in flight, as Kafka's sendOffsetsToTransaction does (only once a partition
// was added: before that, Commit sends them after its flush, where an expired producer id can
// still be taken again); Commit then waits for them, and an abort waits for them too. Errors are sorted as Kafka's TransactionManager
// does: fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH), unauthorized or unexpected answers of
// the coordinators are fatal (ErrTxnFatal: the caller stops); CONCURRENT_TRANSACTIONS,
// COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR and broken connections are retried after a
// growing pause; a batch the target refused or did not acknowledge in time makes the
// transaction abortable (ErrTxnAborted: it is aborted and the caller resends from its
// positions), and the epoch is bumped after that abort (KIP-360) so that sequences restart.
//
//  8. A transaction commits only when every batch produced in it was acknowledged and its
//     positions were added: Commit waits for every record's outcome, and any failure, or
//     any failed request before EndTxn, turns the commit into an abort.
//  9. Nothing of a transaction is reported to Done before it ended: its records are reported
//     acknowledged only after EndTxn(commit) succeeded, and failed when it was aborted, when
//     the producer failed for good, or when the commit's answer was lost (its outcome is
//     then unknown, which is fatal: the next producer of the id completes it).
package produce
