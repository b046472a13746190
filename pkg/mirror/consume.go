package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/group"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/slots"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/topics"
)

// consumerConfigs returns the sarama configuration of the source group's member and fetcher for
// a first topic set of partitions source partitions (they set its fetch wait:
// consumer.fetch_wait_per_partition); and that of the client beside it that reads where claims
// start.
func (m *Mirror) consumerConfigs(partitions int) (group, commits *sarama.Config) {
	group = source.ClientConfig(m.source.Config("consumer"), m.cfg.Consumer)
	group.Consumer.MaxWaitTime = m.cfg.Consumer.FetchWait(partitions)
	m.staticMember(group)
	commits = source.ClientConfig(m.source.Config("consumer"), m.cfg.Consumer)
	commits.ClientID = group.ClientID + "-offsets"
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("offsets", commits)
	}
	return group, commits
}

// sourcePartitions counts the source partitions of the topics names, as syncer last saw them.
func sourcePartitions(syncer *topics.Syncer, names []string) int {
	n := 0
	for _, name := range names {
		if t, ok := syncer.Lookup(name); ok {
			n += int(t.Partitions)
		}
	}
	return n
}

// fetcherRef is the handler's Fetcher, set once the fetcher exists (it fetches through a client
// that checks the handler's topic IDs, so it is built after the handler).
type fetcherRef struct{ f atomic.Pointer[fetch.Fetcher] }

func (r *fetcherRef) Add(topic string, partition int32, offset int64, sink fetch.Sink) error {
	return r.f.Load().Add(topic, partition, offset, sink)
}

func (r *fetcherRef) Remove(topic string, partition int32) (int64, bool) {
	return r.f.Load().Remove(topic, partition)
}

func (r *fetcherRef) Ready(topic string, partition int32) { r.f.Load().Ready(topic, partition) }

// memberRef is the source group's member, once consume has built it.
type memberRef struct{ m atomic.Pointer[group.Member] }

// inGroup reports whether the member has synced a generation.
func (r *memberRef) inGroup() bool {
	mb := r.m.Load()
	return mb != nil && mb.Generation().ID >= 0
}

// committer is the handler's NewCommitter: the member's commits (pkg/group), after the offset map
// om when there is one (mapFirst).
func (r *memberRef) committer(om *offsetMap) func(func(string) string) offsets.Committer {
	return func(metadata func(string) string) offsets.Committer {
		c := r.m.Load().NewCommitter(metadata)
		if om != nil {
			return mapFirst{c, om.flusher}
		}
		return c
	}
}

// openFetcher opens the source client the fetcher and the member use (gc), and the fetcher, which
// fetches through a client that checks the topic IDs after each metadata refresh: a topic
// re-created under its name restarts its claims (pkg/source/incarnation.go). The returned
// close closes both.
func (m *Mirror) openFetcher(ctx context.Context, gc *sarama.Config, lanes int, h *source.Handler, ref *fetcherRef) (sarama.Client, func() error, error) {
	client, err := m.source.OpenClient(ctx, gc)
	if err != nil {
		return nil, nil, fmt.Errorf("connect consumer group client to source %s: %w", m.source.Alias(), err)
	}
	f, err := fetch.New(context.Background(), fetch.Config{
		Client:   source.GuardIncarnations(client, h, h.RestartTopic),
		MaxBytes: gc.Consumer.Fetch.MaxBytes, PartitionMaxBytes: gc.Consumer.Fetch.Default, MinBytes: gc.Consumer.Fetch.Min,
		// A partition's fetch limit raised for a large batch stays, up to the largest batch the
		// memory bound counts a fetch share at (config.Memory.Fetch).
		KeepMaxBytes: int32(min(int64(m.cfg.Producer.MaxMessageBytes), math.MaxInt32)),
		MaxWait:      gc.Consumer.MaxWaitTime, ReadCommitted: gc.Consumer.IsolationLevel == sarama.ReadCommitted,
		Lanes: lanes, SessionPartitions: m.cfg.Consumer.SessionPartitions(), MaxLanes: config.MaxFetchLanes,
		MaxHeldBytes: m.cfg.Consumer.HeldPerWorker(m.cfg.Ring.Workers),
		Backoff:      gc.Consumer.Retry.Backoff, Logger: m.log, Events: m.fetchEvents,
	})
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("fetch from source %s: %w", m.source.Alias(), err)
	}
	ref.f.Store(f)
	return client, func() error { f.Close(); return client.Close() }, nil
}

// groupStrategy is the slot strategy the member plans with: exactly-once's, or one over
// delivery.slots.
func (m *Mirror) groupStrategy(eo *exactlyOnce) (*slots.Strategy, error) {
	if eo != nil {
		return eo.strategy, nil
	}
	s, err := slots.NewStrategy(slots.Config{Slots: m.cfg.Delivery.Slots})
	if err != nil {
		return nil, fmt.Errorf("delivery.slots: %w", err)
	}
	return s, nil
}

