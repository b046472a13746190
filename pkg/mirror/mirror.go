// Package mirror assembles kmirror's parts (topic sync, the source consumer group, the ring of
// partition workers and their producers) into one Mirror with a Run(ctx) lifecycle, and owns the
// order in which they start and stop.
//
// It must never stop the producers before the source has drained, nor commit before the target
// has acknowledged: shutdown is stop fetching → drain inboxes → wait for acks → commit → close
// producers → close the consumer.
//
// mirror.go holds that order (New, Run, fatal); each other file wires one part into it:
// connect.go (the admin clients), identity.go (the clusters' IDs), topics.go (filter and
// syncer), heartbeat.go, deadletter.go, offsetmap.go, delivery.go (exactly-once), consume.go
// (the source group's member, pkg/group, and fetcher, pkg/fetch), membership.go (static membership),
// groups.go (group offset sync), observe.go (metrics and traces), status.go (/status and
// readiness), reload.go, and stop.go (the stop's deadline).
package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/delivery"
	"github.com/kmirror/kmirror/pkg/fetch"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/preflight"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
	"github.com/kmirror/kmirror/pkg/worker"
)

// Options are the collaborators a Mirror reports to; nil fields observe nothing.
type Options struct {
	Log *zap.Logger
	// Metrics, when set, receives the data path's counters, histograms and gauges.
	Metrics *telemetry.Metrics
	// Tracing, when enabled, traces sampled records stage by stage.
	Tracing *telemetry.Tracing
	// SaramaClients, when set, is told of every sarama client's configuration as it is created
	// (name, config), so its go-metrics registry can be exported.
	SaramaClients func(name string, c *sarama.Config)
	// OffsetMapPruneEvery is how often the offset map's expired chunks are deleted (5 minutes
	// when zero); tests shorten it.
	OffsetMapPruneEvery time.Duration
}

// Mirror copies the selected topics from the source cluster to the target cluster.
type Mirror struct {
	cfg    *config.Config
	opts   Options
	log    *zap.Logger
	source *cluster.Cluster
	target *cluster.Cluster

	inboxes []*ring.Queue[*record.Batch]
	handler atomic.Pointer[source.Handler]

	workerObserver worker.Observer
	sourceObserver source.Observer
	topicEvents    topics.Events
	fetchEvents    fetch.Events

	workers atomic.Pointer[[]*worker.Worker]
	groups  atomic.Pointer[groupSync]

	filter  *topics.Filter                // topics.include and exclude, replaced by Reload
	board   *status.Board                 // what /status reports (status.go)
	live    atomic.Pointer[config.Config] // the configuration as last reloaded (reload.go)
	started time.Time

	running   atomic.Bool
	noTopics  atomic.Pointer[error] // set while no source topic matches topics.include
	fatalOnce sync.Once
	fatalErr  atomic.Pointer[error]
	connected atomic.Bool
	reached   [2]atomic.Bool // source, target: an admin client has connected (status.go)
	stopFatal context.CancelCauseFunc
	identity  *identity // set before anything else starts (identity.go)
}

// New checks the configuration's cluster settings and returns a Mirror; nothing connects until
// Run.
func New(cfg *config.Config, opts Options) (*Mirror, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	src, err := cluster.New("source", cfg.Source)
	if err != nil {
		return nil, err
	}
	tgt, err := cluster.New("target", cfg.Target)
	if err != nil {
		return nil, err
	}
	m := &Mirror{cfg: cfg, opts: opts, log: opts.Log, source: src, target: tgt, board: status.NewBoard()}
	m.live.Store(cfg)
	if m.filter, err = newFilter(cfg); err != nil {
		return nil, err
	}
	for range cfg.Ring.Workers {
		m.inboxes = append(m.inboxes, ring.NewQueue[*record.Batch](cfg.Ring.InboxRecords, cfg.Ring.InboxBytes))
	}
	if opts.Tracing == nil {
		opts.Tracing = &telemetry.Tracing{}
	}
	if opts.Metrics == nil {
		// The observer also ends the records' spans and feeds the status board; it needs metrics
		// to write to, even unread.
		if opts.Metrics, err = telemetry.NewMetrics(prometheus.NewRegistry()); err != nil {
			return nil, err
		}
	}
	if err := m.observe(opts.Metrics, opts.Tracing); err != nil {
		return nil, err
	}
	m.opts = opts
	return m, nil
}

