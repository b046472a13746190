package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Missing target topics are created many per CreateTopics request: one request per topic, on the
// one connection to the controller that serves them in turn, took 39-52 s for 1,000 topics
// (benchmarks/results/scale-2026-12-06-start.md). A request holds at most topicsPerCreate topics
// and recordsPerCreate metadata records: a KRaft controller refuses a request that would write
// more than 10,000 records at once (QuorumController.MAX_RECORDS_PER_USER_OP, "Excessively large
// number of partitions per request"), and a topic costs a record, one per partition and one per
// config. A topic larger than that on its own is sent alone, for the broker to decide.
const (
	topicsPerCreate  = 250
	recordsPerCreate = 5000
)

// createRounds bounds how often a topic the broker answered with a transient error (a quota's
// throttling, a timeout, a moved controller) is sent again within one refresh; the next refresh
// tries again after that.
const createRounds = 5

// createAll creates the target topics the plans create, many per request, and returns what
// became of each, by source name: nil when it was created, or created by another replica first
// (TOPIC_ALREADY_EXISTS), else the broker's error for that topic, naming it. Every planned
// creation has an answer. A topic refused for the timestamp bounds (a target before Kafka 3.6) is
// sent again with the single bound it knows.
func (s *Syncer) createAll(ctx context.Context, plans []TopicPlan) map[string]error {
	out := make(map[string]error)
	pending := make(map[string]*sarama.TopicDetail) // by target name
	bySource := make(map[string]TopicPlan)
	for _, p := range plans {
		if p.Create == nil || p.Problem != "" {
			continue
		}
		c := p.Create
		if c.Requested > 0 {
			s.warnOnce("rf-capped:"+p.Target, "target topic created with a replication factor below topics.replication_factor: "+
				"the target has fewer brokers; raise it with a partition reassignment once it has more",
				zap.String("topic", p.Target), zap.Int("replication_factor", int(c.ReplicationFactor)), zap.Int("requested", c.Requested))
		}
		configs := make(map[string]*string, len(c.Configs))
		for k, v := range c.Configs {
			configs[k] = &v
		}
		pending[p.Target] = &sarama.TopicDetail{NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor, ConfigEntries: configs}
		bySource[p.Target] = p
	}
	wait := 100 * time.Millisecond
	for round := 1; len(pending) > 0; round++ {
		again := make(map[string]*sarama.TopicDetail)
		for _, batch := range createBatches(pending) {
			answers, err := s.target.CreateTopics(batch)
			for name, detail := range batch {
				p := bySource[name]
				answer, ok := answers[name]
				if err != nil || !ok {
					if err == nil {
						err = sarama.ErrIncompleteResponse
					}
					out[p.Source] = s.createError(p, err)
					continue
				}
				switch {
				case answer == nil:
					s.created(p, detail)
					out[p.Source] = nil
				case errors.Is(answer, sarama.ErrTopicAlreadyExists):
					out[p.Source] = nil // another replica created it first
				case errors.Is(answer, sarama.ErrInvalidConfig) && olderBounds(detail.ConfigEntries):
					// A target before Kafka 3.6 knows neither bound, only the one they replaced.
					s.cfg.Log.Warn("target refused the timestamp bounds (Kafka before 3.6?); creating the topic with "+
						ConfigTimestampDifference+" instead", zap.String("topic", name), zap.Error(answer))
					again[name] = detail
				case transientCreateError(answer) && round < createRounds:
					again[name] = detail
				default:
					out[p.Source] = s.createError(p, answer)
				}
			}
		}
		pending = again
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for name := range pending {
				out[bySource[name].Source] = s.createError(bySource[name], context.Cause(ctx))
			}
			return out
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	return out
}

// transientCreateError reports errors after which the same creation may succeed soon: a
// controller mutation quota (KIP-599), a creation that did not complete within the request's
// timeout (it may have: the next answer is then TOPIC_ALREADY_EXISTS), a controller that moved.
func transientCreateError(err error) bool {
	return errors.Is(err, sarama.ErrThrottlingQuotaExceeded) || errors.Is(err, sarama.ErrRequestTimedOut) ||
		errors.Is(err, sarama.ErrNotController)
}

func (s *Syncer) createError(p TopicPlan, err error) error {
	return fmt.Errorf("create target topic %q (%d partitions, replication factor %d): %w",
		p.Target, p.Create.Partitions, p.Create.ReplicationFactor, err)
}

// created logs and counts a target topic created.
func (s *Syncer) created(p TopicPlan, detail *sarama.TopicDetail) {
	s.cfg.Log.Info("created target topic",
		zap.String("topic", p.Target), zap.Int32("partitions", detail.NumPartitions), zap.Int16("replication_factor", detail.ReplicationFactor),
		zap.Strings("configs", slices.Sorted(maps.Keys(detail.ConfigEntries))))
	if s.cfg.Events.TopicCreated != nil {
		s.cfg.Events.TopicCreated()
	}
}

// createBatches splits topics into CreateTopics requests of at most topicsPerCreate topics and
// recordsPerCreate records, in name order.
func createBatches(topics map[string]*sarama.TopicDetail) []map[string]*sarama.TopicDetail {
	var (
		out     []map[string]*sarama.TopicDetail
		batch   map[string]*sarama.TopicDetail
		records int
	)
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		d := topics[name]
		r := 1 + int(max(d.NumPartitions, 1)) + len(d.ConfigEntries)
		if batch != nil && (len(batch) == topicsPerCreate || records+r > recordsPerCreate) {
			out, batch = append(out, batch), nil
		}
		if batch == nil {
			batch, records = make(map[string]*sarama.TopicDetail), 0
		}
		batch[name], records = d, records+r
	}
	if batch != nil {
		out = append(out, batch)
	}
	return out
}
