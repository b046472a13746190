// Package fetch owns kmirror's fetch loops on sarama's protocol layer: the partitions a member is
// given are fetched with sarama's FetchRequest/FetchResponse and RecordBatch codec, one loop per
// source broker (or Config.Lanes loops, each with a share of the broker's partitions: across a
// long round trip one fetch in flight per broker bounds the throughput), and handed to their
// owners a whole batch at a time.
//
// What it guarantees (each point is argued next to the code that keeps it):
//
//   - Order, no gap, no duplicate. A partition's position (the next offset to fetch) moves only
//     when the loop that owns the partition hands a batch to the partition's Sink, and only to one
//     past the last offset that batch covers. A response is delivered only if the partition is
//     still owned by the loop that received it and its position is still the offset the request
//     (or the broker's session) named, so a partition that moved to another loop, was paused,
//     removed or added again never receives stale or repeated records, and the new owner resumes
//     from exactly where the old one stopped.
//   - Whole batches. The records of one partition in one response are delivered in one call, in
//     offset order, with their source offsets, keys, values, headers, timestamps and timestamp
//     type exactly as the broker stored them (null stays null, empty stays empty). There is no
//     per-record channel or call.
//   - read_committed drops what aborted transactions wrote (FetchResponse AbortedTransactions
//     together with the abort markers), never hands a control record to the owner, and still moves
//     the position past both: a batch of no records carries the new position so that the owner
//     can commit past them.
//   - Goroutines grow with brokers, not partitions: one loop per broker and lane that leads (or,
//     with a rack, serves as preferred read replica for) a fetched partition, plus one router that
//     finds leaders; with Config.SessionPartitions a broker that leads more partitions than its
//     loops hold at that many each gets another loop, up to Config.MaxLanes. A partition's lane
//     is chosen when it is routed (a hash of its name, or the broker's least loaded lane), so it
//     stays in one loop while its leader stays: lanes are added, never re-divided. Close waits
//     for all of them.
//   - Fetch sessions (KIP-227): each loop keeps one session with its broker; a request names only
//     partitions that are new or whose position, leader epoch or size limit changed, so an idle
//     fetch names none, and forgets (the forgotten list) those that leave it (paused, full,
//     removed, moved). A session grows by at most maxNewPerFetch partitions per request, so no
//     request asks a broker for thousands of partitions at once; a request waits no longer than
//     its session has gone without growing (the fetch wait is for idle partitions, and while a
//     session grows more partitions are on their way). FETCH_SESSION_ID_NOT_FOUND and
//     INVALID_FETCH_SESSION_EPOCH start a new session.
//   - Bounded in bytes: each request asks for at most Config.MaxBytes and each partition for at
//     most its limit, Config.PartitionMaxBytes at first; a partition whose next batch is larger
//     than its limit (a cut batch in the answer, or nothing though it holds records: brokers
//     return such a batch only for the first partition of a response) gets twice the limit, so
//     a large record still makes progress. The raised limit stays after the batch arrived, up to
//     Config.KeepMaxBytes, so that its next batches come in every response rather than one
//     partition's batch per response.
//   - Backpressure is per partition: a Sink that answers "full" stops the fetching of its
//     partition (until Fetcher.Ready) and of no other, until the full sinks of a group (Grouped:
//     the partitions of one inbox) together hold Config.MaxHeldBytes (what was delivered to them
//     since they answered full): then none of the group's partitions is fetched until a Ready or
//     Remove brings them under it, so what they hold does not grow with the partitions (a fetch
//     already in flight is still delivered); other groups go on.
//   - OFFSET_OUT_OF_RANGE is never resolved here: the partition stops and its Sink receives an
//     *OutOfRangeError naming the offset and the log's start and end; the owner's source-loss
//     policy decides where to start again.
//   - Leader changes (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
//     network errors, …) send the partition back to the router, which refreshes metadata and
//     hands it to the new leader's loop at the same position. The current leader epoch is sent
//     (KIP-320) so that a stale leader refuses instead of serving.
//   - With a rack (Config.Rack, by default sarama's Config.RackID, i.e. client.rack), a leader
//     that names a preferred read replica (KIP-392) is followed; any error on the replica sends
//     the partition back to the leader.
//
// Limits of sarama v1.61.1's protocol layer, accepted here:
//
//   - sarama v1.61.1 encodes the forgotten list but has no setter for it: setForgotten fills
//     the unexported field, guarded, and falls back to a new session on a sarama without it.
//   - sarama sends lastFetchedEpoch -1 and has no OffsetForLeaderEpoch request, so a log
//     truncated by an unclean leader election is seen only when the position lies past the new
//     log end (OFFSET_OUT_OF_RANGE, reported as above), not when new records were already
//     written over the truncated range (sarama's own consumer has the same blind spot).
//   - sarama drops a record batch with no records (compaction keeps such batches for producer
//     state) without telling where it ends; a partition whose position is at one that ends the
//     log makes no progress until a record is written after it.
//   - A fetch in flight cannot be aborted: Close waits for it (at most MaxWait and the answer).
//
// What it must never do: reset a position on its own, deliver a record twice or out of order,
// deliver anything for a partition after Remove or Pause returned, or block one partition
// behind another group's full sinks, or behind its own group's while they hold less than
// Config.MaxHeldBytes.
package fetch
