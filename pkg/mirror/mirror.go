// Package mirror assembles kmirror's parts (topic sync, the source consumer group, the ring of
// partition workers and their producers) into one Mirror with a Run(ctx) lifecycle, and owns the
// order in which they start and stop.
//
// It must never stop the producers before the source has drained, nor commit before the target
// has acknowledged: shutdown is stop fetching → drain inboxes → wait for acks → commit → close
// producers → close the consumer.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/deadletter"
	"github.com/kmirror/kmirror/pkg/delivery"
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

	inboxes []*ring.Queue[*record.Record]
	handler atomic.Pointer[source.Handler]

	workerObserver worker.Observer
	sourceObserver source.Observer
	topicEvents    topics.Events

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
	session   atomic.Pointer[context.CancelFunc] // ends the current consumer-group session
	identity  *identity                          // set before anything else starts (identity.go)
}

// endSession ends the current consumer-group session; the next one starts at once.
func (m *Mirror) endSession() {
	if end := m.session.Load(); end != nil {
		(*end)()
	}
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
		m.inboxes = append(m.inboxes, ring.NewQueue[*record.Record](cfg.Ring.InboxRecords, cfg.Ring.InboxBytes))
	}
	m.workerObserver, m.sourceObserver = worker.NopObserver{}, source.NopObserver{}
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
	if opts.Metrics != nil {
		o := newObserver(opts.Metrics, opts.Tracing, len(m.inboxes))
		o.board = m.board
		if cfg.Heartbeats.Enabled {
			o.heartbeatTopic = cfg.HeartbeatTopic()
		}
		if err := o.workerGauges(m); err != nil {
			return nil, fmt.Errorf("register worker metrics: %w", err)
		}
		m.workerObserver, m.sourceObserver = o, o
		m.topicEvents = topics.Events{
			Discovered:      func(n int) { opts.Metrics.TopicsDiscovered.Add(float64(n)) },
			TopicCreated:    opts.Metrics.TargetTopicsCreated.Inc,
			PartitionsAdded: func(n int) { opts.Metrics.TargetPartitionsAdded.Add(float64(n)) },
			ConfigsAltered:  func(n int) { opts.Metrics.TargetConfigsAltered.Add(float64(n)) },
			ACLsCreated:     func(n int) { opts.Metrics.TargetACLsCreated.Add(float64(n)) },
			CycleSkipped:    opts.Metrics.CycleTopicsSkipped.Inc,
		}
	}
	m.opts = opts
	return m, nil
}

// Inboxes exposes the workers' inboxes, for occupancy metrics.
func (m *Mirror) Inboxes() []*ring.Queue[*record.Record] { return m.inboxes }

// Started returns nil while Run is running: the mirror has started its work, whether or not the
// clusters answer yet.
func (m *Mirror) Started() error {
	if !m.running.Load() {
		return errors.New("the mirror is not running")
	}
	return nil
}

