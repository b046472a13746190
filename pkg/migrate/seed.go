package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/topics"
)

// Row is one source partition of a seed plan.
type Row struct {
	Topic       string
	Partition   int32
	TargetTopic string
	// Copied is MirrorMaker 2's last copied offset, -1 if it recorded none.
	Copied int64
	// Seed is the offset committed for kmirror's group, -1 when the partition is not seeded.
	Seed int64
	// Start and End are the source partition's log start and end offsets.
	Start, End int64
	// Note says what kmirror will do differently from continuing at Seed, if anything.
	Note string
}

// Plan is what Seed commits: kmirror's group and, per source partition of the topics MirrorMaker 2
// copied, the position taken from it.
type Plan struct {
	Group string
	Rows  []Row
	// Skipped says, per topic MirrorMaker 2 copied that kmirror will not seed, why.
	Skipped []string
	// Committed holds the offsets the group already has on the source (any topic), and Members
	// its members: Seed refuses a group with either (the former unless forced).
	Committed map[source.TopicPartition]int64
	Members   int
	State     string
	// Stale holds the positions that the groups on the target an exactly_once mirror reads
	// before the source group (delivery's positions group, then its former name) already hold
	// for the seeded partitions, left by an earlier exactly_once run: such a mirror would resume
	// there, not at the seed.
	Stale []StalePosition
	// Unread names the positions groups the target user may not read (an at_least_once
	// deployment needs no ACL on them): not checked, said so.
	Unread []string
}

// StalePosition is a position of a seeded partition found in a positions group on the target.
type StalePosition struct {
	Group     string
	Topic     string // the target topic, under which the positions are stored
	Partition int32
	Offset    int64
}

func (p StalePosition) String() string {
	return fmt.Sprintf("%s/%d at %d", p.Topic, p.Partition, p.Offset)
}

