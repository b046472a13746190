package mirror

import (
	"context"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/topics"
)

// newFilter builds the topic filter from the configuration: topics.include and exclude (a reload
// replaces them: Filter.Set) and the flow's heartbeat topic.
func newFilter(cfg *config.Config) (*topics.Filter, error) {
	filter, err := topics.NewFilter(cfg.Topics.Include, cfg.Topics.Exclude)
	if err != nil {
		return nil, err
	}
	if cfg.Heartbeats.Enabled {
		filter.Decide(heartbeatRule(cfg))
	}
	return filter, nil
}

// newSyncer builds the topic syncer from the configuration and filter over the clusters' admin
// clients: the daemon and `kmirror topics plan` build it here alike, so the plan printed is the
// one the daemon applies.
func (m *Mirror) newSyncer(src, tgt sarama.ClusterAdmin, events topics.Events, log *zap.Logger) (*topics.Syncer, error) {
	sc, err := syncerConfig(m.cfg, m.filter)
	if err != nil {
		return nil, err
	}
	sc.Events, sc.Log = events, log
	return topics.NewSyncer(topics.NewAdmin(src, m.source.Config("admin")), topics.NewAdmin(tgt, m.target.Config("admin")), sc), nil
}

// syncerConfig is the topic syncer's configuration over filter (the mirror's own, which a reload
// changes). Its Mirrored is the daemon's decision of which source topics are mirrored: the group
// offset sync and the offsets and failover commands ask it too (mirroredTopics), so they never
// wait for a topic the daemon leaves out.
func syncerConfig(cfg *config.Config, filter *topics.Filter) (topics.SyncerConfig, error) {
	namer, err := topics.NewNamer(cfg.Topics.ReplicationPolicy, cfg.Source.Alias)
	if err != nil {
		return topics.SyncerConfig{}, err
	}
	var cycles *topics.Cycles
	if cfg.Topics.ReplicationPolicy == config.PolicyPrefix {
		cycles = &topics.Cycles{Source: cfg.Source.Alias, Target: cfg.Target.Alias}
	}
	return topics.SyncerConfig{
		Filter: filter, Name: namer, Cycles: cycles, Create: cfg.Topics.Create,
		ReplicationFactor: cfg.Topics.ReplicationFactor, SyncConfigs: cfg.Topics.SyncConfigs,
		SyncExistingConfigs: cfg.Topics.SyncExistingConfigs, SyncACLs: cfg.Topics.SyncACLs,
		DefaultMaxMessageBytes: cfg.Producer.MaxMessageBytes,
	}, nil
}

// PlanTopics connects to both clusters and returns what the daemon would do on the target for
// every mirrored topic, changing nothing.
func PlanTopics(ctx context.Context, cfg *config.Config, log *zap.Logger) (topics.Plan, error) {
	m, err := New(cfg, Options{Log: log})
	if err != nil {
		return topics.Plan{}, err
	}
	srcAdmin, err := m.source.ConnectAdmin(ctx, log, nil)
	if err != nil {
		return topics.Plan{}, err
	}
	defer func() { _ = srcAdmin.Close() }()
	tgtAdmin, err := m.target.ConnectAdmin(ctx, log, nil)
	if err != nil {
		return topics.Plan{}, err
	}
	defer func() { _ = tgtAdmin.Close() }()
	syncer, err := m.newSyncer(srcAdmin, tgtAdmin, topics.Events{}, log)
	if err != nil {
		return topics.Plan{}, err
	}
	return syncer.Plan(ctx)
}

// provenance returns the provenance of this flow when topics.provenance_header is on, else nil.
func (m *Mirror) provenance() *record.Provenance {
	if !m.cfg.Topics.ProvenanceHeader {
		return nil
	}
	return record.NewProvenance(config.OriginHeader, m.cfg.Source.Alias, m.cfg.Target.Alias)
}
