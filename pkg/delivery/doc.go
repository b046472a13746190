// Package delivery owns the target side of exactly-once delivery: one transactional producer per
// slot (pkg/slots), the transactions that carry a slot's records together with the source
// positions they reach, and reading those positions back when a member claims a slot.
//
// It must never store a source position on the target except in the transaction that holds
// the records before it (so a position and its records are committed, or aborted, together),
// and must never read a slot's positions before its producer has fenced the slot's previous
// owner (InitProducerId for the slot's transactional id).
//
// # Why a read_committed consumer of the target sees each source record once
//
// Every write for a source partition p is made in a transaction of the producer for slot
// Of(p), and every such transaction also commits, to Positions (a group on the target), the
// source offset after the last record of p it holds. When a member claims p it first opens the
// slot's producer — InitProducerId completes or aborts whatever the id's previous holder left
// open, and fences that holder (pkg/slots's package doc has the argument) — and only then reads
// p's position with RequireStable, which waits until no transaction holding an offset commit for
// p is pending. That position is exactly where the last committed transaction for p ended: the
// records before it are committed on the target once each (each committed transaction starts
// where the previous one ended), the records after it are not (an aborted or fenced transaction
// is invisible to read_committed). The member resumes p there, so the next committed
// transaction continues without a gap or an overlap.
//
// A transaction that fails (a record the target refused, retries exhausted, the producer
// fenced) is aborted; its records' partitions stop and the mirror exits non-zero, to resume
// from the stored positions. Nothing committed is lost and nothing aborted is visible.
//
// # The producer
//
// A slot's producer is kmirror's produce pipeline under the slot's transactional id
// (produce.Txn, opened by Config.Open): up to five requests in flight per target broker within
// a transaction, sequences per partition, a partition's batches sent only once it was added to
// the transaction. A commit sends the positions into the transaction first (SendPositions:
// AddOffsetsToTxn, TxnOffsetCommit, while the last batches are still in flight; they become
// visible only with the commit), then waits until the target acknowledged every record (Flush:
// each record then carries its target offset, for the offset map written before the
// transaction ends), and ends the transaction (EndTxn) only once the map is written and the
// positions were added. A transactional id the target expired while its slot was idle
// (transactional.id.expiration.ms) is taken again by the producer before the next transaction
// starts, with the producer id and epoch it held (KIP-360), so a zombie is still fenced rather
// than handed the id.
//
// A record kmirror does not write (Skip: come from the target, or refused and skipped) is held in
// the transaction like a record sent, and reported done only once the transaction has
// committed: its claim cannot drain, nor the next session close the slot's producer, while the
// transaction that moves its position is open.
//
// # Positions
//
// A position is stored under the target topic's name and the partition number (kmirror keeps
// partition numbers), with the source topic ID in the offset's metadata so that a re-created
// source topic is recognised, exactly as the at-least-once mode stores it on the source.
//
// A partition with no position in Positions (the group's name before it carried the source
// alias, a switch from at-least-once, or an offset the target expired) is looked up in the
// former group, then in the source group (Config.Recover), logged and counted; every position
// found is committed again in the slot's producer at once, and again whenever it has not been
// for Config.Refresh (keep.go), so that the target never expires it.
package delivery
