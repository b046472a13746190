// Package migrate takes a MirrorMaker 2 deployment over to kmirror: it reads MirrorMaker 2's
// configuration (an mm2.properties for dedicated mode, or a Strimzi KafkaMirrorMaker2 resource),
// maps every setting it can onto kmirror's configuration and says, one note per setting, what has
// no equivalent or was approximated (Map); and it reads where MirrorMaker 2 stopped — the source
// offsets its MirrorSourceConnector stored in the Kafka Connect offsets topic — and commits them
// as the starting positions of kmirror's consumer group on the source (ReadOffsetsTopic, PlanSeed,
// Seed), so that kmirror continues where MirrorMaker 2 stopped instead of copying everything again
// or leaving a gap.
//
// Its invariant: it never seeds a position beyond what MirrorMaker 2 copied. A position is the
// offset after the last one MirrorMaker 2's Connect framework recorded as written to the target
// (Connect records a source offset only once the target acknowledged that record), so kmirror may
// copy again what MirrorMaker 2 copied after its last offset flush (duplicates, bounded by the
// flush interval), but never skips a record. A position beyond the source partition's end (the
// topic was recreated, or the offsets belong to another cluster) is refused, not clamped; a
// partition MirrorMaker 2 never recorded is left alone (kmirror starts it at
// consumer.initial_offset). It never moves a group that already has committed offsets unless
// told to (force), and never one with members. The seeded source group is what both delivery
// modes read (exactly_once for a partition its positions groups on the target hold nothing of),
// so it refuses, unless forced, to seed while those groups hold a position of a seeded partition:
// forced, it deletes them first.
package migrate