// Ready returns nil when the mirror is connected to both clusters, inside a consumer-group
// session and has not failed; otherwise the reason.
func (m *Mirror) Ready() error {
	if e := m.fatalErr.Load(); e != nil {
		return fmt.Errorf("failed: %w", *e)
	}
	if !m.connected.Load() {
		return m.notConnected()
	}
	if e := m.noTopics.Load(); e != nil {
		return *e
	}
	h := m.handler.Load()
	if h == nil || !h.Joined() {
		return errors.New("not in a source consumer-group session (joining or rebalancing)")
	}
	return h.StalledErr()
}

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

	m.reached[0].Store(false)
	m.reached[1].Store(false)
	srcAdmin, err := connectAdmin(runCtx, m.log, "source", m.source, m.opts.SaramaClients)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	m.reached[0].Store(true)
	stopping := &stopper{log: m.log, total: m.cfg.Shutdown.Timeout}
	var tgtAdmin sarama.ClusterAdmin
	closeAdmins := sync.OnceFunc(func() {
		stopping.do("close the source admin client", srcAdmin.Close)
		if tgtAdmin != nil {
			stopping.do("close the target admin client", tgtAdmin.Close)
		}
	})
	defer closeAdmins()
	tgtAdmin, err = connectAdmin(runCtx, m.log, "target", m.target, m.opts.SaramaClients)
	if err != nil {
		return stoppedBeforeStart(ctx, err)
	}
	m.reached[1].Store(true)

	if err := m.distinctClusters(srcAdmin, tgtAdmin); err != nil {
		return err
	}
	if err := m.noMirrorBack(srcAdmin); err != nil {
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
	eo, err := m.openExactlyOnce(runCtx)
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
		open := worker.OpenProducer(m.target.Bootstrap(), func(bound int) (*sarama.Config, error) {
			pc, err := worker.ProducerConfig(m.target.Config(name(bound)), m.cfg.Producer, bound)
			if err == nil && m.opts.SaramaClients != nil {
				m.opts.SaramaClients(name(bound), pc)
			}
			return pc, err
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
	partitions := 0
	for _, name := range first {
		if t, ok := syncer.Lookup(name); ok {
			partitions += int(t.Partitions)
		}
	}

	// A client of the source of its own reads where claims start and commits offsets (so that
	// each commit's outcome is known); it closes after the consumer group's final commit.
	gc := m.consumerConfig()
	gc.Consumer.MaxWaitTime = m.cfg.Consumer.FetchWait(partitions)
	m.staticMember(gc)
	if eo != nil {
		gc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{eo.strategy}
	}
	offsetsCfg := m.consumerConfig()
	offsetsCfg.ClientID = gc.ClientID + "-offsets"
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("offsets", offsetsCfg)
	}
	srcClient, err := openClient(runCtx, m.source.Bootstrap(), offsetsCfg)
	if err != nil {
		return stoppedBeforeStart(ctx, fmt.Errorf("connect offsets client to source %s: %w", m.source.Alias(), err))
	}
	defer stopping.do("close the source offsets client", srcClient.Close)
	groupID := m.cfg.Consumer.GroupID
	coordinator := offsets.ClientCoordinator{Client: srcClient, Group: groupID}

	handler, err := source.New(source.Config{
		Inboxes: m.inboxes, Records: records, Topics: syncer, InFlight: m.cfg.Ring.PartitionInFlight,
		NewCommitter: func(sess sarama.ConsumerGroupSession, metadata func(string) string) offsets.Committer {
			c := offsets.NewGroupCommitter(sess, coordinator, groupID, offsetsCfg, metadata)
			if omap != nil {
				return mapFirst{c, omap.flusher}
			}
			return c
		},
		Source: source.ClientCluster{Client: srcClient}, Group: groupID,
		InitialNewest: m.cfg.Consumer.InitialOffset == "newest", LossPolicy: m.cfg.Consumer.SourceLossPolicy,
		CommitInterval: m.cfg.Commit.Interval,
		DrainTimeout:   m.cfg.Shutdown.Timeout - closeReserve(m.cfg.Shutdown.Timeout),
		RebalanceDrain: m.cfg.Consumer.RebalanceTimeout - config.DrainMargin, Stopping: runCtx.Done(),
		DeliveryTimeout: m.cfg.Producer.DeliveryTimeout, StallAfter: m.cfg.Telemetry.StallAfter,
		Copies: copies, Route: route, Positions: eo.positionsHook(namer),
		Prepare: func(ctx context.Context, w int, topic string, partition int32) error {
			return workers[w].Prepare(ctx, topic, partition)
		},
		Fatal: m.fatal, Observer: m.sourceObserver, Tracing: m.opts.Tracing, Provenance: m.provenance(), Log: m.log,
	})
	if err != nil {
		return err
	}
	m.handler.Store(handler)
	if eo != nil {
		eo.attach(handler.Metadata, source.ClientCluster{Client: srcClient}, groupID)
	}
	gs, err := m.newGroupSync(srcAdmin, tgtAdmin, srcClient, omap, handler)
	if err != nil {
		return err
	}
	if omap != nil {
		pruneDone := make(chan struct{})
		go func() {
			defer close(pruneDone)
			omap.prune(runCtx, m.pruneEvery(), handler.Claims, source.ClientCluster{Client: srcClient})
		}()
		defer stopping.do("stop pruning the offset map", func() error { stop(nil); <-pruneDone; return nil })
	}
	if gs != nil {
		m.groups.Store(gs)
		defer m.groups.Store(nil)
		syncDone := make(chan struct{})
		go func() { defer close(syncDone); gs.run(runCtx, m.cfg.Groups.SyncInterval) }()
		defer stopping.do("stop the group offset sync", func() error { stop(nil); <-syncDone; return gs.consumer.Close() })
	}

	gc.Consumer.Fetch.Default = m.fetchPartition(srcClient, syncer, first)
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("consumer", gc)
	}
	// The group's client checks the topic IDs before a partition consumer fetches again after a
	// refresh: a topic re-created under its name ends the session (pkg/source/incarnation.go).
	groupClient, err := openClient(runCtx, m.source.Bootstrap(), gc)
	if err != nil {
		return stoppedBeforeStart(ctx, fmt.Errorf("connect consumer group client to source %s: %w", m.source.Alias(), err))
	}
	defer stopping.do("close the source consumer group client", groupClient.Close)
	group, err := sarama.NewConsumerGroupFromClient(m.cfg.Consumer.GroupID, source.GuardIncarnations(groupClient, handler, m.endSession))
	if err != nil {
		return fmt.Errorf("join consumer group %q on source %s: %w", m.cfg.Consumer.GroupID, m.source.Alias(), err)
	}
	m.connected.Store(true)
	m.log.Info("connected to both clusters",
		zap.Strings("source_bootstrap", m.source.Bootstrap()), zap.Strings("target_bootstrap", m.target.Bootstrap()),
		zap.Int("workers", len(m.inboxes)), zap.String("group", m.cfg.Consumer.GroupID),
		zap.Int("source_partitions", partitions), zap.Duration("fetch_wait", gc.Consumer.MaxWaitTime),
		zap.Int32("fetch_partition_bytes", gc.Consumer.Fetch.Default))

	identityDone := make(chan struct{})
	go func() { defer close(identityDone); m.watchIdentity(runCtx) }()
	// The watcher may be inside an ID check that a frozen broker does not answer: waited for
	// within the stop's deadline only.
	defer func() { stop(nil); stopping.wait("the cluster ID check", identityDone) }()

	// Workers run on their own context, ended only after the consumer has drained.
	workerCtx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	var running errgroup.Group
	for _, w := range workers {
		running.Go(func() error { return w.Run(workerCtx) })
	}

	consumed := make(chan error, 1)
	go func() { consumed <- m.consume(runCtx, group, handler, syncer, first) }()
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

	// The consumer has stopped fetching and every claim has drained (or was given up at the
	// drain deadline, and fenced) and committed. The producers are shut down before the member
	// leaves the group: anything they still hold is aborted, so that no record of a partition
	// lands after another member took it over.
	m.log.Info("consumer stopped; closing producers")
	stopWorkers()
	workersDone := make(chan struct{})
	go func() { _ = running.Wait(); close(workersDone) }()
	stopping.wait("closing the producers", workersDone)
	stopMap() // every acknowledgement is recorded: the last of the offset map is written now
	stopping.wait("writing the offset map", mapDone)
	stopping.do("leave the source consumer group", group.Close)
	m.leftStatically()
	closeAdmins()
	m.connected.Store(false)

	if e := m.fatalErr.Load(); e != nil {
		return *e
	}
	if consumeErr != nil && !errors.Is(consumeErr, context.Canceled) {
		return consumeErr
	}
	if len(stopping.unclean) > 0 {
		m.log.Warn("stopped, not cleanly: records not acknowledged were not committed and will be mirrored again",
			zap.Strings("unfinished", stopping.unclean))
		return fmt.Errorf("stop was not clean: %s", strings.Join(stopping.unclean, "; "))
	}
	m.log.Info("stopped cleanly")
	return nil
}

