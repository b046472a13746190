package source

import (
	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/topics"
)

// ClientConfig sets c, a fresh configuration of a source cluster's client, up as the consumer
// group's (and the clients beside it: offsets, group offset sync) from cc: the handler commits
// (no auto-commit), decides where each claim starts, and reads what cc says how.
func ClientConfig(c *sarama.Config, cc config.Consumer) *sarama.Config {
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = false
	// An offset out of range must never be moved silently: the handler decides where each claim
	// starts (start.go) and an offset that falls out of range later ends the session.
	c.Consumer.Group.ResetInvalidOffsets = false
	if cc.InitialOffset == "newest" {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	} else {
		c.Consumer.Offsets.Initial = sarama.OffsetOldest
	}
	if cc.IsolationLevel == "read_uncommitted" {
		c.Consumer.IsolationLevel = sarama.ReadUncommitted
	} else {
		c.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	switch cc.RebalanceStrategy {
	case "range":
		c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	case "roundrobin":
		c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	default:
		c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	}
	c.Consumer.Group.Session.Timeout = cc.SessionTimeout
	c.Consumer.Group.Heartbeat.Interval = cc.HeartbeatInterval
	c.Consumer.Group.Rebalance.Timeout = cc.RebalanceTimeout
	c.Consumer.Fetch.Default = cc.FetchPartitionBytes
	// Fetch.Max stays 0 (no limit): when one partition's fetch reaches a non-zero Fetch.Max and
	// still holds only part of a record batch, sarama reports ErrMessageTooLarge and skips the
	// offset; what is fetched past it would then be committed. The limit is the whole fetch's
	// instead, which brokers exceed by one batch rather than hold a record back (KIP-74).
	c.Consumer.Fetch.Max = 0
	c.Consumer.Fetch.MaxBytes = cc.FetchMaxBytes
	c.Consumer.Fetch.Min = cc.FetchMinBytes
	c.Consumer.MaxWaitTime = cc.FetchMaxWait
	// The control reads on this client that use sarama's partition consumers (not the data
	// path: pkg/fetch) buffer this many records (not bytes) per partition instead of sarama's
	// default of 256.
	c.ChannelBufferSize = config.ConsumerChannelRecords
	return c
}

// FetchSizing is the consumer group's fetch size per partition and its fetch lanes per source
// broker (consumer.distant_rtt, consumer.fetch_lanes) for partitions mirrored partitions: the
// configured size, or for a distant source src consumer.distant_fetch_partition_bytes or the
// largest batch the mirrored topics accept (lookup tells each one's), the larger; and the lanes
// config.Consumer.Lanes picks for the round trip to src and its brokers. A round trip that
// cannot be measured keeps the configured size and the lanes of a near source.
func FetchSizing(src sarama.Client, cc config.Consumer, mirrored []string, partitions int, lookup func(string) (topics.Topic, bool), log *zap.Logger) (int32, int) {
	brokers := len(src.Brokers())
	if cc.DistantRTT <= 0 {
		return cc.FetchPartitionBytes, cc.Lanes(0, partitions, brokers)
	}
	rtt, err := cluster.RoundTrip(src, 3)
	if err != nil {
		log.Warn("cannot measure the round trip to the source; fetching with consumer.fetch_partition_bytes",
			zap.Error(err))
		return cc.FetchPartitionBytes, cc.Lanes(0, partitions, brokers)
	}
	largest := 0
	for _, name := range mirrored {
		if t, ok := lookup(name); ok {
			largest = max(largest, t.MaxMessageBytes)
		}
	}
	size, lanes := cc.FetchPartition(rtt, largest), cc.Lanes(rtt, partitions, brokers)
	if size != cc.FetchPartitionBytes || lanes > 1 {
		log.Info("the source is distant: each partition's fetch asks for consumer.distant_fetch_partition_bytes "+
			"(or the largest batch its topics accept, when larger), and several fetch loops read each broker",
			zap.Duration("source_rtt", rtt), zap.Duration("distant_rtt", cc.DistantRTT),
			zap.Int32("fetch_partition_bytes", size), zap.Int32("configured", cc.FetchPartitionBytes),
			zap.Int("fetch_lanes", lanes))
	}
	return size, lanes
}
