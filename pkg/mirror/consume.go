package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/topics"
)

// consumerConfigs returns the consumer group's sarama configuration for a first topic set of
// partitions source partitions (they set its fetch wait: consumer.fetch_wait_per_partition), a
// static member when consumer.group_instance_id is set (membership.go), with the slots strategy
// under exactly-once; and that of the client beside it that reads where claims start and commits
// offsets.
func (m *Mirror) consumerConfigs(partitions int, eo *exactlyOnce) (group, commits *sarama.Config) {
	group = source.ClientConfig(m.source.Config("consumer"), m.cfg.Consumer)
	group.Consumer.MaxWaitTime = m.cfg.Consumer.FetchWait(partitions)
	m.staticMember(group)
	if eo != nil {
		group.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{eo.strategy}
	}
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

// consume runs consumer-group sessions over the current topic set until ctx ends, restarting the
// session whenever the periodic refresh finds topics added or removed. The first session's
// topics are first, refreshed by the caller.
func (m *Mirror) consume(ctx context.Context, group sarama.ConsumerGroup, h *source.Handler, syncer *topics.Syncer, first []string) error {
	var g errgroup.Group
	g.Go(func() error {
		errLog := rate.Sometimes{First: 1, Interval: 30 * time.Second}
		suppressed := 0
		for {
			select {
			case err, ok := <-group.Errors():
				if !ok {
					return nil
				}
				m.sourceObserver.GroupError(err)
				// One line per problem: an outage makes sarama report the same error for every
				// partition and retry; the first is logged, then one every 30 s with the count.
				suppressed++
				errLog.Do(func() {
					m.log.Warn("source consumer group", zap.Error(err), zap.Int("errors_since_last_line", suppressed))
					suppressed = 0
				})
			case <-ctx.Done():
				return nil
			}
		}
	})
	defer func() { _ = g.Wait() }()

	var current []string
	for round := 0; ; round++ {
		names := first
		var err error
		if round > 0 {
			if names, err = m.refresh(ctx, syncer); err != nil {
				return err
			}
		}
		// The flow's heartbeat topic alone keeps the session going, but does not make it ready.
		if slices.ContainsFunc(names, m.isBusinessTopic) {
			m.noTopics.Store(nil)
		} else {
			if m.noTopics.Load() == nil {
				m.log.Warn("no source topic matches topics.include yet; looking again later",
					zap.Strings("include", m.cfg.Topics.Include), zap.Strings("exclude", m.cfg.Topics.Exclude),
					zap.Duration("every", m.cfg.Topics.RefreshInterval))
			}
			err := fmt.Errorf("no source topic matches topics.include %q (exclude %q); looking again every %s",
				m.cfg.Topics.Include, m.cfg.Topics.Exclude, m.cfg.Topics.RefreshInterval)
			m.noTopics.Store(&err)
		}
		if len(names) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(m.cfg.Topics.RefreshInterval):
			}
			continue
		}
		if !slices.Equal(names, current) {
			m.log.Info("mirroring topics", zap.Strings("topics", names))
			current = names
		}

		sessCtx, endSession := context.WithCancel(ctx)
		m.session.Store(&endSession)
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			m.watchTopics(sessCtx, syncer, current, endSession)
		}()
		err = group.Consume(sessCtx, current, h)
		endSession()
		<-watchDone
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return err
			}
			if fenced := m.fencedInstance(err); fenced != nil {
				return fenced
			}
			m.log.Warn("consumer group session ended with an error; rejoining", zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
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

// watchTopics ends the session when the refreshed topic set differs from current, so that the
// next session subscribes to the new set. (New partitions of subscribed topics are found by
// sarama itself, which rebalances the group when a partition count changes.)
func (m *Mirror) watchTopics(ctx context.Context, syncer *topics.Syncer, current []string, endSession func()) {
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
			if len(names) > 0 && !slices.Equal(names, current) {
				m.log.Info("topic set changed; rejoining the group with it", zap.Strings("topics", names))
				endSession()
				return
			}
		}
	}
}

// endSession ends the current consumer-group session; the next one starts at once.
func (m *Mirror) endSession() {
	if end := m.session.Load(); end != nil {
		(*end)()
	}
}