// provenance returns the provenance of this flow when topics.provenance_header is on, else nil.
func (m *Mirror) provenance() *record.Provenance {
	if !m.cfg.Topics.ProvenanceHeader {
		return nil
	}
	return record.NewProvenance(config.OriginHeader, m.cfg.Source.Alias, m.cfg.Target.Alias)
}

// distinctClusters refuses to mirror a cluster into itself: validation catches one named twice
// in the bootstrap lists, but not one reached under two names (localhost and 127.0.0.1, a DNS
// alias, a load balancer); the cluster IDs tell. A cluster that reports no ID, or an ID that
// cannot be read, is let through with a warning: the cycle rules still hold under the prefix
// policy.
func (m *Mirror) distinctClusters(src, tgt sarama.ClusterAdmin) error {
	srcID, serr := cluster.ID(src, m.source.Version())
	tgtID, terr := cluster.ID(tgt, m.target.Version())
	if err := errors.Join(serr, terr); err != nil {
		m.log.Warn("could not compare the cluster IDs of source and target; going on", zap.Error(err))
		return nil
	}
	m.identity = &identity{srcAdmin: src, tgtAdmin: tgt, srcID: srcID, tgtID: tgtID}
	if srcID != "" && srcID == tgtID {
		return fmt.Errorf("source (alias %s, bootstrap %v) and target (alias %s, bootstrap %v) are the same Kafka cluster "+
			"(cluster ID %s): kmirror would read its own copies back forever (%s); point target.bootstrap at another cluster",
			m.cfg.Source.Alias, m.cfg.Source.Bootstrap, m.cfg.Target.Alias, m.cfg.Target.Bootstrap, srcID,
			selfMirror(m.cfg.Topics.ReplicationPolicy))
	}
	return nil
}