// PlanSeed decides the position of each source partition from MirrorMaker 2's positions and the
// kmirror configuration cfg (its topic filter, naming and group), reading the source through src,
// and reads the positions groups of exactly_once on the target through tgt (Plan.Stale).
// It refuses (an error, nothing planned) a position beyond its partition's end: the invariant is
// never to seed a position beyond what MirrorMaker 2 copied, and such a position cannot be one.
//
// Both delivery modes read the seeded source group: at_least_once always, exactly_once for a
// partition its positions group on the target (and that group's former name) has no position of
// (pkg/delivery's Slots.Positions), which is what Seed makes sure of.
func PlanSeed(ctx context.Context, src, tgt sarama.Client, cfg *config.Config, positions []Position) (*Plan, error) {
	filter, err := topics.NewFilter(cfg.Topics.Include, cfg.Topics.Exclude)
	if err != nil {
		return nil, err
	}
	namer, err := topics.NewNamer(cfg.Topics.ReplicationPolicy, cfg.Source.Alias)
	if err != nil {
		return nil, err
	}
	if err := src.RefreshMetadata(); err != nil {
		return nil, fmt.Errorf("read the source's topics: %w", err)
	}
	existing, err := src.Topics()
	if err != nil {
		return nil, fmt.Errorf("read the source's topics: %w", err)
	}
	onSource := map[string]bool{}
	for _, t := range existing {
		onSource[t] = true
	}
	plan := &Plan{Group: cfg.Consumer.GroupID, Committed: map[source.TopicPartition]int64{}}
	byTopic := map[string]map[int32]Position{}
	for _, p := range positions {
		switch {
		case !onSource[p.Topic]:
			plan.Skipped = append(plan.Skipped, fmt.Sprintf("%s/%d: MirrorMaker 2 copied it up to offset %d, but the topic is no longer on the source", p.Topic, p.Partition, p.Copied))
		case !filter.Match(p.Topic):
			plan.Skipped = append(plan.Skipped, fmt.Sprintf("%s/%d: MirrorMaker 2 copied it, but topics.include/exclude do not mirror it", p.Topic, p.Partition))
		default:
			if byTopic[p.Topic] == nil {
				byTopic[p.Topic] = map[int32]Position{}
			}
			byTopic[p.Topic][p.Partition] = p
		}
	}
	claims := map[string][]int32{}
	for t := range byTopic {
		parts, err := src.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("read the partitions of source topic %q: %w", t, err)
		}
		claims[t] = parts
	}
	cl := source.ClientCluster{Client: src}
	bounds, err := cl.Bounds(claims)
	if err != nil {
		return nil, fmt.Errorf("read the source's offsets: %w", err)
	}
	var beyond []string
	for t, parts := range claims {
		for _, p := range parts {
			b := bounds[source.TopicPartition{Topic: t, Partition: p}]
			row := Row{Topic: t, Partition: p, TargetTopic: namer(t), Copied: -1, Seed: -1, Start: b.Start, End: b.End}
			pos, ok := byTopic[t][p]
			switch {
			case !ok:
				row.Note = "no MirrorMaker 2 position: not seeded, kmirror starts at consumer.initial_offset (" + cfg.Consumer.InitialOffset + ")"
			case pos.Next > b.End:
				beyond = append(beyond, fmt.Sprintf("%s/%d: MirrorMaker 2 copied up to offset %d, the source partition ends at %d", t, p, pos.Copied, b.End))
			default:
				row.Copied, row.Seed = pos.Copied, pos.Next
				if pos.Next < b.Start {
					row.Note = fmt.Sprintf("offsets %d-%d were deleted from the source before MirrorMaker 2 copied them: kmirror's consumer.source_loss_policy (%s) decides",
						pos.Next, b.Start-1, cfg.Consumer.SourceLossPolicy)
				}
			}
			plan.Rows = append(plan.Rows, row)
		}
	}
	if len(beyond) > 0 {
		sort.Strings(beyond)
		return nil, fmt.Errorf("refusing to seed: MirrorMaker 2's positions lie beyond the source's end for %s (the topic was recreated since, "+
			"or the offsets topic belongs to another source cluster); nothing was seeded", strings.Join(beyond, "; "))
	}
	sort.Slice(plan.Rows, func(i, j int) bool {
		if plan.Rows[i].Topic != plan.Rows[j].Topic {
			return plan.Rows[i].Topic < plan.Rows[j].Topic
		}
		return plan.Rows[i].Partition < plan.Rows[j].Partition
	})
	sort.Strings(plan.Skipped)
	if err := plan.readGroup(src); err != nil {
		return nil, err
	}
	return plan, plan.readPositions(tgt, cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias), cfg.Delivery.LegacyPositions(cfg.Consumer.GroupID))
}