// Inboxes exposes the workers' inboxes, for occupancy metrics.
func (m *Mirror) Inboxes() []*ring.Queue[*record.Batch] { return m.inboxes }

// fatal records the first unrecoverable error and starts the shutdown. Every worker is aborted
// first: a record after the one that failed must not reach the target, and producers flushing
// what they hold could write exactly that.
func (m *Mirror) fatal(err error) {
	m.fatalOnce.Do(func() {
		m.fatalErr.Store(&err)
		if ws := m.workers.Load(); ws != nil {
			for _, w := range *ws {
				w.Abort()
			}
		}
		m.log.Error("stopping: a partition cannot go on", zap.Error(err))
		if m.stopFatal != nil {
			m.stopFatal(err)
		}
	})
}

// Run mirrors until ctx ends or a fatal error occurs. On the way out it drains and commits
// within the shutdown timeout. It returns nil after an orderly stop and the fatal error
// otherwise.
func (m *Mirror) Run(ctx context.Context) error {
	m.started = time.Now()
	m.running.Store(true)
	defer m.running.Store(false)
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	m.stopFatal = stop

	stopping := &stopper{log: m.log, total: m.cfg.Shutdown.Timeout}
	srcAdmin, tgtAdmin, closeAdmins, err := m.connect(runCtx, stopping)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	defer closeAdmins()

	if err := m.distinctClusters(srcAdmin, tgtAdmin); err != nil {
		return err
	}
	if err := preflight.NoMirrorBack(m.cfg, srcAdmin, m.log); err != nil {
		return err
	}
	syncer, err := m.newSyncer(srcAdmin, tgtAdmin, m.topicEvents, m.log)
	if err != nil {
		return err
	}
	namer, err := topics.NewNamer(m.cfg.Topics.ReplicationPolicy, m.cfg.Source.Alias)
	if err != nil {
		return err
	}
	stopHeartbeats, err := m.startHeartbeats(runCtx, srcAdmin)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	defer stopping.do("stop the heartbeats", stopHeartbeats)

	// Workers start before the consumer and stop after it has drained, and before the member
	// leaves the group: what a producer still holds then is aborted, never flushed.
	records := &record.Pool{} // filled by the handler, emptied by the workers
	clock := &worker.Clock{}
	clockCtx, stopClock := context.WithCancel(context.Background())
	defer stopClock()
	go clock.Run(clockCtx)
	dead, closeDead, err := m.deadLetters(tgtAdmin, stopping)
	if err != nil {
		return err
	}
	defer closeDead()
	omap, err := m.openOffsetMap(runCtx, tgtAdmin)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	var copies func(string, int32, string, int64, *offsets.Partition) (record.Copies, func())
	mapDone := make(chan struct{})
	mapCtx, stopMap := context.WithCancel(context.Background())
	defer stopMap()
	if omap != nil {
		copies = omap.copies
		go func() { defer close(mapDone); omap.run(mapCtx) }()
		defer stopping.do("close the offset-map clients", func() error { omap.close(); return nil })
	} else {
		close(mapDone)
	}
	prod := m.producerConfig(runCtx)
	eo, err := m.openExactlyOnce(runCtx, prod)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	var txns *delivery.Slots
	route := func(topic string, partition int32) int { return ring.Route(topic, partition, len(m.inboxes)) }
	if eo != nil {
		txns, route = eo.slots, eo.route(len(m.inboxes))
		defer stopping.do("close the transactional producers", eo.close)
	}
	// Under exactly-once the map is written before each transaction commits the positions it
	// covers (worker.commitTxn); at-least-once writes it before each source commit (mapFirst).
	var writeMap func(context.Context, []record.Copies) error
	if omap != nil && txns != nil {
		writeMap = omap.write
	}
	workers := make([]*worker.Worker, len(m.inboxes))
	for i := range m.inboxes {
		name := func(bound int) string { return fmt.Sprintf("producer-%d-%d", i, bound) }
		open := worker.OpenPipeline(m.target.Bootstrap(), prod, m.log, func(bound int) *sarama.Config {
			pc := m.target.Config(name(bound))
			if m.opts.SaramaClients != nil {
				m.opts.SaramaClients(name(bound), pc)
			}
			return pc
		})
		w, err := worker.New(worker.Config{
			ID: i, Inbox: m.inboxes[i], Records: records, NewProducer: open,
			Compressed: m.cfg.Producer.Compression != "none", Policy: m.cfg.Producer.RefusedPolicy, Clock: clock,
			DeadLetter: dead, Txns: txns, WriteMap: writeMap,
			Fatal: m.fatal, Observer: m.workerObserver, Log: m.log,
		})
		if err != nil {
			return err
		}
		workers[i] = w
	}
	m.workers.Store(&workers)
	if e := m.fatalErr.Load(); e != nil {
		return *e
	}

	// The first topic set, before the consumer group exists: its partition count sets the
	// group's fetch wait (consumer.fetch_wait_per_partition).
	first, err := m.refresh(runCtx, syncer)
	if err != nil || runCtx.Err() != nil {
		return stoppedBeforeStart(ctx, err)
	}
	partitions := sourcePartitions(syncer, first)

	// A client of the source of its own reads where claims start; the member (pkg/group) commits.
	gc, offsetsCfg := m.consumerConfigs(partitions)
	srcClient, err := m.source.OpenClient(runCtx, offsetsCfg)
	if err != nil {
		return stoppedBeforeStart(ctx, fmt.Errorf("connect offsets client to source %s: %w", m.source.Alias(), err))
	}
	defer stopping.do("close the source offsets client", srcClient.Close)
	groupID := m.cfg.Consumer.GroupID
	strategy, err := m.groupStrategy(eo)
	if err != nil {
		return err
	}

	// Workers run on their own context, ended only after the consumer has drained (or, when a
	// partition was given up at a stop, before the member leaves the group: AbortWrites).
	workerCtx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	var running errgroup.Group
	var member memberRef
	var fetcher fetcherRef
	handler, err := source.New(source.Config{
		Inboxes: m.inboxes, Records: records, Topics: syncer, InFlight: m.cfg.Ring.PartitionInFlight,
		NewCommitter: member.committer(omap), Fetcher: &fetcher, InGroup: member.inGroup,
		Source: source.ClientCluster{Client: srcClient}, Group: groupID,
		InitialNewest: m.cfg.Consumer.InitialOffset == "newest", LossPolicy: m.cfg.Consumer.SourceLossPolicy,
		CommitInterval: m.cfg.Commit.Interval,
		DrainTimeout:   m.cfg.Shutdown.Timeout - closeReserve(m.cfg.Shutdown.Timeout),
		RebalanceDrain: m.cfg.Consumer.RebalanceTimeout - config.DrainMargin, Stopping: runCtx.Done(),
		DeliveryTimeout: m.cfg.Producer.DeliveryTimeout, StallAfter: m.cfg.Telemetry.StallAfter,
		Copies: copies, Route: route, Positions: eo.positionsHook(namer), Released: eo.releasedHook(),
		Prepare: func(ctx context.Context, w int, topic string, partition int32) error {
			return workers[w].Prepare(ctx, topic, partition)
		},
		AbortWrites: func() {
			stopWorkers()
			waitAtMost(spawn(func() { _ = running.Wait() }), closeReserve(m.cfg.Shutdown.Timeout)/2)
		},
		Fatal: m.fatal, Observer: m.sourceObserver, Tracing: m.opts.Tracing, Provenance: m.provenance(), Log: m.log,
	})
	if err != nil {
		return err
	}
	m.handler.Store(handler)
	if eo != nil {
		eo.attach(handler, source.ClientCluster{Client: srcClient}, groupID)
	}
	gs, err := m.newGroupSync(srcAdmin, tgtAdmin, srcClient, omap, handler)
	if err != nil {
		return err
	}
	if omap != nil {
		pruned := spawn(func() { omap.prune(runCtx, m.pruneEvery(), handler.Claims, source.ClientCluster{Client: srcClient}) })
		defer stopping.do("stop pruning the offset map", func() error { stop(nil); <-pruned; return nil })
	}
	if gs != nil {
		m.groups.Store(gs)
		defer m.groups.Store(nil)
		synced := spawn(func() { gs.run(runCtx, m.cfg.Groups.SyncInterval) })
		defer stopping.do("stop the group offset sync", func() error { stop(nil); <-synced; return gs.consumer.Close() })
	}

	var lanes int
	gc.Consumer.Fetch.Default, lanes = source.FetchSizing(srcClient, m.cfg.Consumer, first, partitions, syncer.Lookup, m.log)
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("consumer", gc)
	}
	groupClient, closeFetch, err := m.openFetcher(runCtx, gc, lanes, handler, &fetcher)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	defer stopping.do("close the source fetcher and consumer group client", closeFetch)
	m.connected.Store(true)
	m.log.Info("connected to both clusters",
		zap.Strings("source_bootstrap", m.source.Bootstrap()), zap.Strings("target_bootstrap", m.target.Bootstrap()),
		zap.Int("workers", len(m.inboxes)), zap.String("group", m.cfg.Consumer.GroupID),
		zap.Int("source_partitions", partitions), zap.Duration("fetch_wait", gc.Consumer.MaxWaitTime),
		zap.Int32("fetch_partition_bytes", gc.Consumer.Fetch.Default), zap.Int("fetch_lanes", lanes))

	identityDone := spawn(func() { m.watchIdentity(runCtx) })
	// The watcher may be inside an ID check that a frozen broker does not answer: waited for
	// within the stop's deadline only.
	defer func() { stop(nil); stopping.wait("the cluster ID check", identityDone) }()

	for _, w := range workers {
		running.Go(func() error { return w.Run(workerCtx) })
	}

	consumed := make(chan error, 1)
	go func() { consumed <- m.consume(runCtx, groupClient, strategy, handler, &member, syncer, first) }()
	var consumeErr error
	select {
	case consumeErr = <-consumed:
		stopping.begin()
	case <-runCtx.Done():
		// The stop begins: the drain, the final commit, the producers and the clients all end
		// within shutdown.timeout from now.
		stopping.begin()
		stopping.do("draining and committing", func() error { consumeErr = <-consumed; return nil })
	}
	if n := handler.GivenUp(); n > 0 {
		stopping.fail(fmt.Sprintf("%d partitions were given up before all their records were acknowledged", n))
	}

	// The member has left the group: every claim has drained (or was given up at the drain
	// deadline, fenced, and the producers aborted before it left: AbortWrites) and committed.
	m.log.Info("consumer stopped; closing producers")
	stopWorkers()
	stopping.wait("closing the producers", spawn(func() { _ = running.Wait() }))
	stopMap() // every acknowledgement is recorded: the last of the offset map is written now
	stopping.wait("writing the offset map", mapDone)
	m.leftStatically()
	closeAdmins()
	m.connected.Store(false)

	if e := m.fatalErr.Load(); e != nil {
		return *e
	}
	if consumeErr != nil && !errors.Is(consumeErr, context.Canceled) {
		return consumeErr
	}
	return stopping.verdict()
}