// noMirrorBack refuses to start a flow that would loop with a kmirror running the other way
// (the identity policy without the provenance header): the check validate --connect makes
// (preflight.MirrorBack), made before anything is created or copied. A check that cannot be made
// (no Describe on the reverse flow's offset map) is logged and let through, as validate reports
// it rather than failing the flow.
func (m *Mirror) noMirrorBack(src sarama.ClusterAdmin) error {
	if !preflight.MayLoop(m.cfg) {
		return nil
	}
	all, err := src.ListTopics()
	if err != nil {
		m.log.Warn("could not look for a kmirror copying the other way (list the source's topics); going on", zap.Error(err))
		return nil
	}
	c := preflight.MirrorBack(m.cfg, all, func(topic string, partition int32, ms int64) (int64, error) {
		res, err := src.ListOffsets(map[string]map[int32]int64{topic: {partition: ms}}, nil)
		if err != nil {
			return 0, err
		}
		r := res[topic][partition]
		switch {
		case r == nil:
			return 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", topic, partition)
		case r.Err != nil && !errors.Is(r.Err, sarama.ErrNoError):
			return 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, r.Err)
		}
		return r.Offset, nil
	})
	var loop *preflight.LoopError
	switch {
	case errors.As(c.Err, &loop):
		return fmt.Errorf("%w; fix: %s", c.Err, c.Fix)
	case c.Err != nil:
		m.log.Warn("could not look for a kmirror copying the other way; going on", zap.Error(c.Err), zap.String("hint", c.Fix))
	case c.Detail != "":
		m.log.Info("looked for a kmirror copying the other way", zap.String("found", c.Detail))
	}
	return nil
}

// selfMirror says what mirroring a cluster into itself would do under policy.
func selfMirror(policy string) string {
	if policy == config.PolicyPrefix {
		return "with the prefix policy, each topic copied again a level deeper"
	}
	return "with the identity policy, every record appended to its own topic again and again"
}

// deadLetterMaxBytes bounds the records the dead-letter topic takes (its max.message.bytes, with
// room for kmirror's headers on top).
const deadLetterMaxBytes = 16 << 20

// deadLetters opens the dead-letter writer when producer.refused_policy is dead_letter (nil
// otherwise) and makes sure its topic exists, so a missing permission shows at start rather than
// at the first refused record.
func (m *Mirror) deadLetters(admin sarama.ClusterAdmin, stopping *stopper) (worker.DeadLetter, func(), error) {
	if m.cfg.Producer.RefusedPolicy != config.RefusedDeadLetter {
		return nil, func() {}, nil
	}
	pc, err := worker.ProducerConfig(m.target.Config("dead-letter"), m.cfg.Producer, deadLetterMaxBytes+64<<10)
	if err != nil {
		return nil, nil, err
	}
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("dead-letter", pc)
	}
	p, err := sarama.NewSyncProducer(m.target.Bootstrap(), pc)
	if err != nil {
		return nil, nil, fmt.Errorf("open the dead-letter producer on target %s: %w", m.target.Alias(), err)
	}
	closeP := func() { stopping.do("close the dead-letter producer", p.Close) }
	w, err := deadletter.New(deadletter.Config{
		Producer: p, Admin: admin, Topic: m.cfg.DeadLetterTopicName(), SourceAlias: m.cfg.Source.Alias,
		ReplicationFactor: int16(m.cfg.Topics.ReplicationFactor), MaxMessageBytes: deadLetterMaxBytes, Log: m.log,
	})
	if err == nil {
		err = w.Ensure(context.Background())
	}
	if err != nil {
		closeP()
		return nil, nil, fmt.Errorf("dead-letter topic: %w", err)
	}
	return deadLetterWriter{w}, closeP, nil
}

