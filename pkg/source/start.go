package source

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Where a claim starts is decided here, when the member is assigned partitions and before they are
// fetched (Fetcher.Add takes an explicit offset), by comparing the group's committed offset with
// the partition's log and the topic's identity:
//
//   - no committed offset: consumer.initial_offset (the log start or the log end), committed at
//     once, so that a partition that carries no record before the next restart does not start
//     from "newest" again, past the records written meanwhile;
//   - committed with another topic ID than the topic has now: the topic was deleted and created
//     again under the same name; the new incarnation is mirrored from its log start;
//   - committed below the log start: records the mirror never read were deleted (retention,
//     DeleteRecords); they are counted, logged and, under consumer.source_loss_policy=fail, the
//     mirror stops; under continue the claim starts at the log start;
//   - committed past the log end: the log was truncated (an unclean leader election); the claim
//     starts at the log end, where the next records will be written;
//   - otherwise: the committed offset.
//
// The fetcher never moves an offset on its own: one that fell out of range between the decision and
// the claim's first fetch, or while fetching, stops the partition (fetch.OutOfRangeError); the
// claim then drains, commits, and is decided again here, which finds the gap and applies the
// policy (member.go, restart).

// TopicPartition names one source partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Committed is a partition's committed offset (-1 when there is none) and its metadata.
type Committed struct {
	Offset   int64
	Metadata string
}

// Bounds are a partition's log start offset (the oldest record still held) and its end offset
// (the high watermark: where the next record will be written).
type Bounds struct {
	Start, End int64
}

// Cluster is what the handler reads from the source cluster to decide where claims start.
type Cluster interface {
	// Committed returns the group's committed offset of each partition of claims.
	Committed(group string, claims map[string][]int32) (map[TopicPartition]Committed, error)
	// Bounds returns the log start and end offsets of each partition of claims.
	Bounds(claims map[string][]int32) (map[TopicPartition]Bounds, error)
	// TopicIDs returns each topic's ID; a topic the cluster does not report (or reports without
	// an ID) is absent.
	TopicIDs(topics []string) (map[string]string, error)
}

// LogEnds is what a Cluster may also do: list the end offsets alone, which is what the watcher
// asks every listEvery (half the work of Bounds).
type LogEnds interface {
	Ends(claims map[string][]int32) (map[TopicPartition]int64, error)
}

// LossError says that records of a partition were deleted from the source before the mirror read
// them.
type LossError struct {
	Topic     string
	Partition int32
	// From is the committed offset, To the log start: offsets [From, To) are gone.
	From, To int64
}

func (e *LossError) Error() string {
	return fmt.Sprintf("source %s partition %d: offsets %d to %d (%d records) were deleted from the source before they were mirrored (retention or DeleteRecords overtook the mirror); "+
		"set consumer.source_loss_policy: continue to resume at the log start", e.Topic, e.Partition, e.From, e.To-1, e.To-e.From)
}

// startKind says why a claim starts where it does.
type startKind int

const (
	startCommitted startKind = iota
	startInitial
	startLost
	startRecreated
	startTruncated
)

// start is where one claim starts, and why.
type start struct {
	offset    int64
	kind      startKind
	committed int64  // the committed offset, -1 if none
	oldID     string // the topic ID stored with the committed offset
}

// metadataPrefix marks the topic ID kmirror stores in a committed offset's metadata.
const metadataPrefix = "kmirror topic_id="

// commitMetadata is the metadata committed with a topic's offsets.
func commitMetadata(topicID string) string {
	if topicID == "" {
		return ""
	}
	return metadataPrefix + topicID
}

// topicIDOf returns the topic ID stored in a committed offset's metadata, or "".
func topicIDOf(metadata string) string {
	id, ok := strings.CutPrefix(metadata, metadataPrefix)
	if !ok {
		return ""
	}
	return id
}

