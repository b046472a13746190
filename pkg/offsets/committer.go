package offsets

import (
	"context"
	"fmt"
	"time"
)

// Committer makes safe source positions durable. The at-least-once implementation commits them to
// the source cluster's consumer group; an exactly-once implementation would instead write them to
// the target cluster inside the producers' transaction.
type Committer interface {
	// Mark records that every record of topic/partition before offset next is on the target.
	Mark(topic string, partition int32, next int64)
	// Commit makes everything marked so far durable.
	Commit(ctx context.Context) error
}

// GroupSession is the part of a consumer-group session that commits offsets
// (sarama.ConsumerGroupSession satisfies it).
type GroupSession interface {
	MarkOffset(topic string, partition int32, offset int64, metadata string)
	Commit()
}

// GroupCommitter commits to the source cluster's consumer group through its session.
type GroupCommitter struct {
	Session GroupSession
	// Observe, when set, is told how long each commit took.
	Observe func(time.Duration)
}

// Mark implements Committer.
func (g GroupCommitter) Mark(topic string, partition int32, next int64) {
	g.Session.MarkOffset(topic, partition, next, "")
}

// Commit implements Committer. sarama's synchronous commit reports failures on the consumer
// group's error channel rather than returning them; it is bounded by the client's timeouts.
func (g GroupCommitter) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit offsets: %w", err)
	}
	start := time.Now()
	g.Session.Commit()
	if g.Observe != nil {
		g.Observe(time.Since(start))
	}
	return nil
}
