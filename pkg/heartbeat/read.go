package heartbeat

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"
)

// Seen is the last heartbeat of one flow found on a cluster.
type Seen struct {
	Topic string // the heartbeat topic it was read from
	Heartbeat
}

// lastRecords is how far back from each heartbeat topic's end Latest reads: enough for the last
// heartbeat of each flow writing to one origin's topic.
const lastRecords = 64

// Latest returns the last heartbeat of every flow found in the heartbeat topics (names made from
// base) of the cluster client reaches, sorted by topic and key. It reads the last records of
// each topic only; a record that is not a heartbeat is skipped.
func Latest(ctx context.Context, client sarama.Client, base string) ([]Seen, error) {
	names, err := client.Topics()
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("open a consumer: %w", err)
	}
	defer consumer.Close()
	var out []Seen
	for _, topic := range names {
		if _, ok := Origin(base, topic); !ok {
			continue
		}
		last := map[string]Heartbeat{}
		parts, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("partitions of %q: %w", topic, err)
		}
		for _, p := range parts {
			if err := readLast(ctx, client, consumer, topic, p, last); err != nil {
				return nil, err
			}
		}
		for _, h := range last {
			out = append(out, Seen{Topic: topic, Heartbeat: h})
		}
	}
	slices.SortFunc(out, func(a, b Seen) int {
		return strings.Compare(a.Topic+" "+string(a.Key()), b.Topic+" "+string(b.Key()))
	})
	return out, nil
}

// readLast reads the last records of one partition into last, per key, the newest kept.
func readLast(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, p int32, last map[string]Heartbeat) error {
	oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("log start of %s/%d: %w", topic, p, err)
	}
	end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("log end of %s/%d: %w", topic, p, err)
	}
	if end <= oldest {
		return nil
	}
	pc, err := consumer.ConsumePartition(topic, p, max(oldest, end-lastRecords))
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, p, err)
	}
	defer pc.Close()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read %s/%d: %w", topic, p, context.Cause(ctx))
		case err := <-pc.Errors():
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		case m := <-pc.Messages():
			if h, err := Parse(m.Key, m.Value); err == nil {
				if prev, ok := last[string(m.Key)]; !ok || h.EmittedMs >= prev.EmittedMs {
					last[string(m.Key)] = h
				}
			}
			if m.Offset >= end-1 {
				return nil
			}
		}
	}
}
