// Package heartbeat owns kmirror's heartbeats: a small record that each flow writes to a topic of
// its own on the SOURCE cluster every heartbeats.interval, and that the flow then mirrors like
// any other record, so that the target always holds a fresh record proving the flow is alive,
// even while every business topic is idle.
//
// Topics. The heartbeat topic of origin O (the cluster where its heartbeats are written) is
// "<heartbeats.topic>.<O>", by default "kmirror.heartbeats.europe"; it never starts with "__",
// since kmirror mirrors no such topic. Its copies on other clusters keep the name (identity
// policy) or get the usual prefixes ("us.kmirror.heartbeats.europe"), so the origin of any
// heartbeat topic is the alias after the last "<heartbeats.topic>." in its name (Origin).
//
// Records. Key "<origin>-><target>" (the flow that emitted it, e.g. "europe->us"); value a JSON
// object {"origin","target","emitted","emitted_ms"} (emitted: RFC 3339 UTC, emitted_ms: Unix
// milliseconds); the record's timestamp is the emit time too. A plain consumer reads it with
// kcat; the topic is compacted, so the last heartbeat of every flow stays there for good.
// MirrorMaker 2's heartbeats carry the same facts (source and target alias, a timestamp) in a
// binary Connect struct, in one "heartbeats" topic per cluster.
//
// Invariant: a flow never sends heartbeats back to the cluster where they originated, so two
// flows europe→us and us→europe (active-active, identity or prefix policy, each its own process)
// never loop. Rule decides per topic, before topics.include/exclude: the flow's own heartbeat
// topic is always mirrored (whatever topics.include says), and a heartbeat topic whose origin is
// the flow's target is never mirrored (its records came from there). Naming topics per origin
// makes that a decision per topic rather than per record: nothing on the data path looks at a
// record, and it holds alike for at-least-once and exactly-once delivery. A heartbeat topic of
// a third origin (a chain a→b→c) follows topics.include/exclude like any topic.
//
// Failures. The Emitter never stops the mirror: a heartbeat that cannot be written (the topic
// cannot be created, the source refuses the write) is counted, logged on the first failure and
// when heartbeats flow again, and the next interval tries again. Silence on the target is what
// the KmirrorHeartbeatMissing alert catches.
package heartbeat
