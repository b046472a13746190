// Package group owns kmirror's membership in the source cluster's consumer group, on sarama's
// protocol layer (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetFetch,
// OffsetCommit) instead of sarama's ConsumerGroup, so that a rebalance does not stop the world:
// the assignment is kmirror's slot strategy (pkg/slots) run with the incremental cooperative
// protocol of KIP-429.
//
// It must never let two members own a partition at once, and never take a partition from a
// member that keeps it.
//
// # Invariant
//
// A partition is handed to a member's Handler.Assigned only after every other member that owned
// it has returned from Handler.Revoked for it (or lost it: its session expired, so the
// coordinator removed it and it was told Lost before its heartbeats could have stopped longer
// than the session timeout). A partition that stays with a member across a rebalance is neither
// revoked nor assigned again: the member keeps it, and its records keep flowing through the
// rebalance.
//
// # Why it holds (the cooperative protocol, KIP-429)
//
// Every member announces in its JoinGroup subscription the partitions it owns
// (ConsumerProtocolSubscription v1 OwnedPartitions) and, in the user data, the slots they belong
// to with the generation it got them in (the user data pkg/slots reads back for stickiness). The
// leader runs the slot plan over the subscriptions and then withholds from every member each
// partition that another member still claims, and each partition of a slot any of whose
// partitions another member claims (unless the member claims that partition itself): a slot
// moves whole, and its new owner never shares it with the old one. So no assignment of a
// generation gives a member a partition that some other member announced it owns.
//
// Each member compares its assignment with what it owns: a partition it owns that the
// assignment lacks is revoked (Handler.Revoked returns once it is drained and committed), a
// partition it did not own is added. A member that revoked something rejoins at once, now
// announcing it no longer owns it, and the next generation hands the withheld partitions out.
// A member that was not told to give anything up keeps what it has through the rebalance: it
// goes on writing while it rejoins.
//
// A member that is no longer part of the group cannot announce anything any more, and the
// leader may hand its partitions to others at once. That is why a member that is told
// UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION, or FENCED_INSTANCE_ID, or whose heartbeats have not
// reached the coordinator for a session timeout, calls Handler.Lost before anything else: its
// partitions are gone, and it must stop writing them and must not commit them.
//
// # Upgrades from the eager protocol
//
// A member offers the cooperative protocol (CooperativeProtocol) first and, unless it owns
// partitions in a cooperative generation, the eager slot strategy (slots.Strategy.Name, which
// kmirror's sarama ConsumerGroup announced in exactly_once) second and the previous release's
// strategy (Config.Previous: sarama's sticky, range or roundrobin, which it announced in
// at_least_once) last, with the user data that strategy decodes. The coordinator picks a
// protocol every member offers, so a group with an eager member in it runs eager: then the
// member revokes everything before every join, as the eager protocol requires, nothing is
// withheld, and a member that leads plans with that protocol's own strategy (sarama's, for the
// previous release's), so the old members get assignments they decode and accept. Once the last
// eager member is gone, the group picks the cooperative protocol at its next rebalance (safe: in
// that rebalance every member had given up everything). A group never goes back from
// cooperative to eager while a member owns something under the cooperative protocol, since that
// member does not offer eager: an eager member joining then is refused
// (INCONSISTENT_GROUP_PROTOCOL), or, if it got in first, the cooperative member is refused on
// its next join and Run returns that error after Handler.Lost; nobody owns a partition twice
// either way.
//
// # Limits
//
// sarama's requests take no context: a JoinGroup can wait for the whole rebalance (up to the
// rebalance timeout), bounded by the client's Net.ReadTimeout, and a Close waits for it. A
// static member (group.instance.id) that restarts within the session timeout gets its partitions
// back without a rebalance, except the group's leader: sarama's JoinGroup v8 has no
// SkipAssignment (KIP-814), so the coordinator rebalances when the leader rejoins.
package group
