package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/groups"
	"github.com/kmirror/kmirror/pkg/offsetmap"
	"github.com/kmirror/kmirror/pkg/source"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

// probeWait bounds one read of the source that settles a position past the last record mirrored.
const probeWait = time.Second

// translator translates with the offset map x, settling positions past the last copy with p and
// ignoring chunks of an earlier incarnation of a re-created topic.
func translator(x *offsetmap.Index, p offsetmap.Prober, ids *topicIDs) groups.Translator {
	return func(ctx context.Context, topic string, partition int32, off int64) (offsetmap.Translation, error) {
		tr := x.Translate(topic, partition, off, ids.get(topic))
		res, err := offsetmap.Resolve(ctx, tr, p)
		if err != nil {
			tr.Reason = fmt.Sprintf("%s (and the source could not be read past it: %v)", tr.Reason, err)
			return tr, nil
		}
		return res, nil
	}
}

// topicIDs caches the source topics' IDs for a minute.
type topicIDs struct {
	src source.ClientCluster
	mu  sync.Mutex
	ids map[string]string
	at  time.Time
}

func (t *topicIDs) get(topic string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[topic]; ok && time.Since(t.at) < time.Minute {
		return id
	}
	if time.Since(t.at) >= time.Minute {
		t.ids, t.at = map[string]string{}, time.Now()
	}
	got, err := t.src.TopicIDs([]string{topic})
	if err != nil {
		return "" // every chunk of the topic is used, as before topic IDs existed
	}
	t.ids[topic] = got[topic]
	return got[topic]
}

// mirroredTopics says whether a source topic is mirrored and its target's name: the topic
// syncer's own decision (filter, heartbeat rule, cycles), not a copy of it.
func mirroredTopics(cfg *config.Config) (func(string) (string, bool), error) {
	sc, err := syncerConfig(cfg)
	if err != nil {
		return nil, err
	}
	return sc.Mirrored, nil
}

// groupSync runs the group offset sync of this member's partitions and serves translations.
type groupSync struct {
	translate *groups.Syncer // every partition, for /offsets/translate
	sync      *groups.Syncer // this member's partitions; nil when groups.include is empty
	consumer  sarama.Consumer
}

// newGroupSync wires the group offset sync: nil when the offset map is off.
func (m *Mirror) newGroupSync(srcAdmin, tgtAdmin sarama.ClusterAdmin, srcClient sarama.Client, omap *offsetMap, h *source.Handler) (*groupSync, error) {
	if omap == nil {
		return nil, nil
	}
	mirrored, err := mirroredTopics(m.cfg)
	if err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(srcClient)
	if err != nil {
		return nil, fmt.Errorf("group offset sync: read the source: %w", err)
	}
	tr := translator(omap.index, &offsetmap.SourceProber{Consumer: consumer, Wait: probeWait},
		&topicIDs{src: source.ClientCluster{Client: srcClient}})
	gcfg := groups.Config{
		Source: srcAdmin, Target: tgtAdmin, TargetClient: omap.client,
		Include: m.cfg.Groups.Include, Exclude: m.cfg.Groups.Exclude, Own: m.cfg.Consumer.GroupID,
		Topics: mirrored, Translate: tr, Log: m.log,
	}
	gs := &groupSync{consumer: consumer}
	if gs.translate, err = groups.New(gcfg); err != nil {
		_ = consumer.Close()
		return nil, err
	}
	if len(m.cfg.Groups.Include) > 0 {
		gcfg.Owned = h.Owns
		if mt := m.opts.Metrics; mt != nil {
			gcfg.Observer = syncMetrics{mt}
		}
		if gs.sync, err = groups.New(gcfg); err != nil {
			_ = consumer.Close()
			return nil, err
		}
	}
	return gs, nil
}

// run syncs every groups.sync_interval until ctx ends.
func (gs *groupSync) run(ctx context.Context, interval time.Duration) {
	if gs.sync != nil {
		_ = gs.sync.Run(ctx, interval)
	}
}

// Planner returns what plans a group's translation while the mirror runs with the offset map
// (nil otherwise): the HTTP endpoint /offsets/translate serves it.
func (m *Mirror) Planner() groups.Planner {
	gs := m.groups.Load()
	if gs == nil {
		return nil
	}
	return gs.translate.Plan
}

// syncMetrics reports the sync's rounds as metrics.
type syncMetrics struct{ m *telemetry.Metrics }

func (s syncMetrics) Synced(_ string, partitions int) {
	if partitions > 0 {
		s.m.GroupsSynced.Inc()
	}
}

