package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/heartbeat"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/topics"
)

// heartbeatRule is what the topic filter asks first: the flow's own heartbeat topic is always
// mirrored, one that originated on the target never.
func heartbeatRule(cfg *config.Config) topics.Rule {
	return heartbeat.Rule{Base: cfg.Heartbeats.Topic, Source: cfg.Source.Alias, Target: cfg.Target.Alias}.Decide
}

// startHeartbeats writes a heartbeat to the source now and then every heartbeats.interval until
// the returned stop is called or ctx ends (the topic filter mirrors them: heartbeatRule). It does
// nothing when heartbeats.enabled is off.
func (m *Mirror) startHeartbeats(ctx context.Context, admin sarama.ClusterAdmin) (stop func() error, err error) {
	hb := m.cfg.Heartbeats
	if !hb.Enabled {
		return func() error { return nil }, nil
	}

	cfg := m.source.Config("heartbeat")
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	// A heartbeat is worth little once the next is due: give up on one within seconds.
	cfg.Net.ReadTimeout = min(cfg.Net.ReadTimeout, 10*time.Second)
	cfg.Net.WriteTimeout = min(cfg.Net.WriteTimeout, 10*time.Second)
	cfg.Producer.Retry.Max = 2
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("heartbeat", cfg)
	}
	client, err := m.source.OpenClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("heartbeats: connect to source %s: %w", m.source.Alias(), err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("heartbeats: open a producer on source %s: %w", m.source.Alias(), err)
	}
	var obs heartbeat.Observer
	if mt := m.opts.Metrics; mt != nil {
		obs = heartbeat.Observer{Emitted: mt.HeartbeatsEmitted.Inc, Failed: func(error) { mt.HeartbeatErrors.Inc() }}
	}
	e, err := heartbeat.NewEmitter(heartbeat.EmitterConfig{
		Topic: m.cfg.HeartbeatTopic(), Origin: m.cfg.Source.Alias, Target: m.cfg.Target.Alias, Interval: hb.Interval,
		Producer: producer, Admin: admin, ReplicationFactor: int16(m.cfg.Topics.ReplicationFactor),
		Observer: obs, Log: m.log,
	})
	if err != nil {
		_ = producer.Close()
		_ = client.Close()
		return nil, err
	}
	// The first heartbeat is written now, so that the topic exists before the first refresh of
	// the topics and is in the first session.
	_ = e.Emit()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.Run(runCtx) }()
	return func() error {
		cancel()
		<-done
		err := producer.Close()
		if cerr := client.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

// heartbeatAcked sets the heartbeat gauges when r is one of the flow's heartbeats, acknowledged
// on the target at at: its timestamp is its emit time.
func (o *observer) heartbeatAcked(r *record.Record, at time.Time) {
	if o.heartbeatTopic == "" || r.Track.Topic() != o.heartbeatTopic || r.Msg.Timestamp.IsZero() {
		return
	}
	o.metrics.HeartbeatLatency.Set(at.Sub(r.Msg.Timestamp).Seconds())
	o.metrics.HeartbeatLast.Set(float64(r.Msg.Timestamp.UnixMilli()) / 1000)
	if o.board != nil {
		o.board.Heartbeat(r.Msg.Timestamp, at)
	}
}

// isBusinessTopic reports whether a mirrored topic is other than the flow's own heartbeat topic.
func (m *Mirror) isBusinessTopic(topic string) bool {
	return !m.cfg.Heartbeats.Enabled || topic != m.cfg.HeartbeatTopic()
}
