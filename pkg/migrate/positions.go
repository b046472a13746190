package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Position is where MirrorMaker 2 stopped in one source partition.
type Position struct {
	Topic     string
	Partition int32
	// Copied is the source offset of the last record MirrorMaker 2's Connect framework recorded
	// as written to the target; Next (Copied+1) is the first one it had not.
	Copied, Next int64
	// Connector is the MirrorSourceConnector that recorded it.
	Connector string
}

// offsetKey is one key of the Connect offsets topic: the connector and its source partition,
// which for MirrorSourceConnector is {"cluster": alias, "topic": t, "partition": n}
// (MirrorUtils.wrapPartition).
type offsetKey struct {
	connector, cluster, topic string
	partition                 int32
}

// DecodeOffsetRecord decodes one record of a Connect offsets topic written by MirrorMaker 2's
// MirrorSourceConnector: key ["<connector>",{"cluster":"<alias>","partition":N,"topic":"t"}], value
// {"offset":N} (MirrorUtils.wrapOffset: the source offset of the last record copied), or no value
// (a tombstone: the connector's offset was reset). ok is false for a record that is not a
// MirrorSourceConnector's (the checkpoint and heartbeat connectors' keys name no cluster and
// topic-partition); an error is a MirrorSourceConnector record that cannot be read.
func DecodeOffsetRecord(key, value []byte) (k offsetKey, offset int64, tombstone, ok bool, err error) {
	var parts []json.RawMessage
	if json.Unmarshal(key, &parts) != nil || len(parts) != 2 {
		return k, 0, false, false, nil
	}
	var src struct {
		Cluster   *string      `json:"cluster"`
		Topic     *string      `json:"topic"`
		Partition *json.Number `json:"partition"`
	}
	dec := json.NewDecoder(bytes.NewReader(parts[1]))
	dec.UseNumber()
	if json.Unmarshal(parts[0], &k.connector) != nil || dec.Decode(&src) != nil || src.Cluster == nil || src.Topic == nil || src.Partition == nil {
		return k, 0, false, false, nil
	}
	p, perr := src.Partition.Int64()
	if perr != nil || p < 0 || p > 1<<31-1 {
		return k, 0, false, false, fmt.Errorf("key %s: partition %s is not a partition number", key, *src.Partition)
	}
	k.cluster, k.topic, k.partition = *src.Cluster, *src.Topic, int32(p)
	if len(value) == 0 || string(value) == "null" {
		return k, 0, true, true, nil
	}
	var off struct {
		Offset *json.Number `json:"offset"`
	}
	dec = json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&off); err != nil || off.Offset == nil {
		return k, 0, false, true, fmt.Errorf("key %s: value %q is not MirrorMaker 2's {\"offset\":N}", key, value)
	}
	if offset, err = off.Offset.Int64(); err != nil {
		return k, 0, false, true, fmt.Errorf("key %s: offset %s is not a whole number", key, *off.Offset)
	}
	return k, offset, false, true, nil
}

// Latest keeps, per key, the last offset recorded in the order given (a Connect offsets topic
// keeps one key in one partition, in order), and drops the keys whose last record is a tombstone.
type Latest struct {
	last map[offsetKey]int64
}

// Add records one offsets-topic record, decoded by DecodeOffsetRecord.
func (l *Latest) Add(k offsetKey, offset int64, tombstone bool) {
	if l.last == nil {
		l.last = make(map[offsetKey]int64)
	}
	if tombstone {
		delete(l.last, k)
		return
	}
	l.last[k] = offset
}

// Positions returns MirrorMaker 2's positions for the source cluster alias, of connector (any
// MirrorSourceConnector when empty), sorted by topic and partition. A partition recorded by two
// connectors is an error unless connector chooses one: the wrong one would skip or repeat records.
// A negative offset (Connect's "uncommitted") gives no position.
func (l *Latest) Positions(alias, connector string) ([]Position, error) {
	type tp struct {
		topic string
		p     int32
	}
	seen := map[tp]Position{}
	var conflicts []string
	for k, off := range l.last {
		if k.cluster != alias || (connector != "" && k.connector != connector) || off < 0 {
			continue
		}
		pos := Position{Topic: k.topic, Partition: k.partition, Copied: off, Next: off + 1, Connector: k.connector}
		if prev, dup := seen[tp{k.topic, k.partition}]; dup {
			conflicts = append(conflicts, fmt.Sprintf("%s/%d (%s: %d, %s: %d)", k.topic, k.partition, prev.Connector, prev.Copied, k.connector, off))
			continue
		}
		seen[tp{k.topic, k.partition}] = pos
	}
	if len(conflicts) > 0 {
		sort.Strings(conflicts)
		return nil, fmt.Errorf("two connectors recorded positions for the same source partitions: %s; choose one with --connector",
			strings.Join(conflicts, ", "))
	}
	out := make([]Position, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}

// Connectors lists the connectors that recorded positions for alias.
func (l *Latest) Connectors(alias string) []string {
	set := map[string]bool{}
	for k := range l.last {
		if k.cluster == alias {
			set[k.connector] = true
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// idleEnd is how long a partition of the offsets topic may deliver nothing, once the consumer has
// seen its end, before it counts as read: a partition that ends with a transaction marker (Connect
// with exactly-once support) or aborted records delivers nothing for its last offsets.
const idleEnd = 2 * time.Second

// ReadOffsetsTopic reads the whole Connect offsets topic through client (of the cluster that holds
// it: the target, for MirrorMaker 2) up to its end at the time of the call, committed records only.
func ReadOffsetsTopic(ctx context.Context, client sarama.Client, topic string) (*Latest, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return nil, fmt.Errorf("offsets topic %q does not exist on the target: name MirrorMaker 2's offset.storage.topic with --offsets-topic "+
				"(dedicated mode: mm2-offsets.<source alias>.internal; Strimzi: spec.target.offsetStorageTopic)", topic)
		}
		return nil, fmt.Errorf("read offsets topic %q: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("read offsets topic %q: %w", topic, err)
	}
	defer consumer.Close()
	l := &Latest{}
	for _, p := range parts {
		if err := readPartition(ctx, client, consumer, topic, p, l); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func readPartition(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, p int32, l *Latest) error {
	end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("read the end of offsets topic %s/%d: %w", topic, p, err)
	}
	start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("read the start of offsets topic %s/%d: %w", topic, p, err)
	}
	if start >= end {
		return nil
	}
	pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("read offsets topic %s/%d: %w", topic, p, err)
	}
	defer pc.Close()
	idle := time.NewTimer(idleEnd)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read offsets topic %s/%d (up to offset %d): %w", topic, p, end, context.Cause(ctx))
		case err := <-pc.Errors():
			return fmt.Errorf("read offsets topic %s/%d: %w", topic, p, err)
		case msg := <-pc.Messages():
			k, off, tomb, ok, err := DecodeOffsetRecord(msg.Key, msg.Value)
			if err != nil {
				return fmt.Errorf("offsets topic %s/%d offset %d: %w", topic, p, msg.Offset, err)
			}
			if ok {
				l.Add(k, off, tomb)
			}
			if msg.Offset+1 >= end {
				return nil
			}
			idle.Reset(idleEnd)
		case <-idle.C:
			if pc.HighWaterMarkOffset() >= end {
				return nil // nothing more to deliver below end: markers or aborted records
			}
			idle.Reset(idleEnd)
		}
	}
}