// deadLetterWriter adapts the dead-letter writer to what a worker calls.
type deadLetterWriter struct{ w *deadletter.Writer }

func (d deadLetterWriter) Write(ctx context.Context, r *record.Record, reason error) error {
	return d.w.WriteRecord(ctx, r, reason)
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

func (m *Mirror) consumerConfig() *sarama.Config {
	c := m.source.Config("consumer")
	cc := m.cfg.Consumer
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = false
	// An offset out of range must never be moved silently: the handler decides where each claim
	// starts (pkg/source/start.go) and an offset that falls out of range later ends the session.
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
	return c
}

// fetchPartition is the consumer group's fetch size per partition (consumer.distant_rtt): the
// configured one, or the largest batch the mirrored topics accept when the source is distant. A
// round trip that cannot be measured keeps the configured size.
func (m *Mirror) fetchPartition(src sarama.Client, syncer *topics.Syncer, mirrored []string) int32 {
	cc := m.cfg.Consumer
	if cc.DistantRTT <= 0 {
		return cc.FetchPartitionBytes
	}
	rtt, err := cluster.RoundTrip(src, 3)
	if err != nil {
		m.log.Warn("cannot measure the round trip to the source; fetching with consumer.fetch_partition_bytes",
			zap.Error(err))
		return cc.FetchPartitionBytes
	}
	largest := 0
	for _, name := range mirrored {
		if t, ok := syncer.Lookup(name); ok {
			largest = max(largest, t.MaxMessageBytes)
		}
	}
	size := cc.FetchPartition(rtt, largest)
	if size != cc.FetchPartitionBytes {
		m.log.Info("the source is distant: each partition's fetch asks for the largest batch its topics accept",
			zap.Duration("source_rtt", rtt), zap.Duration("distant_rtt", cc.DistantRTT),
			zap.Int32("fetch_partition_bytes", size), zap.Int32("configured", cc.FetchPartitionBytes))
	}
	return size
}

// stoppedBeforeStart turns a connection error into nil when the caller asked the mirror to stop
// (nothing was fetched, so there is nothing to drain or commit).
func stoppedBeforeStart(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// openClient opens a client, giving up when ctx ends (see openAdmin).
func openClient(ctx context.Context, addrs []string, cfg *sarama.Config) (sarama.Client, error) {
	type result struct {
		c   sarama.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(addrs, cfg)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

// openAdmin opens an admin client, giving up when ctx ends: sarama dials and retries metadata for
// up to a minute against brokers that do not answer, and a stop must not wait for that (an admin
// that connects after all is closed at once).
func openAdmin(ctx context.Context, addrs []string, cfg *sarama.Config) (sarama.ClusterAdmin, error) {
	type result struct {
		a   sarama.ClusterAdmin
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := sarama.NewClusterAdmin(addrs, cfg)
		done <- result{a, err}
	}()
	select {
	case r := <-done:
		return r.a, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.a != nil {
				_ = r.a.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

// connectAdmin opens an admin client, retrying with backoff while the cluster is unreachable,
// until ctx ends.
func connectAdmin(ctx context.Context, log *zap.Logger, role string, c *cluster.Cluster, seen func(string, *sarama.Config)) (sarama.ClusterAdmin, error) {
	backoff := time.Second
	for {
		cfg := c.Config("admin")
		if seen != nil {
			seen(role+"-admin", cfg)
		}
		a, err := openAdmin(ctx, c.Bootstrap(), cfg)
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s cluster %s %v: %w", role, c.Alias(), c.Bootstrap(), context.Cause(ctx))
		}
		log.Warn("cannot reach cluster; retrying", zap.String("cluster", role), zap.String("alias", c.Alias()),
			zap.Strings("bootstrap", c.Bootstrap()), zap.Error(err), zap.String("hint", c.Hint()), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to %s cluster %s %v: %w", role, c.Alias(), c.Bootstrap(), context.Cause(ctx))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