// decide returns where a claim starts (see the comment at the top of this file).
func decide(c Committed, b Bounds, topicID string, newest bool) start {
	st := start{committed: c.Offset, oldID: topicIDOf(c.Metadata)}
	switch {
	case c.Offset < 0:
		st.kind, st.offset = startInitial, b.Start
		if newest {
			st.offset = b.End
		}
	case st.oldID != "" && topicID != "" && st.oldID != topicID:
		st.kind, st.offset = startRecreated, b.Start
	case c.Offset < b.Start:
		st.kind, st.offset = startLost, b.Start
	case c.Offset > b.End:
		st.kind, st.offset = startTruncated, b.End
	default:
		st.kind, st.offset = startCommitted, c.Offset
	}
	return st
}

// ClientCluster reads the source cluster through a sarama client.
type ClientCluster struct {
	Client sarama.Client
}

// Committed implements Cluster with one OffsetFetch request to the group's coordinator.
func (c ClientCluster) Committed(group string, claims map[string][]int32) (map[TopicPartition]Committed, error) {
	coord, err := c.Client.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("find coordinator of group %q: %w", group, err)
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(c.Client.Config().Version, group, claims))
	if err != nil {
		_ = c.Client.RefreshCoordinator(group)
		return nil, fmt.Errorf("fetch committed offsets of group %q: %w", group, err)
	}
	if kerr := resp.GroupError(); !errors.Is(kerr, sarama.ErrNoError) {
		_ = c.Client.RefreshCoordinator(group)
		return nil, fmt.Errorf("fetch committed offsets of group %q: %w", group, kerr)
	}
	out := make(map[TopicPartition]Committed)
	for topic, parts := range claims {
		for _, p := range parts {
			cm := Committed{Offset: -1}
			if b := resp.GetBlock(topic, p); b != nil {
				if !errors.Is(b.Err, sarama.ErrNoError) {
					return nil, fmt.Errorf("fetch committed offset of group %q for %s/%d: %w", group, topic, p, b.Err)
				}
				cm = Committed{Offset: b.Offset, Metadata: b.Metadata}
			}
			out[TopicPartition{topic, p}] = cm
		}
	}
	return out, nil
}

