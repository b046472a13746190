package preflight

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
)

// Two mirrors into one target. What exactly-once delivery keeps on the target — the slots'
// transactional ids and the positions group — is named after the mirror's consumer group and its
// source alias; two mirrors from different sources that end up with the same names (the same
// alias, or positions_group and transactional_id_prefix set alike) fence each other's
// producers and mix their positions. The positions stored in the group carry the source topic's
// ID (metadata "kmirror topic_id=<id>"): a position under a target topic this mirror cannot have
// written (another source's prefix), or for a topic whose ID is not the one this source has,
// was written by another mirror.

// topicIDMetadata marks the topic ID in a stored position's metadata (pkg/source).
const topicIDMetadata = "kmirror topic_id="

// sourceTopicIDs reads the topic IDs of topics on the source (Metadata v10 and later carry them).
func (s *session) sourceTopicIDs(topics []string) (map[string]string, error) {
	b := s.client.LeastLoadedBroker()
	if b == nil {
		return nil, errors.New("no broker reachable")
	}
	resp, err := b.GetMetadata(sarama.NewMetadataRequest(s.client.Config().Version, topics))
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(resp.Topics))
	for _, t := range resp.Topics {
		if errors.Is(t.Err, sarama.ErrNoError) && t.Uuid != (sarama.Uuid{}) {
			out[t.Name] = t.Uuid.String()
		}
	}
	return out, nil
}

// storedPositions notes the topic ID stored with each target topic's positions in the
// positions group.
func storedPositions(resp *sarama.OffsetFetchResponse) map[string]string {
	out := make(map[string]string)
	for topic, parts := range resp.Blocks {
		for _, b := range parts {
			if b == nil || b.Offset < 0 {
				continue
			}
			if id, ok := strings.CutPrefix(b.Metadata, topicIDMetadata); ok {
				out[topic] = id
				break
			}
			out[topic] = ""
		}
	}
	return out
}

// shared checks that the positions group on the target holds no position another mirror wrote.
func shared(cfg *config.Config, src, tgt *session) []Check {
	if cfg.Delivery.Mode != config.ExactlyOnce {
		return nil
	}
	src.mu.Lock()
	ids := src.topicIDs
	src.mu.Unlock()
	tgt.mu.Lock()
	stored := tgt.positions
	tgt.mu.Unlock()
	if ids == nil || stored == nil {
		return nil // one side not reached, or the group not read (reported above)
	}
	group := cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias)
	prefix := cfg.Delivery.TransactionalPrefix(cfg.Consumer.GroupID, cfg.Source.Alias)
	var foreign []string
	for _, topic := range slices.Sorted(maps.Keys(stored)) {
		name := topic
		if cfg.Topics.ReplicationPolicy == config.PolicyPrefix {
			var ok bool
			if name, ok = strings.CutPrefix(topic, cfg.Source.Alias+"."); !ok {
				foreign = append(foreign, fmt.Sprintf("%s (not named by this mirror's prefix %q)", topic, cfg.Source.Alias+"."))
				continue
			}
		}
		if id, ours := ids[name], stored[topic]; id != "" && ours != "" && id != ours {
			foreign = append(foreign, fmt.Sprintf("%s (written from topic ID %s; this source's %s is %s)", topic, ours, name, id))
		}
	}
	c := Check{Cluster: "target", Name: "positions group not shared",
		Detail: fmt.Sprintf("%s: %d topics' positions, all of this source", group, len(stored))}
	if len(foreign) > 0 {
		c.Err = fmt.Errorf("positions group %q on the target holds positions another mirror wrote: %s; two mirrors into one "+
			"target that share the positions group and the transactional ids (%q-<slot>) fence each other and mix their positions",
			group, strings.Join(foreign, ", "), prefix)
		c.Fix = "give each source its own source.alias (the names default to <consumer.group_id>-<source.alias>), or set " +
			"delivery.positions_group and delivery.transactional_id_prefix per mirror; if the topic was deleted and created " +
			"again on this source, delete the group's offsets for it (kafka-consumer-groups.sh --delete-offsets)"
	}
	return []Check{c}
}