// previousStrategy is the assignment the previous release's members joined with, which the
// member offers last so that a rolling upgrade can add it to a group of them: in at_least_once
// sarama's consumer.rebalance_strategy (source.ClientConfig sets it in gc); in exactly_once the
// slot strategy itself, which the member offers anyway (nil).
func (m *Mirror) previousStrategy(gc *sarama.Config) sarama.BalanceStrategy {
	if m.cfg.Delivery.Mode == config.ExactlyOnce || len(gc.Consumer.Group.Rebalance.GroupStrategies) == 0 {
		return nil
	}
	return gc.Consumer.Group.Rebalance.GroupStrategies[0]
}

// consume runs the source group's member over the current topic set until ctx ends, subscribing
// it again whenever the periodic refresh finds topics added or removed: the partitions of the
// topics that stay keep flowing. The first topics are first, refreshed by the caller.
func (m *Mirror) consume(ctx context.Context, client sarama.Client, strategy *slots.Strategy, h *source.Handler, ref *memberRef,
	syncer *topics.Syncer, first []string) error {
	names := first
	for round := 0; ; round++ {
		if round > 0 {
			var err error
			if names, err = m.refresh(ctx, syncer); err != nil {
				return err
			}
		}
		m.noBusinessTopics(names)
		if len(names) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.cfg.Topics.RefreshInterval):
		}
	}
	m.log.Info("mirroring topics", zap.Strings("topics", names))
	member, err := group.New(group.Config{
		Client: client, Group: m.cfg.Consumer.GroupID, Topics: names, Strategy: strategy, Handler: h,
		Previous: m.previousStrategy(client.Config()), InstanceID: m.cfg.Consumer.GroupInstanceID, Logger: m.log,
	})
	if err != nil {
		return fmt.Errorf("join consumer group %q on source %s: %w", m.cfg.Consumer.GroupID, m.source.Alias(), err)
	}
	ref.m.Store(member)
	h.Start()
	defer h.Stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := spawn(func() { m.watchTopics(watchCtx, syncer, names, member) })
	defer func() { stopWatch(); <-watched }()
	err = member.Run(ctx)
	if err == nil || ctx.Err() != nil {
		return nil
	}
	if fenced := m.fencedInstance(err); fenced != nil {
		return fenced
	}
	return fmt.Errorf("consumer group %q on source %s: %w", m.cfg.Consumer.GroupID, m.source.Alias(), err)
}

// noBusinessTopics records whether names hold a topic of the flow's own: the flow's heartbeat
// topic alone keeps the member going, but does not make it ready.
func (m *Mirror) noBusinessTopics(names []string) {
	if slices.ContainsFunc(names, m.isBusinessTopic) {
		m.noTopics.Store(nil)
		return
	}
	if m.noTopics.Load() == nil {
		m.log.Warn("no source topic matches topics.include yet; looking again later",
			zap.Strings("include", m.cfg.Topics.Include), zap.Strings("exclude", m.cfg.Topics.Exclude),
			zap.Duration("every", m.cfg.Topics.RefreshInterval))
	}
	err := fmt.Errorf("no source topic matches topics.include %q (exclude %q); looking again every %s",
		m.cfg.Topics.Include, m.cfg.Topics.Exclude, m.cfg.Topics.RefreshInterval)
	m.noTopics.Store(&err)
}

// refreshRetryMax bounds the wait between two listings while a cluster cannot be listed: the
// copy resumes within it once the cluster is back (a longer backoff added up to 16 s after a 30 s
// outage). A listing is two small requests, cheap to repeat.
const refreshRetryMax = time.Second

// refresh syncs the topics, retrying while the clusters cannot be listed (logged once, then
// every 30 s).
func (m *Mirror) refresh(ctx context.Context, syncer *topics.Syncer) ([]string, error) {
	backoff := 250 * time.Millisecond
	warn := rate.Sometimes{First: 1, Interval: 30 * time.Second}
	for {
		err := m.sameClusters()
		if err == nil {
			var names []string
			names, err = syncer.Refresh(ctx)
			if err == nil || len(names) > 0 {
				return names, nil
			}
		}
		if swapped := (*cluster.SwappedError)(nil); errors.As(err, &swapped) {
			m.fatal(err)
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		warn.Do(func() { m.log.Warn("sync topics; retrying", zap.Error(err), zap.Duration("every", refreshRetryMax)) })
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, refreshRetryMax)
	}
}

// watchTopics subscribes the member to the refreshed topic set whenever it differs from current,
// so that the group plans with it. (New partitions of subscribed topics are found by the group's
// leader, which rebalances when a partition count changes.)
func (m *Mirror) watchTopics(ctx context.Context, syncer *topics.Syncer, current []string, member *group.Member) {
	t := time.NewTicker(m.cfg.Topics.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.sameClusters(); err != nil {
				continue // a swapped cluster stops the mirror (watchIdentity); nothing is synced into it
			}
			names, err := syncer.Refresh(ctx)
			if err != nil {
				m.log.Warn("refresh topics", zap.Error(err))
			}
			if len(names) == 0 || slices.Equal(names, current) {
				continue
			}
			m.noBusinessTopics(names)
			m.log.Info("topic set changed; rejoining the group with it", zap.Strings("topics", names))
			if err := member.Subscribe(names); err != nil {
				m.log.Warn("subscribe to the new topic set", zap.Error(err))
				continue
			}
			current = names
		}
	}
}