// Bounds implements Cluster with two ListOffsets requests (earliest, latest) per partition leader.
func (c ClientCluster) Bounds(claims map[string][]int32) (map[TopicPartition]Bounds, error) {
	oldest, err := c.list(claims, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	newest, err := c.list(claims, sarama.OffsetNewest)
	if err != nil {
		return nil, err
	}
	out := make(map[TopicPartition]Bounds, len(oldest))
	for tp, o := range oldest {
		out[tp] = Bounds{Start: o, End: newest[tp]}
	}
	return out, nil
}

// Ends implements LogEnds with one ListOffsets request (latest) per partition leader.
func (c ClientCluster) Ends(claims map[string][]int32) (map[TopicPartition]int64, error) {
	return c.list(claims, sarama.OffsetNewest)
}

// list lists the offset at time (sarama.OffsetOldest or OffsetNewest) of each partition of claims,
// with one request per partition leader.
func (c ClientCluster) list(claims map[string][]int32, time int64) (map[TopicPartition]int64, error) {
	version := c.Client.Config().Version
	byLeader := make(map[*sarama.Broker]*sarama.OffsetRequest)
	for topic, parts := range claims {
		for _, p := range parts {
			leader, err := c.Client.Leader(topic, p)
			if err != nil {
				_ = c.Client.RefreshMetadata(topic)
				return nil, fmt.Errorf("find leader of %s/%d: %w", topic, p, err)
			}
			r, ok := byLeader[leader]
			if !ok {
				r = sarama.NewOffsetRequest(version)
				byLeader[leader] = r
			}
			r.AddBlock(topic, p, time, 1)
		}
	}
	what := "end offsets"
	if time == sarama.OffsetOldest {
		what = "log start offsets"
	}
	out := make(map[TopicPartition]int64)
	for leader, r := range byLeader {
		offs, err := listOffsets(leader, r, claims)
		if err != nil {
			return nil, fmt.Errorf("list %s on broker %d: %w", what, leader.ID(), err)
		}
		maps.Copy(out, offs)
	}
	return out, nil
}

// listOffsets sends a ListOffsets request and returns the offset of each partition it asked for.
func listOffsets(b *sarama.Broker, req *sarama.OffsetRequest, claims map[string][]int32) (map[TopicPartition]int64, error) {
	resp, err := b.GetAvailableOffsets(req)
	if err != nil {
		return nil, err
	}
	out := make(map[TopicPartition]int64)
	for topic, parts := range claims {
		for _, p := range parts {
			blk := resp.GetBlock(topic, p)
			if blk == nil {
				continue // another leader's partition
			}
			if !errors.Is(blk.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("%s/%d: %w", topic, p, blk.Err)
			}
			off := blk.Offset
			if len(blk.Offsets) > 0 { // protocol version 0
				off = blk.Offsets[0]
			}
			out[TopicPartition{topic, p}] = off
		}
	}
	return out, nil
}

// TopicIDs implements Cluster with one Metadata request (version 10 and later carry topic IDs).
func (c ClientCluster) TopicIDs(topics []string) (map[string]string, error) {
	b := c.Client.LeastLoadedBroker()
	if b == nil {
		return nil, errors.New("read topic IDs: no broker reachable")
	}
	sort.Strings(topics)
	resp, err := b.GetMetadata(sarama.NewMetadataRequest(c.Client.Config().Version, topics))
	if err != nil {
		return nil, fmt.Errorf("read topic IDs from broker %d: %w", b.ID(), err)
	}
	out := make(map[string]string, len(resp.Topics))
	for _, t := range resp.Topics {
		if errors.Is(t.Err, sarama.ErrNoError) && t.Uuid != (sarama.Uuid{}) {
			out[t.Name] = t.Uuid.String()
		}
	}
	return out, nil
}

// topicID is topic's ID as the session saw it when it started ("" when unknown).
func (h *Handler) topicID(topic string) string {
	if ids := h.topicIDs.Load(); ids != nil {
		return (*ids)[topic]
	}
	return ""
}

// Metadata returns the metadata committed with topic's offsets in this session (it carries the
// topic ID).
func (h *Handler) Metadata(topic string) string { return h.metadata(topic) }

// metadata is the metadata committed with topic's offsets in this session.
func (h *Handler) metadata(topic string) string {
	return commitMetadata(h.topicID(topic))
}

// position decides where each claim of claims starts, returns it and commits it. It returns an
// error (after calling Fatal) when records were lost and the policy is fail.
func (h *Handler) position(ctx context.Context, claims map[string][]int32) (map[TopicPartition]int64, error) {
	src := h.cfg.Source
	if src == nil {
		return nil, errors.New("decide where claims start: no source cluster to read committed offsets from")
	}
	topics := make([]string, 0, len(claims))
	for t := range claims {
		topics = append(topics, t)
	}
	ids, err := src.TopicIDs(topics)
	if err != nil {
		return nil, fmt.Errorf("decide where claims start: %w", err)
	}
	var committed map[TopicPartition]Committed
	if h.cfg.Positions != nil {
		committed, err = h.cfg.Positions(ctx, claims)
	} else {
		committed, err = src.Committed(h.cfg.Group, claims)
	}
	if err != nil {
		return nil, fmt.Errorf("decide where claims start: %w", err)
	}
	bounds, err := src.Bounds(claims)
	if err != nil {
		return nil, fmt.Errorf("decide where claims start: %w", err)
	}
	// The IDs must be those of the incarnation whose bounds were listed: a topic re-created in
	// between (or absent at the first read) would apply one incarnation's offsets to another.
	again, err := src.TopicIDs(topics)
	if err != nil {
		return nil, fmt.Errorf("decide where claims start: %w", err)
	}
	if !maps.Equal(again, ids) {
		return nil, fmt.Errorf("decide where claims start: the source topics' IDs changed while the claims were read "+
			"(a topic deleted or created again): %v, then %v; deciding again", ids, again)
	}
	h.storeTopicIDs(ids)
	h.mu.Lock()
	c := h.committer
	h.mu.Unlock()

	var lost []error
	out := make(map[TopicPartition]int64)
	for _, topic := range topics {
		parts := append([]int32(nil), claims[topic]...)
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			tp := TopicPartition{topic, p}
			cm, ok := committed[tp]
			if !ok {
				cm = Committed{Offset: -1}
			}
			b, ok := bounds[tp]
			if !ok {
				return nil, fmt.Errorf("decide where %s/%d starts: no log offsets listed for it", topic, p)
			}
			st := decide(cm, b, ids[topic], h.cfg.InitialNewest)
			log := h.cfg.Log.With(zap.String("topic", topic), zap.Int32("partition", p))
			switch st.kind {
			case startInitial:
				log.Debug("partition has no committed offset; committing its initial position",
					zap.Int64("offset", st.offset), zap.Bool("newest", h.cfg.InitialNewest))
			case startRecreated:
				log.Warn("source topic was deleted and created again; mirroring the new incarnation from its log start "+
					"(the target keeps the old incarnation's records, the new ones follow them)",
					zap.String("old_topic_id", st.oldID), zap.String("topic_id", ids[topic]),
					zap.Int64("old_committed", st.committed), zap.Int64("log_start", b.Start), zap.Int64("log_end", b.End))
			case startTruncated:
				log.Warn("committed offset is past the source log end (the log was truncated); resuming at the log end",
					zap.Int64("committed", st.committed), zap.Int64("log_end", b.End))
			case startLost:
				n := b.Start - st.committed
				h.cfg.Observer.SourceLost(topic, n)
				lerr := &LossError{Topic: topic, Partition: p, From: st.committed, To: b.Start}
				fields := []zap.Field{zap.Int64("lost_from", st.committed), zap.Int64("lost_to", b.Start-1),
					zap.Int64("lost_records", n), zap.String("policy", h.cfg.LossPolicy)}
				if h.cfg.LossPolicy != "continue" {
					log.Error("source records were deleted before they were mirrored; stopping (consumer.source_loss_policy: fail)", fields...)
					lost = append(lost, lerr)
					continue
				}
				log.Error("source records were deleted before they were mirrored; resuming at the log start (consumer.source_loss_policy: continue)", fields...)
			}
			meta := commitMetadata(ids[topic])
			out[tp] = st.offset
			// With Positions the group's committed offset may differ from cm: commit ours.
			if st.offset != cm.Offset || meta != cm.Metadata || h.cfg.Positions != nil {
				c.Mark(topic, p, st.offset)
			}
		}
	}
	if len(lost) > 0 {
		err := errors.Join(lost...)
		h.cfg.Fatal(err)
		return nil, err
	}
	h.mu.Lock()
	h.unsent = true
	h.mu.Unlock()
	if err := h.commit(ctx); err != nil {
		h.cfg.Log.Warn("commit the claims' starting positions failed; committing again at the next interval",
			append(commitFields(err), zap.Error(err))...)
	}
	return out, nil
}

// storeTopicIDs records the IDs of the topics whose claims were just decided, keeping the others'.
func (h *Handler) storeTopicIDs(ids map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	merged := make(map[string]string)
	if old := h.topicIDs.Load(); old != nil {
		maps.Copy(merged, *old)
	}
	maps.Copy(merged, ids)
	h.topicIDs.Store(&merged)
}

// RecreatedTopics returns the topics of the current session whose topic ID is no longer the one
// seen when the session started (deleted and created again). The caller ends the session; the
// next one starts those topics from their log start.
func (h *Handler) RecreatedTopics() ([]string, error) {
	ids := h.topicIDs.Load()
	if h.cfg.Source == nil || ids == nil || len(*ids) == 0 {
		return nil, nil
	}
	seen := *ids
	topics := make([]string, 0, len(seen))
	for t := range seen {
		topics = append(topics, t)
	}
	now, err := h.cfg.Source.TopicIDs(topics)
	if err != nil {
		return nil, err
	}
	var changed []string
	for t, id := range seen {
		if cur, ok := now[t]; ok && cur != id {
			changed = append(changed, t)
		}
	}
	sort.Strings(changed)
	return changed, nil
}