func (s syncMetrics) Round(at time.Time, _ int, untranslatable int) {
	s.m.GroupSyncLast.Set(float64(at.UnixNano()) / 1e9)
	s.m.GroupSyncUntranslatable.Set(float64(untranslatable))
}

func (s syncMetrics) Failed(string, error) {}

func (s syncMetrics) CommittedByOthers(string) { s.m.GroupSyncCommittedByOthers.Inc() }

// GroupTools are the group offset sync as the offsets and failover commands use it: both
// clusters, the offset map read from the target, and a syncer over every partition.
type GroupTools struct {
	// Syncer translates and commits; nil when the source cannot be read (SourceErr says why).
	Syncer *groups.Syncer
	// SourceErr is why the source could not be reached; LastSynced still reads the target.
	SourceErr error
	// Chunks is how many chunks of the offset map were read.
	Chunks    int
	tgtAdmin  sarama.ClusterAdmin
	tgtClient sarama.Client
	closers   []func() error
}

// LastSynced reports what group holds on the target (what the group offset sync last committed),
// for when the source cannot be read.
func (t *GroupTools) LastSynced(ctx context.Context, group string) (groups.Report, error) {
	return groups.LastSynced(ctx, t.tgtAdmin, t.tgtClient, group)
}

// OpenGroupTools connects to both clusters within ctx, reads the offset map and returns the
// tools; force lets Apply move target groups backwards. A source that cannot be reached within
// sourceTimeout (the site is lost) leaves Syncer nil and says why in SourceErr: the target is
// still read, for LastSynced.
func OpenGroupTools(ctx context.Context, cfg *config.Config, log *zap.Logger, force bool, sourceTimeout time.Duration) (*GroupTools, error) {
	m, err := New(cfg, Options{Log: log})
	if err != nil {
		return nil, err
	}
	if !cfg.OffsetMap.Enabled {
		return nil, errors.New("offset_map.enabled is off: there is no offset map to translate with")
	}
	t := &GroupTools{}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	tgtAdmin, err := connectAdmin(ctx, log, "target", m.target, nil)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, tgtAdmin.Close)
	tcfg := m.target.Config("offsets")
	tcfg.Consumer.Return.Errors = true
	tgtClient, err := openClient(ctx, m.target.Bootstrap(), tcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %w", m.target.Alias(), err)
	}
	t.closers = append(t.closers, tgtClient.Close)
	t.tgtAdmin, t.tgtClient = tgtAdmin, tgtClient
	sctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	srcAdmin, err := connectAdmin(sctx, log, "source", m.source, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		t.SourceErr = err
		ok = true
		return t, nil
	}
	t.closers = append(t.closers, srcAdmin.Close)
	srcClient, err := openClient(sctx, m.source.Bootstrap(), m.consumerConfig())
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		t.SourceErr = fmt.Errorf("connect to source %s: %w", m.source.Alias(), err)
		ok = true
		return t, nil
	}
	t.closers = append(t.closers, srcClient.Close)
	store, err := offsetmap.NewStore(offsetmap.StoreConfig{Topic: cfg.OffsetMapTopic(), Client: tgtClient, Log: log})
	if err != nil {
		return nil, err
	}
	x := offsetmap.NewIndex()
	if err := store.Load(ctx, x); err != nil {
		return nil, err
	}
	t.Chunks = x.Len()
	// Keep following the map: a failover waits for the mirror to reach the groups' positions.
	follow, stopFollow := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); _ = store.Follow(follow, x, nil) }()
	t.closers = append(t.closers, func() error { stopFollow(); <-followed; return nil })
	consumer, err := sarama.NewConsumerFromClient(srcClient)
	if err != nil {
		return nil, fmt.Errorf("read source %s: %w", m.source.Alias(), err)
	}
	t.closers = append(t.closers, consumer.Close)
	mirrored, err := mirroredTopics(cfg)
	if err != nil {
		return nil, err
	}
	t.Syncer, err = groups.New(groups.Config{
		Source: srcAdmin, Target: tgtAdmin, TargetClient: tgtClient, Own: cfg.Consumer.GroupID, Topics: mirrored,
		Translate: translator(x, &offsetmap.SourceProber{Consumer: consumer, Wait: probeWait}, &topicIDs{src: source.ClientCluster{Client: srcClient}}),
		Force:     force, Log: log,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return t, nil
}

// Close closes the clients, the last opened first.
func (t *GroupTools) Close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		_ = t.closers[i]()
	}
	t.closers = nil
}
