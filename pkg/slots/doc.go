// Package slots owns the unit of assignment of the exactly-once mode: the slot. A fixed,
// configured number of slots partitions the source's partitions by a stable hash (Of); each slot
// has one transactional id on the target (TransactionalID), and the source consumer group's
// assignment (Strategy, a sarama.BalanceStrategy) hands out slots, not partitions.
//
// It must never give a slot's partitions to two members in one plan while some member subscribes
// to all of the slot's topics, and Of must never change: not between members, not across
// kmirror versions.
//
// # Invariant
//
// In every generation of the source group, all partitions of a slot are assigned to one member
// (WholeSlots checks a plan), and every write for a source partition p is made in a transaction
// of the producer whose transactional id is TransactionalID(prefix, Of(p)), together with p's
// source position, stored on the target.
//
// # Why that fences a zombie
//
// Kafka's guarantee per transactional id: InitProducerId bumps the id's producer epoch; it
// answers only once the id's previous transaction is complete, aborting it if it was still open
// (a commit already requested completes as a commit). From then on the coordinator and the
// partition leaders refuse the older epoch (AddPartitionsToTxn, Produce, TxnOffsetCommit, EndTxn
// answer PRODUCER_FENCED or INVALID_PRODUCER_EPOCH). So every commit under an id was made before
// the latest InitProducerId for it, or by the producer that made that call.
//
// What the owner of a slot must do (the exactly-once writer's side of the contract): call
// InitProducerId for the slot's id before it reads the slot's stored positions (read_committed)
// and before it writes anything for the slot's partitions, and write each partition only in a
// transaction of that id, with the partition's new position in the same transaction.
//
// Take member A owning slot s in generation g, frozen (SIGSTOP, a long GC pause, a partitioned
// network) for longer than its session timeout. The coordinator drops A and the next generation
// gives s — all of it, by the invariant — to member B. B calls InitProducerId for
// TransactionalID(prefix, s): A's open transaction, if any, is aborted with everything it had
// written. When A wakes it still believes it owns s, but each of its produce and commit calls
// fails, so it can commit neither a record nor a position for any partition of s. B reads the
// positions after the fence, so they are exactly those of A's last committed transaction, and it
// resumes right after it: nothing is lost and nothing committed twice.
//
// Whole slots are what make the one fence enough. Were slot s split between B and C, both would
// have to use the slot's id and would fence each other at every InitProducerId; were ids per
// member instead of per slot, B's InitProducerId would not fence A at all, and A could commit
// records of a partition that B is already writing.
//
// # Why two members never write one partition in committed transactions
//
// A partition p belongs to exactly one slot, Of(p), the same on every member: the hash is fixed,
// and the slot count is part of the group protocol name (Strategy.Name), so a member configured
// with another count is refused by the coordinator rather than deriving other ids. Every
// committed write for p is therefore a committed transaction of the one id
// T = TransactionalID(prefix, Of(p)). Committed transactions of T come from one epoch at a
// time, and an epoch begins (InitProducerId) only after every transaction of the previous one
// is committed or aborted. So the committed transactions for p form one sequence whose writers
// take turns, each after fencing the one before; no committed transaction of one member
// interleaves with another's, and the later reads the position the earlier committed.
//
// # Limits
//
// The invariant needs every member subscribed to all the topics of a slot it may get. Members
// whose subscriptions differ still get whole slots wherever some member subscribes to all of a
// slot's topics; a slot no member can take whole is split per topic, and such a plan is
// returned anyway (a consumer group must assign every partition it can). WholeSlots reports it:
// a caller that relies on fencing must refuse to write transactionally while it does. Balance
// (slot counts differing by at most one) is guaranteed when subscriptions are alike and best
// effort otherwise.
//
// Partitions added to a topic fall into slots by the same hash; a plan gives them to their
// slot's owner (who already holds the slot's id), or, if the slot was empty until then, hands
// the slot out like any other. Partitions of a slot
// can be very uneven in number when topics are few and small: balance is by slot count, not by
// partitions or bytes.
package slots
