package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Topic is a mirrored topic as both clusters know it.
type Topic struct {
	// Source and Target are the topic's names on each cluster.
	Source, Target string
	// Partitions is the source's partition count; the target has at least as many.
	Partitions int32
	// MaxMessageBytes is the target topic's effective max.message.bytes: larger records are
	// refused by the target broker.
	MaxMessageBytes int
	// Compacted is true when the target topic's cleanup.policy includes compact: it refuses
	// records without a key.
	Compacted bool
	// LogAppendTime is true when the target topic's message.timestamp.type is LogAppendTime:
	// the target broker replaces every copy's timestamp with its own append time (and accepts
	// any timestamp).
	LogAppendTime bool
	// TimestampAfterMax and TimestampBeforeMax are the target topic's effective
	// message.timestamp.after.max.ms and message.timestamp.before.max.ms (or, on Kafka 3.x,
	// message.timestamp.difference.max.ms): how far ahead of or behind the broker's clock a
	// CreateTime record's timestamp may be. 0 means no limit (none reported, or Long.MAX_VALUE);
	// a configured 0 is held as 1ns. Refusal applies them.
	TimestampAfterMax, TimestampBeforeMax time.Duration
}

// Admin is the part of sarama.ClusterAdmin the syncer uses.
type Admin interface {
	ListTopics() (map[string]sarama.TopicDetail, error)
	CreateTopic(topic string, detail *sarama.TopicDetail, validateOnly bool) error
	CreatePartitions(topic string, count int32, assignment [][]int32, validateOnly bool) error
	DescribeConfig(resource sarama.ConfigResource) ([]sarama.ConfigEntry, error)
	DescribeCluster() (brokers []*sarama.Broker, controllerID int32, err error)
}

// Events counts what the syncer did; a nil func is not called.
type Events struct {
	Discovered      func(n int)
	TopicCreated    func()
	PartitionsAdded func(n int)
}

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	Filter            *Filter
	Name              Namer
	Create            bool
	ReplicationFactor int
	SyncConfigs       []string
	// DefaultMaxMessageBytes is assumed when the target does not report max.message.bytes.
	DefaultMaxMessageBytes int
	Events                 Events
	Log                    *zap.Logger
}

// Syncer lists the source's topics and makes the target match: missing topics are created with
// the source's partition count and the configs that matter, and partition growth is applied.
type Syncer struct {
	source, target Admin
	cfg            SyncerConfig

	mu     sync.RWMutex
	known  map[string]Topic // by source name; only topics whose target is ready
	warned map[string]bool  // warnings already given, by kind and target topic
}

// NewSyncer returns a syncer between two clusters' admins.
func NewSyncer(source, target Admin, cfg SyncerConfig) *Syncer {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Syncer{source: source, target: target, cfg: cfg, known: make(map[string]Topic), warned: make(map[string]bool)}
}

// prepareAtOnce is how many topics Refresh prepares on the target at the same time.
const prepareAtOnce = 16

