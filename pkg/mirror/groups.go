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
	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
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
// syncer's own decision (filter — the mirror's own, which a reload changes —, heartbeat rule,
// cycles), not a copy of it.
func mirroredTopics(cfg *config.Config, filter *topics.Filter) (func(string) (string, bool), error) {
	sc, err := syncerConfig(cfg, filter)
	if err != nil {
		return nil, err
	}
	return sc.Mirrored, nil
}

// groupSync runs the group offset sync of this member's partitions and serves translations.
type groupSync struct {
	translate *groups.Syncer // every partition, for /offsets/translate
	consumer  sarama.Consumer
	cfg       groups.Config // of sync, for a reload of groups.include and groups.exclude

	mu      sync.Mutex
	sync    *groups.Syncer // this member's partitions; nil when groups.include is empty
	restart chan struct{}  // a reload replaced sync: run starts the new one
}

// newGroupSync wires the group offset sync: nil when the offset map is off.
func (m *Mirror) newGroupSync(srcAdmin, tgtAdmin sarama.ClusterAdmin, srcClient sarama.Client, omap *offsetMap, h *source.Handler) (*groupSync, error) {
	if omap == nil {
		return nil, nil
	}
	live := m.live.Load() // groups.include and exclude as last reloaded
	mirrored, err := mirroredTopics(m.cfg, m.filter)
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
		Include: live.Groups.Include, Exclude: live.Groups.Exclude, Own: m.cfg.Consumer.GroupID,
		Topics: mirrored, Translate: tr, Log: m.log,
	}
	gs := &groupSync{consumer: consumer, restart: make(chan struct{}, 1)}
	if gs.translate, err = groups.New(gcfg); err != nil {
		_ = consumer.Close()
		return nil, err
	}
	gcfg.Owned = h.Owns
	gcfg.Observer = syncObserver{m.opts.Metrics, m.board}
	gs.cfg = gcfg
	if len(live.Groups.Include) > 0 {
		if gs.sync, err = groups.New(gcfg); err != nil {
			_ = consumer.Close()
			return nil, err
		}
	}
	return gs, nil
}

// run syncs every groups.sync_interval until ctx ends, starting over with the new selection
// whenever a reload replaces it (setGroups).
func (gs *groupSync) run(ctx context.Context, interval time.Duration) {
	for {
		gs.mu.Lock()
		s := gs.sync
		gs.mu.Unlock()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if s != nil {
				_ = s.Run(runCtx, interval)
			}
		}()
		select {
		case <-ctx.Done():
		case <-gs.restart:
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			return
		}
	}
}

// setGroups replaces groups.include and groups.exclude of the sync (empty include: none is
// synced); on an error nothing changes. A round in progress is cut short: a round only moves
// groups forward, so a cut one is finished by the next.
func (gs *groupSync) setGroups(include, exclude []string) error {
	var next *groups.Syncer
	if len(include) > 0 {
		cfg := gs.cfg
		cfg.Include, cfg.Exclude = include, exclude
		var err error
		if next, err = groups.New(cfg); err != nil {
			return err
		}
	}
	gs.mu.Lock()
	gs.sync = next
	gs.mu.Unlock()
	select {
	case gs.restart <- struct{}{}:
	default:
	}
	return nil
}

// running reports whether groups are synced (groups.include is not empty).
func (gs *groupSync) running() bool {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return gs.sync != nil
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

// syncObserver reports the sync's rounds as metrics (when m is set) and on the status board.
type syncObserver struct {
	m     *telemetry.Metrics
	board *status.Board
}

func (s syncObserver) Synced(group string, partitions int) {
	if partitions > 0 && s.m != nil {
		s.m.GroupsSynced.Inc()
	}
	s.board.GroupSynced(group, partitions)
}

func (s syncObserver) Round(at time.Time, groups int, untranslatable int) {
	if s.m != nil {
		s.m.GroupSyncLast.Set(float64(at.UnixNano()) / 1e9)
		s.m.GroupSyncUntranslatable.Set(float64(untranslatable))
	}
	s.board.GroupRound(at, groups, untranslatable)
}

func (s syncObserver) Failed(group string, err error) { s.board.GroupFailed(group, err) }

func (s syncObserver) CommittedByOthers(string) {
	if s.m != nil {
		s.m.GroupSyncCommittedByOthers.Inc()
	}
}

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
	tgtAdmin, err := m.target.ConnectAdmin(ctx, log, nil)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, tgtAdmin.Close)
	tcfg := m.target.Config("offsets")
	tcfg.Consumer.Return.Errors = true
	tgtClient, err := m.target.OpenClient(ctx, tcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %w", m.target.Alias(), err)
	}
	t.closers = append(t.closers, tgtClient.Close)
	t.tgtAdmin, t.tgtClient = tgtAdmin, tgtClient
	sctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	srcAdmin, err := m.source.ConnectAdmin(sctx, log, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		t.SourceErr = err
		ok = true
		return t, nil
	}
	t.closers = append(t.closers, srcAdmin.Close)
	srcClient, err := m.source.OpenClient(sctx, source.ClientConfig(m.source.Config("consumer"), m.cfg.Consumer))
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
	go func() { defer close(followed); store.FollowAlways(follow, x, nil) }()
	t.closers = append(t.closers, func() error { stopFollow(); <-followed; return nil })
	consumer, err := sarama.NewConsumerFromClient(srcClient)
	if err != nil {
		return nil, fmt.Errorf("read source %s: %w", m.source.Alias(), err)
	}
	t.closers = append(t.closers, consumer.Close)
	mirrored, err := mirroredTopics(cfg, m.filter)
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
