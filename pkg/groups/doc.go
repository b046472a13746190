// Package groups syncs consumer groups' positions from the source cluster to the target (the group
// offset sync). For each source group it is told to sync, it reads the group's committed offsets on
// mirrored topics, translates each through the offset map (package offsetmap) into the target
// offset where the group resumes, and commits those to the group of the same id on the target, so
// that consumers moved to the target (a failover, a migration) read on with nothing skipped and
// nothing read twice.
//
// It must never move a target group's committed offset backwards (unless Config.Force), never
// commit anything for a group that has active members on the target (it reports the group
// instead: the members own its offsets), nor for one whose offsets changed since kmirror last
// wrote them (another client commits there without joining the group, as Flink and Spark do:
// those offsets are that client's; unless Config.Force), never commit a position that is not an Exact
// translation (a position not yet mirrored, or unknown to the map, is reported, never guessed),
// and never sync kmirror's own consumer group.
//
// Why that holds. Apply reads the target group's state and committed offsets again right before
// committing, and decides every partition on what it just read: a partition is committed only
// when its translation is Exact and the target's committed offset is below it. The commit is an
// admin commit (generation -1, no member id, as kafka-consumer-groups --reset-offsets sends): the
// coordinator accepts it only while the group has no members, so a consumer that joined after
// the re-read makes it answer UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION for the whole request, and
// nothing is committed. The one case it cannot see is a consumer that joins, commits further and
// leaves again between the re-read and the commit, a window of one round trip. kmirror's own group
// is refused by name in Plan and Apply, whatever the caller passes.
//
// Plan and Apply take any group but kmirror's own: Include and Exclude choose what Round (the
// daemon) syncs, while a caller naming a group (the failover command) has chosen it already.
// The only state a Syncer keeps between calls is what it last wrote to each target partition
// (others.go), to see another client's commits; it is safe for concurrent use.
package groups