// Refresh lists the source, brings every selected topic's target up to date and returns the
// sorted source names of the topics ready to mirror. A topic whose target cannot be prepared is
// left out (and logged) so that one bad topic does not stop the others; the error joins every
// such failure.
func (s *Syncer) Refresh(ctx context.Context) ([]string, error) {
	srcTopics, err := s.source.ListTopics()
	if err != nil {
		return nil, fmt.Errorf("list source topics: %w", err)
	}
	tgtTopics, err := s.target.ListTopics()
	if err != nil {
		return nil, fmt.Errorf("list target topics: %w", err)
	}
	// Topics are prepared a few at a time: each costs several round trips (create, describe),
	// and a first start with a thousand topics would otherwise wait for them one by one.
	var (
		errs  []error
		ready = make(map[string]Topic)
		mu    sync.Mutex
		g     errgroup.Group
	)
	g.SetLimit(prepareAtOnce)
	for name, detail := range srcTopics {
		if !s.cfg.Filter.Match(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			break
		}
		g.Go(func() error {
			t, err := s.ensure(name, detail, tgtTopics)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				s.cfg.Log.Error("target topic not ready; not mirroring it until it is", zap.String("topic", name), zap.Error(err))
				return nil
			}
			ready[name] = t
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	added := 0
	for name := range ready {
		if _, ok := s.known[name]; !ok {
			added++
		}
	}
	s.known = ready
	s.mu.Unlock()
	if added > 0 && s.cfg.Events.Discovered != nil {
		s.cfg.Events.Discovered(added)
	}
	names := slices.Sorted(maps.Keys(ready))
	return names, errors.Join(errs...)
}

// Lookup returns what is known of a source topic whose target is ready.
func (s *Syncer) Lookup(source string) (Topic, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.known[source]
	return t, ok
}

// EnsurePartitions makes sure the target of source has at least partitions partitions (the
// source grew since the last refresh). It is called before a claim on a new partition starts.
func (s *Syncer) EnsurePartitions(ctx context.Context, source string, partitions int32) (Topic, error) {
	t, ok := s.Lookup(source)
	if ok && t.Partitions >= partitions {
		return t, nil
	}
	if _, err := s.Refresh(ctx); err != nil {
		if t, ok = s.Lookup(source); !ok || t.Partitions < partitions {
			return Topic{}, err
		}
	}
	t, ok = s.Lookup(source)
	switch {
	case !ok:
		return Topic{}, fmt.Errorf("source topic %q is not mirrored (filtered out or target not ready)", source)
	case t.Partitions < partitions:
		return Topic{}, fmt.Errorf("source topic %q: partition %d is not in the source metadata yet", source, partitions-1)
	}
	return t, nil
}

func (s *Syncer) ensure(name string, src sarama.TopicDetail, targets map[string]sarama.TopicDetail) (Topic, error) {
	t := Topic{Source: name, Target: s.cfg.Name(name), Partitions: src.NumPartitions}
	tgt, exists := targets[t.Target]
	switch {
	case !exists && !s.cfg.Create:
		return t, fmt.Errorf("target topic %q does not exist and topics.create is false: create it with %d partitions", t.Target, src.NumPartitions)
	case !exists:
		if err := s.create(t, src); err != nil {
			return t, err
		}
	case tgt.NumPartitions < src.NumPartitions && !s.cfg.Create:
		return t, fmt.Errorf("target topic %q has %d partitions, the source %d, and topics.create is false: add partitions to the target",
			t.Target, tgt.NumPartitions, src.NumPartitions)
	case tgt.NumPartitions < src.NumPartitions:
		if err := s.target.CreatePartitions(t.Target, src.NumPartitions, nil, false); err != nil && !errors.Is(err, sarama.ErrInvalidPartitions) {
			return t, fmt.Errorf("grow target topic %q from %d to %d partitions: %w", t.Target, tgt.NumPartitions, src.NumPartitions, err)
		}
		s.cfg.Log.Info("grew target topic to match the source",
			zap.String("topic", t.Target), zap.Int32("from", tgt.NumPartitions), zap.Int32("to", src.NumPartitions))
		if s.cfg.Events.PartitionsAdded != nil {
			s.cfg.Events.PartitionsAdded(int(src.NumPartitions - tgt.NumPartitions))
		}
	}
	if prev, ok := s.Lookup(name); ok && prev.MaxMessageBytes > 0 && exists {
		// Read once, when the topic was first prepared: a describe per topic per refresh
		// would cost a request each, for configs that rarely change.
		t.MaxMessageBytes, t.Compacted, t.LogAppendTime = prev.MaxMessageBytes, prev.Compacted, prev.LogAppendTime
		t.TimestampAfterMax, t.TimestampBeforeMax = prev.TimestampAfterMax, prev.TimestampBeforeMax
		return t, nil
	}
	a, err := s.describeTarget(t.Target)
	if err != nil {
		return t, err
	}
	t.MaxMessageBytes, t.Compacted, t.LogAppendTime = a.maxMessageBytes, a.compacted, a.logAppendTime
	t.TimestampAfterMax, t.TimestampBeforeMax = a.after, a.before
	if t.LogAppendTime {
		s.warnOnce("log-append-time:"+t.Target, "target topic is message.timestamp.type=LogAppendTime: the target broker "+
			"gives every copy its own append time, so the copies' timestamps will not be the source records'; set it to "+
			"CreateTime on the target topic to keep them", zap.String("topic", t.Target))
	}
	if exists {
		s.compareExisting(t, a)
	}
	return t, nil
}

// compareExisting warns, once, when a target topic kmirror did not create is stricter than its
// source about what it accepts. kmirror leaves such a topic as it is (an operator may have made
// it strict on purpose, and altering configs would need a permission kmirror does not ask for);
// records it refuses are found before sending (Refusal) and handled by producer.refused_policy.
func (s *Syncer) compareExisting(t Topic, tgt acceptance) {
	entries, err := s.source.DescribeConfig(sarama.ConfigResource{
		Type: sarama.TopicResource, Name: t.Source, ConfigNames: acceptanceConfigs(),
	})
	if err != nil {
		s.cfg.Log.Debug("describe source topic configs to compare with the target", zap.String("topic", t.Source), zap.Error(err))
		return
	}
	values := make(map[string]string, len(entries))
	for _, e := range entries {
		values[e.Name] = e.Value
	}
	src := readAcceptance(values)
	stricter := func(target, source time.Duration) bool { return target > 0 && (source == 0 || source > target) }
	var why []string
	if !tgt.logAppendTime && stricter(tgt.after, src.after) {
		why = append(why, ConfigTimestampAfterMax)
	}
	if !tgt.logAppendTime && stricter(tgt.before, src.before) {
		why = append(why, ConfigTimestampBeforeMax)
	}
	if tgt.compacted && !src.compacted {
		why = append(why, ConfigCleanupPolicy)
	}
	if len(why) == 0 {
		return
	}
	s.warnOnce("stricter:"+t.Target, "existing target topic accepts less than its source: records the source accepted "+
		"may be refused, and producer.refused_policy decides what happens to them; kmirror does not alter existing topics",
		zap.String("topic", t.Target), zap.Strings("stricter_configs", why))
}

// warnOnce logs a warning the first time only for key.
func (s *Syncer) warnOnce(key, msg string, fields ...zap.Field) {
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if !seen {
		s.cfg.Log.Warn(msg, fields...)
	}
}

func (s *Syncer) create(t Topic, src sarama.TopicDetail) error {
	rf := int16(s.cfg.ReplicationFactor)
	brokers, _, err := s.target.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describe target cluster: %w", err)
	}
	if n := len(brokers); n > 0 && int(rf) > n {
		rf = int16(n)
	}
	configs := make(map[string]*string)
	for _, key := range s.cfg.SyncConfigs {
		if neverSynced(key) {
			continue
		}
		if v, ok := src.ConfigEntries[key]; ok && v != nil {
			val := *v
			configs[key] = &val
		}
	}
	if err := s.sourceTimestampBounds(t.Source, configs); err != nil {
		return err
	}
	if min, ok := configs["min.insync.replicas"]; ok {
		// A min.insync.replicas above the target's replication factor would refuse every write.
		if n, err := strconv.Atoi(*min); err == nil && n > int(rf) {
			capped := strconv.Itoa(int(rf))
			configs["min.insync.replicas"] = &capped
		}
	}
	detail := &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: rf, ConfigEntries: configs}
	err = s.target.CreateTopic(t.Target, detail, false)
	if errors.Is(err, sarama.ErrInvalidConfig) && olderBounds(configs) {
		// A target before Kafka 3.6 knows neither bound, only the one they replaced.
		s.cfg.Log.Warn("target refused the timestamp bounds (Kafka before 3.6?); creating the topic with "+
			ConfigTimestampDifference+" instead", zap.String("topic", t.Target), zap.Error(err))
		err = s.target.CreateTopic(t.Target, detail, false)
	}
	if errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return nil // another replica created it first
	}
	if err != nil {
		return fmt.Errorf("create target topic %q (%d partitions, replication factor %d): %w", t.Target, t.Partitions, rf, err)
	}
	s.cfg.Log.Info("created target topic",
		zap.String("topic", t.Target), zap.Int32("partitions", t.Partitions), zap.Int16("replication_factor", rf),
		zap.Strings("configs", slices.Sorted(maps.Keys(configs))))
	if s.cfg.Events.TopicCreated != nil {
		s.cfg.Events.TopicCreated()
	}
	return nil
}

