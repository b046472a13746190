package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Admin is what the Emitter needs of the source cluster's admin client.
type Admin interface {
	DescribeCluster() (brokers []*sarama.Broker, controllerID int32, err error)
	CreateTopic(topic string, detail *sarama.TopicDetail, validateOnly bool) error
}

// Observer hears of each heartbeat written or not; nil fields hear nothing.
type Observer struct {
	Emitted func()
	Failed  func(error)
}

// EmitterConfig configures an Emitter.
type EmitterConfig struct {
	// Topic is the heartbeat topic on the source (TopicName(base, Origin)).
	Topic string
	// Origin and Target are the flow's aliases: the source, where heartbeats are written, and the
	// target they are mirrored to.
	Origin, Target string
	// Interval is the time between two heartbeats.
	Interval time.Duration
	// Producer writes to the source (acks=all, Return.Successes).
	Producer sarama.SyncProducer
	// Admin creates the topic on the source when it is missing.
	Admin Admin
	// ReplicationFactor of a created topic, capped at the source's broker count.
	ReplicationFactor int16
	Observer          Observer
	Log               *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// TopicConfigs are the configs of a heartbeat topic kmirror creates: compacted, so the last
// heartbeat of every flow stays for good while the rest goes; compacted within the hour
// (max.compaction.lag.ms rolls the active segment too, KIP-354, and is one of the configs
// copied to the target's topic; segment.ms, which is not, does the same on the source);
// CreateTime, so a record's timestamp is its emit time.
func TopicConfigs() map[string]*string {
	str := func(s string) *string { return &s }
	return map[string]*string{
		"cleanup.policy":         str("compact"),
		"max.compaction.lag.ms":  str("3600000"),
		"segment.ms":             str("3600000"),
		"message.timestamp.type": str("CreateTime"),
	}
}

// Emitter writes the flow's heartbeats to its topic on the source. One goroutine uses it.
type Emitter struct {
	cfg     EmitterConfig
	ensured bool
	failing int // heartbeats failed since the last one written
}

// NewEmitter checks cfg; nothing is written until Run.
func NewEmitter(cfg EmitterConfig) (*Emitter, error) {
	if cfg.Topic == "" || cfg.Origin == "" || cfg.Target == "" || cfg.Producer == nil || cfg.Interval <= 0 {
		return nil, errors.New("heartbeat: an emitter needs a topic, both aliases, a producer and a positive interval")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Log = cfg.Log.With(zap.String("topic", cfg.Topic))
	return &Emitter{cfg: cfg}, nil
}

// Ensure creates the heartbeat topic on the source (one partition) unless it exists.
func (e *Emitter) Ensure() error {
	if e.ensured || e.cfg.Admin == nil {
		return nil
	}
	rf := max(e.cfg.ReplicationFactor, 1)
	brokers, _, err := e.cfg.Admin.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describe source cluster %s for heartbeat topic %q: %w", e.cfg.Origin, e.cfg.Topic, err)
	}
	if n := len(brokers); n > 0 && int(rf) > n {
		rf = int16(n)
	}
	err = e.cfg.Admin.CreateTopic(e.cfg.Topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: rf, ConfigEntries: TopicConfigs()}, false)
	switch {
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
	case err != nil:
		return fmt.Errorf("create heartbeat topic %q on source %s (1 partition, replication factor %d): %w", e.cfg.Topic, e.cfg.Origin, rf, err)
	default:
		e.cfg.Log.Info("created heartbeat topic on the source", zap.String("cluster", e.cfg.Origin), zap.Int16("replication_factor", rf))
	}
	e.ensured = true
	return nil
}

// Emit writes one heartbeat and returns once the source acknowledged it.
func (e *Emitter) Emit() error {
	err := e.Ensure()
	if err == nil {
		h := New(e.cfg.Origin, e.cfg.Target, e.cfg.Now())
		_, _, err = e.cfg.Producer.SendMessage(&sarama.ProducerMessage{
			Topic: e.cfg.Topic, Partition: 0, Key: sarama.ByteEncoder(h.Key()), Value: sarama.ByteEncoder(h.Value()), Timestamp: h.Time(),
		})
		if err != nil {
			err = fmt.Errorf("write a heartbeat to %q on source %s: %w", e.cfg.Topic, e.cfg.Origin, err)
		}
	}
	if err != nil {
		if e.cfg.Observer.Failed != nil {
			e.cfg.Observer.Failed(err)
		}
		if e.failing == 0 {
			e.cfg.Log.Warn("cannot write heartbeats; trying again every interval (the mirror goes on)", zap.Error(err),
				zap.String("fix", "grant Create, Describe and Write on the heartbeat topic on the source, or set heartbeats.enabled: false"))
		}
		e.failing++
		return err
	}
	if e.cfg.Observer.Emitted != nil {
		e.cfg.Observer.Emitted()
	}
	if e.failing > 0 {
		e.cfg.Log.Info("heartbeats are written again", zap.Int("failed", e.failing))
		e.failing = 0
	}
	return nil
}

// Run writes a heartbeat every interval until ctx ends (call Emit first for one at once). A
// heartbeat slow to be acknowledged delays the next; none is written twice to catch up.
func (e *Emitter) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.Emit()
		}
	}
}