// readPositions reads, from each positions group exactly_once reads on the target, the
// positions it holds of the planned partitions (under their target names) into p.Stale.
func (p *Plan) readPositions(tgt sarama.Client, groups ...string) error {
	byTarget := map[string][]int32{}
	for _, r := range p.Rows {
		if r.Seed >= 0 {
			byTarget[r.TargetTopic] = append(byTarget[r.TargetTopic], r.Partition)
		}
	}
	if len(byTarget) == 0 {
		return nil
	}
	admin, err := sarama.NewClusterAdminFromClient(tgt)
	if err != nil {
		return fmt.Errorf("open an admin client of the target: %w", err)
	}
	// Not closed: closing it would close tgt, which the caller owns.
	for i, g := range groups {
		if g == "" || slices.Contains(groups[:i], g) {
			continue
		}
		resp, err := admin.ListConsumerGroupOffsets(g, byTarget)
		if errors.Is(err, sarama.ErrGroupIDNotFound) {
			continue
		}
		if errors.Is(err, sarama.ErrGroupAuthorizationFailed) {
			p.Unread = append(p.Unread, g)
			continue
		}
		if err != nil {
			return fmt.Errorf("read the exactly_once positions group %q on the target: %w", g, err)
		}
		for t, parts := range resp.Blocks {
			for part, b := range parts {
				if b != nil && b.Offset >= 0 && errors.Is(b.Err, sarama.ErrNoError) {
					p.Stale = append(p.Stale, StalePosition{Group: g, Topic: t, Partition: part, Offset: b.Offset})
				}
			}
		}
	}
	sort.Slice(p.Stale, func(i, j int) bool {
		a, b := p.Stale[i], p.Stale[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return nil
}

// StaleError says why a seed is refused while the target holds exactly_once positions of an
// earlier run, and the fix; nil when there is nothing to refuse. It refuses in at_least_once
// too: that mode does not read them, but a later switch to exactly_once would, and would resume
// there (before the seed: records copied again; past it: records never copied).
func (p *Plan) StaleError() error {
	if len(p.Stale) == 0 {
		return nil
	}
	byGroup := map[string][]string{}
	var groups []string
	for _, s := range p.Stale {
		if byGroup[s.Group] == nil {
			groups = append(groups, s.Group)
		}
		byGroup[s.Group] = append(byGroup[s.Group], s.String())
	}
	var parts []string
	for _, g := range groups {
		parts = append(parts, fmt.Sprintf("positions group %q on the target holds %s", g, strings.Join(byGroup[g], ", ")))
	}
	return fmt.Errorf("delivery.mode exactly_once (now, or after a switch) resumes a partition from its positions on the target before "+
		"the source group migrate seeds, and %s, of an earlier kmirror run: it would resume there, not where MirrorMaker 2 stopped; nothing was seeded: "+
		"delete them (kafka-consumer-groups.sh --bootstrap-server <target> --group <group> --delete-offsets --topic <topic>), "+
		"or seed with --force, which deletes them", strings.Join(parts, "; "))
}

// readGroup reads the group's committed offsets (all topics), members and state on the source.
func (p *Plan) readGroup(src sarama.Client) error {
	admin, err := sarama.NewClusterAdminFromClient(src)
	if err != nil {
		return fmt.Errorf("open an admin client of the source: %w", err)
	}
	// Not closed: closing it would close src, which the caller owns.
	desc, err := admin.DescribeConsumerGroups([]string{p.Group})
	if err != nil {
		return fmt.Errorf("describe group %q on the source: %w", p.Group, err)
	}
	if len(desc) == 1 {
		p.State, p.Members = desc[0].State, len(desc[0].Members)
	}
	resp, err := admin.ListConsumerGroupOffsets(p.Group, nil)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return nil // a group never used: nothing committed (Kafka answers with none, some brokers with this)
	}
	if err != nil {
		return fmt.Errorf("read the committed offsets of group %q on the source: %w", p.Group, err)
	}
	for t, parts := range resp.Blocks {
		for part, b := range parts {
			if b != nil && b.Offset >= 0 && errors.Is(b.Err, sarama.ErrNoError) {
				p.Committed[source.TopicPartition{Topic: t, Partition: part}] = b.Offset
			}
		}
	}
	return nil
}

// commitAttempts bounds the retries of a commit that meets a moving coordinator.
const commitAttempts = 5

// Seed commits the plan's positions for its group on the source, as an admin commit (no member,
// generation -1), then reads them back. It refuses a group with members (kmirror, or anything
// else, running in it) and, unless force, a group that already has committed offsets.
//
// It refuses, unless force, when a positions group of exactly_once on the target holds a
// position of a seeded partition (Plan.Stale: exactly_once, now or after a switch, would resume
// there, not at the seed); forced, it deletes those positions first, so that the seed is what
// either mode reads.
func Seed(ctx context.Context, src, tgt sarama.Client, plan *Plan, force bool) error {
	if plan.Members > 0 {
		return fmt.Errorf("group %q has %d member(s) on the source (state %s): stop every kmirror of the group before seeding it", plan.Group, plan.Members, plan.State)
	}
	if err := plan.StaleError(); err != nil {
		if !force {
			return err
		}
		if err := deletePositions(tgt, plan.Stale); err != nil {
			return err
		}
	}
	if len(plan.Committed) > 0 && !force {
		return fmt.Errorf("group %q already has committed offsets on the source for %d partition(s) (%s): kmirror has run with it; "+
			"nothing was seeded (--force overwrites them with MirrorMaker 2's positions)", plan.Group, len(plan.Committed), firstCommitted(plan.Committed))
	}
	claims := map[string][]int32{}
	build := func() *sarama.OffsetCommitRequest {
		req := sarama.NewOffsetCommitRequest(src.Config(), plan.Group)
		req.ConsumerGroupGeneration = sarama.GroupGenerationUndefined
		req.ConsumerID = ""
		for _, r := range plan.Rows {
			if r.Seed >= 0 {
				req.AddBlockWithLeaderEpoch(r.Topic, r.Partition, r.Seed, -1, sarama.ReceiveTime,
					fmt.Sprintf("seeded by kmirror migrate mm2: MirrorMaker 2 copied up to offset %d", r.Copied))
			}
		}
		return req
	}
	for _, r := range plan.Rows {
		if r.Seed >= 0 {
			claims[r.Topic] = append(claims[r.Topic], r.Partition)
		}
	}
	if len(claims) == 0 {
		return fmt.Errorf("no partition to seed: MirrorMaker 2 recorded no position for the topics kmirror mirrors")
	}
	coord := offsets.ClientCoordinator{Client: src, Group: plan.Group}
	for attempt := 1; ; attempt++ {
		resp, err := coord.CommitOffset(build())
		if err == nil {
			err = commitErrors(resp)
		}
		if err == nil {
			break
		}
		if attempt == commitAttempts {
			return fmt.Errorf("commit the seeded offsets of group %q: %w", plan.Group, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("commit the seeded offsets of group %q: %w", plan.Group, context.Cause(ctx))
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
	got, err := source.ClientCluster{Client: src}.Committed(plan.Group, claims)
	if err != nil {
		return fmt.Errorf("read back the seeded offsets: %w", err)
	}
	for _, r := range plan.Rows {
		if r.Seed < 0 {
			continue
		}
		if c := got[source.TopicPartition{Topic: r.Topic, Partition: r.Partition}]; c.Offset != r.Seed {
			return fmt.Errorf("read back group %q: %s/%d holds %d, not the seeded %d", plan.Group, r.Topic, r.Partition, c.Offset, r.Seed)
		}
	}
	return nil
}

// deletePositions deletes the stale positions from their groups on the target (OffsetDelete: the
// positions groups have no members).
func deletePositions(tgt sarama.Client, stale []StalePosition) error {
	admin, err := sarama.NewClusterAdminFromClient(tgt)
	if err != nil {
		return fmt.Errorf("open an admin client of the target: %w", err)
	}
	for _, s := range stale {
		if err := admin.DeleteConsumerGroupOffset(s.Group, s.Topic, s.Partition); err != nil {
			return fmt.Errorf("delete the position %s of group %q on the target (--force): %w", s, s.Group, err)
		}
	}
	return nil
}

func commitErrors(resp *sarama.OffsetCommitResponse) error {
	var bad []string
	for t, parts := range resp.Errors {
		for p, kerr := range parts {
			if !errors.Is(kerr, sarama.ErrNoError) {
				bad = append(bad, fmt.Sprintf("%s/%d: %v", t, p, kerr))
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

func firstCommitted(c map[source.TopicPartition]int64) string {
	keys := make([]source.TopicPartition, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Topic != keys[j].Topic {
			return keys[i].Topic < keys[j].Topic
		}
		return keys[i].Partition < keys[j].Partition
	})
	var out []string
	for i, k := range keys {
		if i == 3 {
			out = append(out, fmt.Sprintf("and %d more", len(keys)-3))
			break
		}
		out = append(out, fmt.Sprintf("%s/%d at %d", k.Topic, k.Partition, c[k]))
	}
	return strings.Join(out, ", ")
}
