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

// Events counts what the syncer did; a nil func is not called.
type Events struct {
	Discovered      func(n int)
	TopicCreated    func()
	PartitionsAdded func(n int)
	// ConfigsAltered counts configs set on existing target topics to follow the source.
	ConfigsAltered func(n int)
	// ACLsCreated counts ACLs created on target topics from the source's.
	ACLsCreated func(n int)
	// CycleSkipped is called once per topic left out because its name shows it came from the
	// target (SyncerConfig.Cycles).
	CycleSkipped func()
}

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	Filter *Filter
	Name   Namer
	// Cycles, when set (the prefix policy), leaves out the source topics whose name shows they
	// came from the target or from the source itself: each is logged once and counted.
	Cycles            *Cycles
	Create            bool
	ReplicationFactor int
	SyncConfigs       []string
	// SyncExistingConfigs keeps the SyncConfigs of existing target topics equal to the source's;
	// when false they are copied only when a topic is created.
	SyncExistingConfigs bool
	// SyncACLs copies the source topics' READ and DESCRIBE ACLs to the target topics.
	SyncACLs bool
	// DefaultMaxMessageBytes is assumed when the target does not report max.message.bytes.
	DefaultMaxMessageBytes int
	Events                 Events
	Log                    *zap.Logger
}

// Syncer lists the source's topics and makes the target match: missing topics are created with
// the source's partition count and the configs that matter, partition growth is applied, the
// synced configs of existing topics follow the source and, when asked, the source's read ACLs
// are added. What it does is decided by Plan, which changes nothing, and carried out by Refresh:
// the daemon and `kmirror topics plan` share the decision.
//
// It never shrinks, deletes or removes anything on the target, and never alters a config that is
// not in SyncConfigs or that the source leaves at its default.
type Syncer struct {
	source, target Admin
	cfg            SyncerConfig

	mu     sync.RWMutex
	known  map[string]Topic // by source name; only topics whose target is ready
	warned map[string]bool  // warnings already given, by kind and target topic
	// unlisted holds, by source name, when a known topic was first missing from a listing of
	// the source (see keepUnlisted); goneAfter is how long it is kept.
	unlisted  map[string]time.Time
	goneAfter time.Duration
}

// goneAfter is how long a known topic missing from the source's listings is still mirrored: a
// broker that has just restarted answers before it has loaded the cluster's metadata, and lists
// no topic or only some, for a few seconds. A topic really deleted is dropped this much later
// (its partitions fail to fetch meanwhile).
const goneAfter = 10 * time.Second

// NewSyncer returns a syncer between two clusters' admins.
func NewSyncer(source, target Admin, cfg SyncerConfig) *Syncer {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Syncer{source: source, target: target, cfg: cfg, known: make(map[string]Topic), warned: make(map[string]bool),
		unlisted: make(map[string]time.Time), goneAfter: goneAfter}
}

// prepareAtOnce is how many topics Refresh grows or alters at the same time (each a request of
// its own).
const prepareAtOnce = 16