// neverSynced reports configs the syncer never copies as they are, whatever topics.sync_configs
// says (config validation refuses them there too): message.timestamp.type, because a
// LogAppendTime target overwrites every copy's timestamp, and message.timestamp.difference.max.ms,
// which Kafka 4.0 removed: its value is carried over as the before/after bounds, and it is sent
// only to a target that knows neither of those (olderBounds).
func neverSynced(key string) bool {
	return key == ConfigTimestampType || key == ConfigTimestampDifference
}

// sourceTimestampBounds sets the timestamp bounds listed in topics.sync_configs to the source
// topic's effective values, defaults included: ListTopics reports only values that differ from
// Kafka's defaults, and the defaults differ between versions (message.timestamp.after.max.ms is
// unlimited before Kafka 4.0 and 1 hour since), so a topic copied with the source's overrides
// alone could refuse what the source accepted. A source on Kafka 3.6-3.9 whose bound is unset
// takes message.timestamp.difference.max.ms, as its broker does.
func (s *Syncer) sourceTimestampBounds(source string, configs map[string]*string) error {
	var keys []string
	for _, key := range []string{ConfigTimestampAfterMax, ConfigTimestampBeforeMax} {
		if slices.Contains(s.cfg.SyncConfigs, key) {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	entries, err := s.source.DescribeConfig(sarama.ConfigResource{
		Type: sarama.TopicResource, Name: source, ConfigNames: append(slices.Clone(keys), ConfigTimestampDifference),
	})
	if err != nil {
		return fmt.Errorf("describe source topic %q timestamp bounds: %w", source, err)
	}
	values := make(map[string]string, len(entries))
	for _, e := range entries {
		values[e.Name] = e.Value
	}
	diff, hasDiff := values[ConfigTimestampDifference]
	for _, key := range keys {
		v, ok := values[key]
		if (!ok || v == strconv.FormatInt(math.MaxInt64, 10)) && hasDiff {
			v, ok = diff, true
		}
		if ok && v != "" {
			configs[key] = &v
		}
	}
	return nil
}

// olderBounds replaces the timestamp bounds in configs by the single bound Kafka before 3.6
// knows, the larger of the two so that the topic accepts what the source accepted, and reports
// whether there was anything to replace.
func olderBounds(configs map[string]*string) bool {
	var bound int64 = -1
	for _, key := range []string{ConfigTimestampAfterMax, ConfigTimestampBeforeMax} {
		if v, ok := configs[key]; ok {
			delete(configs, key)
			if n, ok := parseMs(*v); ok && n > bound {
				bound = n
			}
		}
	}
	if bound < 0 {
		return false
	}
	v := strconv.FormatInt(bound, 10)
	configs[ConfigTimestampDifference] = &v
	return true
}

// acceptanceConfigs returns the topic configs that decide what a topic accepts.
func acceptanceConfigs() []string {
	return []string{
		ConfigMaxMessageBytes, ConfigCleanupPolicy, ConfigTimestampType,
		ConfigTimestampAfterMax, ConfigTimestampBeforeMax, ConfigTimestampDifference,
	}
}

// describeTarget reads what decides acceptance on a target topic.
func (s *Syncer) describeTarget(target string) (acceptance, error) {
	var entries []sarama.ConfigEntry
	var err error
	// A topic just created may not have reached the broker that answers yet.
	for attempt := 0; attempt < 20; attempt++ {
		entries, err = s.target.DescribeConfig(sarama.ConfigResource{
			Type: sarama.TopicResource, Name: target, ConfigNames: acceptanceConfigs(),
		})
		if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return acceptance{}, fmt.Errorf("describe target topic %q configs: %w", target, err)
	}
	values := make(map[string]string, len(entries))
	for _, e := range entries {
		values[e.Name] = e.Value
	}
	a := readAcceptance(values)
	if a.maxMessageBytes == 0 {
		a.maxMessageBytes = s.cfg.DefaultMaxMessageBytes
	}
	return a, nil
}