// Refresh plans (Plan), applies the plan of every selected topic and returns the sorted source
// names of the topics ready to mirror. A topic whose target cannot be prepared is left out (and
// logged) so that one bad topic does not stop the others; the error joins every such failure. A
// config or ACL that cannot be synced is warned about once and does not keep a topic from being
// mirrored.
//
// What is asked of every topic is asked of many at once: the missing topics are created many per
// request (createAll), their ACLs added many per request (createACLs) and the configs that
// decide acceptance read many per request (describeTargets, describeAll). What only some topics
// need (growth, config changes) is done a few topics at a time.
func (s *Syncer) Refresh(ctx context.Context) ([]string, error) {
	plan, err := s.Plan(ctx)
	if err != nil {
		return nil, err
	}
	if plan.ACLProblem != "" {
		s.warnOnce("acls", "cannot read the clusters' ACLs; topic ACLs are not synced until they can be", zap.String("error", plan.ACLProblem))
	}
	created := s.createAll(ctx, plan.Topics)
	preps := make([]prepared, len(plan.Topics))
	var g errgroup.Group
	g.SetLimit(prepareAtOnce)
	for i, p := range plan.Topics {
		if err := ctx.Err(); err != nil {
			break
		}
		g.Go(func() error {
			preps[i] = s.apply(p, created[p.Source])
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var withACLs []TopicPlan
	for _, r := range preps {
		if r.err == nil && len(r.plan.ACLs) > 0 {
			withACLs = append(withACLs, r.plan)
		}
	}
	s.createACLs(withACLs)
	s.learnAcceptance(ctx, preps)
	var (
		errs  []error
		ready = make(map[string]Topic)
	)
	for _, r := range preps {
		if r.err != nil {
			errs = append(errs, r.err)
			s.cfg.Log.Error("target topic not ready; not mirroring it until it is", zap.String("topic", r.plan.Source), zap.Error(r.err))
			continue
		}
		ready[r.plan.Source] = r.topic
	}
	s.mu.Lock()
	s.keepUnlisted(plan, ready, time.Now())
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

// keepUnlisted keeps in ready the known topics that the plan's listing lacks, until they have
// been missing for goneAfter (a listing taken while a broker loads its metadata lacks topics
// that exist: they must not end the session nor be dropped). s.mu is held.
func (s *Syncer) keepUnlisted(plan Plan, ready map[string]Topic, now time.Time) {
	listed := make(map[string]bool, len(plan.Topics))
	for _, p := range plan.Topics {
		listed[p.Source] = true
		delete(s.unlisted, p.Source)
	}
	for name, t := range s.known {
		if listed[name] {
			continue
		}
		since, ok := s.unlisted[name]
		if !ok {
			since, s.unlisted[name] = now, now
		}
		if now.Sub(since) < s.goneAfter {
			ready[name] = t
			continue
		}
		delete(s.unlisted, name)
		s.cfg.Log.Info("source topic no longer listed; not mirroring it any more",
			zap.String("topic", name), zap.Duration("unlisted_for", now.Sub(since).Round(time.Second)))
	}
}

// Mirrored is the daemon's decision about a source topic: whether it is mirrored and under what
// name on the target. A topic is mirrored when it matches the filter (internal topics never do,
// the filter's rules, such as the heartbeat rule, decide before include and exclude) and is not a
// cycle. Plan selects with it, and so do Refresh and `kmirror topics plan`; the group offset sync,
// `offsets translate` and `failover` ask it which committed offsets to translate, so that a group
// reading a topic the daemon leaves out is not waited for as "not yet mirrored" for ever.
func (c SyncerConfig) Mirrored(topic string) (target string, mirrored bool) {
	if selected, _ := c.decide(topic); !selected {
		return "", false
	}
	return c.Name(topic), true
}

// decide says whether topic is mirrored; cycle is why the cycle rule left out a topic the filter
// selects ("" otherwise).
func (c SyncerConfig) decide(topic string) (selected bool, cycle string) {
	if c.Filter == nil || !c.Filter.Match(topic) {
		return false, ""
	}
	if c.Cycles != nil {
		if why := c.Cycles.Check(topic); why != "" {
			return false, why
		}
	}
	return true, ""
}

// Mirrored is SyncerConfig.Mirrored of the syncer's configuration.
func (s *Syncer) Mirrored(topic string) (target string, mirrored bool) { return s.cfg.Mirrored(topic) }

// selected reports whether Plan takes the topic, logging and counting a cycle the first time.
func (s *Syncer) selected(name string) bool {
	ok, why := s.cfg.decide(name)
	if why == "" {
		return ok
	}
	if s.once("cycle:" + name) {
		s.cfg.Log.Warn("not mirroring a topic that would go round in a cycle (prefix replication policy): "+why+
			"; it is left out of discovery for as long as it is there (counted in kmirror_cycle_topics_skipped_total)",
			zap.String("topic", name), zap.String("source_alias", s.cfg.Cycles.Source),
			zap.String("target_alias", s.cfg.Cycles.Target))
		if s.cfg.Events.CycleSkipped != nil {
			s.cfg.Events.CycleSkipped()
		}
	}
	return false
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

// prepared is one topic on its way to ready: what apply did, completed by learnAcceptance.
type prepared struct {
	plan  TopicPlan
	topic Topic
	err   error // the topic is not ready
	// values are the target topic's configs that decide acceptance, when the plan read them.
	values  map[string]string
	known   bool // topic holds what decides acceptance already (read when it was first prepared)
	altered bool // the plan's config changes were set
}

// apply carries out one topic's plan but for its creation (createAll did it: created) and for reading
// what the target accepts (learnAcceptance).
func (s *Syncer) apply(p TopicPlan, created error) prepared {
	r := prepared{plan: p, topic: Topic{Source: p.Source, Target: p.Target, Partitions: p.partitions}}
	t := &r.topic
	if p.Problem != "" {
		r.err = errors.New(p.Problem)
		return r
	}
	if p.Create != nil && created != nil {
		r.err = created
		return r
	}
	if g := p.Grow; g != nil {
		if err := s.target.CreatePartitions(t.Target, g.To, nil, false); err != nil && !errors.Is(err, sarama.ErrInvalidPartitions) {
			r.err = fmt.Errorf("grow target topic %q from %d to %d partitions: %w", t.Target, g.From, g.To, err)
			return r
		}
		s.cfg.Log.Info("grew target topic to match the source",
			zap.String("topic", t.Target), zap.Int32("from", g.From), zap.Int32("to", g.To))
		if s.cfg.Events.PartitionsAdded != nil {
			s.cfg.Events.PartitionsAdded(int(g.To - g.From))
		}
	}
	r.altered = s.alterConfigs(p)
	if p.ConfigProblem != "" {
		s.warnOnce("configs:"+t.Target, "cannot compare the target topic's configs with the source's; they are not synced until they can be",
			zap.String("topic", t.Target), zap.String("error", p.ConfigProblem))
	}
	switch prev, ok := s.Lookup(p.Source); {
	case p.Create != nil:
		// Described once the target knows it (learnAcceptance): ready no sooner.
	case p.targetValues != nil:
		// Read in this refresh's plan: what the target has now, with what was just set.
		r.values = maps.Clone(p.targetValues)
		if r.altered {
			for _, c := range p.Configs {
				r.values[c.Key] = c.Source
			}
		}
	case ok && prev.MaxMessageBytes > 0:
		// Read once, when the topic was first prepared: with sync_existing_configs off nothing
		// changes them but an operator, and a describe per topic per refresh costs a request.
		t.MaxMessageBytes, t.Compacted, t.LogAppendTime = prev.MaxMessageBytes, prev.Compacted, prev.LogAppendTime
		t.TimestampAfterMax, t.TimestampBeforeMax = prev.TimestampAfterMax, prev.TimestampBeforeMax
		r.known = true
	}
	return r
}

// learnAcceptance completes the prepared topics with what their targets accept: the configs not
// known yet are described, many topics per request (a describe that fails leaves its topic not
// ready), and an existing target stricter than its source is warned about, compared with the
// source's configs (described too, many per request, when the plan did not read them).
func (s *Syncer) learnAcceptance(ctx context.Context, preps []prepared) {
	var created, unknown []string
	for _, r := range preps {
		switch {
		case r.err != nil || r.known || r.values != nil:
		case r.plan.Create != nil:
			created = append(created, r.plan.Target)
		default:
			unknown = append(unknown, r.plan.Target)
		}
	}
	targets := describeTargets(ctx, s.target, unknown, knownWithin, nil)
	if len(created) > 0 {
		c := describeTargets(ctx, s.target, created, createdKnownWithin, s.cfg.Log)
		maps.Copy(targets.values, c.values)
		maps.Copy(targets.errs, c.errs)
	}
	compare := make(map[string][]string)
	for i := range preps {
		r := &preps[i]
		if r.err != nil || r.known {
			continue
		}
		if r.values == nil {
			if r.values = targets.values[r.plan.Target]; r.values == nil {
				r.err = targets.errs[r.plan.Target]
				continue
			}
		}
		if r.plan.Create == nil && r.plan.sourceValues == nil {
			compare[r.plan.Source] = acceptanceConfigs()
		}
	}
	sources := describeAll(s.source, compare)
	for i := range preps {
		r := &preps[i]
		if r.err != nil || r.known {
			continue
		}
		a := readAcceptance(r.values)
		if a.maxMessageBytes == 0 {
			a.maxMessageBytes = s.cfg.DefaultMaxMessageBytes
		}
		t := &r.topic
		t.MaxMessageBytes, t.Compacted, t.LogAppendTime = a.maxMessageBytes, a.compacted, a.logAppendTime
		t.TimestampAfterMax, t.TimestampBeforeMax = a.after, a.before
		if t.LogAppendTime {
			s.warnOnce("log-append-time:"+t.Target, "target topic is message.timestamp.type=LogAppendTime: the target broker "+
				"gives every copy its own append time, so the copies' timestamps will not be the source records'; set it to "+
				"CreateTime on the target topic to keep them", zap.String("topic", t.Target))
		}
		if r.plan.Create != nil {
			continue
		}
		src := r.plan.sourceValues
		if src == nil {
			if src = sources.values[r.plan.Source]; src == nil {
				s.cfg.Log.Debug("describe source topic configs to compare with the target", zap.String("topic", r.plan.Source),
					zap.Error(sources.errs[r.plan.Source]))
				continue
			}
		}
		s.compareExisting(r.plan, a, readAcceptance(src), len(r.plan.Configs) > 0 && !r.altered)
	}
}

// alterConfigs sets the configs the plan found different on an existing target topic, logs
// them as one diff line and reports whether they were set. A failure is warned about once per
// topic: the topic is still mirrored, with the configs it has.
func (s *Syncer) alterConfigs(p TopicPlan) bool {
	if len(p.Configs) == 0 {
		return false
	}
	entries := make(map[string]sarama.IncrementalAlterConfigsEntry, len(p.Configs))
	diff := make([]string, 0, len(p.Configs))
	for _, c := range p.Configs {
		v := c.Source
		entries[c.Key] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
		diff = append(diff, c.String())
	}
	if err := s.target.IncrementalAlterConfig(sarama.TopicResource, p.Target, entries, false); err != nil {
		s.warnOnce("alter:"+p.Target, "cannot set the target topic's configs to the source's; mirroring it with the configs it has "+
			"(kmirror needs ALTER_CONFIGS on the target topic, and Kafka 2.3 or newer)",
			zap.String("topic", p.Target), zap.Strings("changes", diff), zap.Error(err))
		return false
	}
	s.cfg.Log.Info("synced target topic configs from the source", zap.String("topic", p.Target), zap.Strings("changes", diff))
	if s.cfg.Events.ConfigsAltered != nil {
		s.cfg.Events.ConfigsAltered(len(p.Configs))
	}
	return true
}

// compareExisting warns, once, when an existing target topic is still stricter than its source
// about what it accepts after the configs were synced: because sync_existing_configs is off, the
// config is not in sync_configs, the source leaves it at its default (never copied), or setting
// it failed. An operator may have made it strict on purpose; records it refuses are found before
// sending (Refusal) and handled by producer.refused_policy.
func (s *Syncer) compareExisting(p TopicPlan, tgt, src acceptance, alterFailed bool) {
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
	because := make([]string, 0, len(why))
	for _, key := range why {
		var r string
		switch {
		case !s.cfg.SyncExistingConfigs:
			r = "topics.sync_existing_configs is false"
		case alterFailed:
			r = "setting it failed"
		case !slices.Contains(s.cfg.SyncConfigs, key):
			r = "not in topics.sync_configs"
		default:
			r = "the source leaves it at its default, which is never copied"
		}
		because = append(because, key+": "+r)
	}
	s.warnOnce("stricter:"+p.Target, "existing target topic accepts less than its source: records the source accepted "+
		"may be refused, and producer.refused_policy decides what happens to them; kmirror leaves these configs as they are",
		zap.String("topic", p.Target), zap.Strings("stricter_configs", why), zap.Strings("because", because))
}

// warnOnce logs a warning the first time only for key.
func (s *Syncer) warnOnce(key, msg string, fields ...zap.Field) {
	if s.once(key) {
		s.cfg.Log.Warn(msg, fields...)
	}
}

// once reports whether key is seen for the first time.
func (s *Syncer) once(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.warned[key]
	s.warned[key] = true
	return !seen
}

// neverSynced reports configs the syncer never copies as they are, whatever topics.sync_configs
// says (config validation refuses them there too): message.timestamp.type, because a
// LogAppendTime target overwrites every copy's timestamp; message.timestamp.difference.max.ms,
// which Kafka 4.0 removed: its value is carried over as the before/after bounds, and it is sent
// only to a target that knows neither of those (olderBounds); the replication throttles, which
// name the source's brokers; and unclean.leader.election.enable, which would let the target lose
// copies it acknowledged. These are MirrorMaker 2's exclusions but min.insync.replicas, which
// kmirror copies capped at the target topic's replication factor (wanted).
func neverSynced(key string) bool {
	switch key {
	case ConfigTimestampType, ConfigTimestampDifference, "leader.replication.throttled.replicas",
		"follower.replication.throttled.replicas", "unclean.leader.election.enable":
		return true
	}
	return false
}

// wanted returns the values of topics.sync_configs that the target topic of source should have,
// given values, the source topic's effective values of the configs that decide acceptance (read
// by describeAll; err is why they could not be).
//
// A config the source leaves at its default is not wanted (ListTopics reports only overrides):
// the target keeps its own default or an operator's override. The timestamp bounds are the
// exception, taken with the source's effective values, defaults included, because the defaults
// differ between versions (message.timestamp.after.max.ms is unlimited before Kafka 4.0 and 1
// hour since): a topic with the source's overrides alone could refuse what the source accepted.
// A source on Kafka 3.6-3.9 whose bound is unset takes message.timestamp.difference.max.ms, as
// its broker does. min.insync.replicas is capped at rf (the target topic's replication factor):
// above it, every write would be refused.
func (s *Syncer) wanted(source string, src sarama.TopicDetail, rf int16, values map[string]string, err error) (want map[string]string, _ error) {
	if values == nil {
		if err == nil {
			err = sarama.ErrIncompleteResponse
		}
		return nil, fmt.Errorf("describe source topic %q configs: %w", source, err)
	}
	want = make(map[string]string)
	for _, key := range s.cfg.SyncConfigs {
		if neverSynced(key) {
			continue
		}
		if v, ok := src.ConfigEntries[key]; ok && v != nil {
			want[key] = *v
		}
	}
	diff, hasDiff := values[ConfigTimestampDifference]
	for _, key := range []string{ConfigTimestampAfterMax, ConfigTimestampBeforeMax} {
		if !slices.Contains(s.cfg.SyncConfigs, key) {
			continue
		}
		v, ok := values[key]
		if (!ok || v == strconv.FormatInt(math.MaxInt64, 10)) && hasDiff {
			v, ok = diff, true
		}
		if ok && v != "" {
			want[key] = v
		}
	}
	if min, ok := want[ConfigMinInsyncReplicas]; ok && rf > 0 {
		if n, err := strconv.Atoi(min); err == nil && n > int(rf) {
			want[ConfigMinInsyncReplicas] = strconv.Itoa(int(rf))
		}
	}
	return want, nil
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
