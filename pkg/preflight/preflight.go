// Package preflight checks, before mirroring, that kmirror can do everything it needs on both
// clusters: reach the brokers, complete the TLS handshake and the SASL authentication, and
// perform each operation its ACLs must allow. It reports one verdict per check.
//
// It must never change either cluster (topic creation is validate-only), never print a secret,
// never take longer than its context allows (sarama ignores contexts: a check still waiting on a
// broker when the deadline passes is reported as unanswered and left behind), and never report
// a broker's passing state (a coordinator still loading) as a missing permission.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/topics"
)

// Check is the verdict on one thing kmirror needs.
type Check struct {
	Cluster string // "source" or "target"
	Name    string
	Err     error
	Detail  string
	Fix     string
	// Retry is set when the error is a passing state of the cluster (a coordinator loading, a
	// leader moving, no answer in time): the same check may pass when run again.
	Retry bool
}

// OK reports whether the check passed.
func (c Check) OK() bool { return c.Err == nil }

// Run checks both clusters, at the same time, and returns every verdict by the time ctx ends:
// the checks of a cluster that has not answered by then are reported as unanswered.
func Run(ctx context.Context, cfg *config.Config) []Check {
	c := *cfg
	if dl, ok := ctx.Deadline(); ok {
		// sarama's own timeouts are per request; keep each within the whole budget.
		left := max(time.Until(dl), 100*time.Millisecond)
		for _, cl := range []*config.Cluster{&c.Source, &c.Target} {
			cl.DialTimeout = min(cl.DialTimeout, left)
			cl.ReadTimeout = min(cl.ReadTimeout, left)
			cl.WriteTimeout = min(cl.WriteTimeout, left)
		}
	}
	results := make([]*session, 2)
	var wg sync.WaitGroup
	for i, check := range []func(*session, *config.Config){checkSource, checkTarget} {
		key := []string{"source", "target"}[i]
		s := &session{ctx: ctx, key: key}
		results[i] = s
		wg.Add(1)
		go func() { defer wg.Done(); check(s, &c) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	var out []Check
	for _, s := range results {
		out = append(out, s.finish(ctx)...)
	}
	out = append(out, distinct(&c, results[0], results[1])...)
	return append(out, shared(&c, results[0], results[1])...)
}

// distinct compares the cluster IDs both sides reported: validation catches a cluster named
// twice in the bootstrap lists, not one reached under two names.
func distinct(cfg *config.Config, src, tgt *session) []Check {
	src.mu.Lock()
	srcID := src.id
	src.mu.Unlock()
	tgt.mu.Lock()
	tgtID := tgt.id
	tgt.mu.Unlock()
	if srcID == "" || tgtID == "" {
		return nil // one side not reached (reported above), or no ID reported
	}
	c := Check{Cluster: "target", Name: "distinct clusters", Detail: fmt.Sprintf("source cluster ID %s, target %s", srcID, tgtID)}
	if srcID == tgtID {
		c.Err = fmt.Errorf("source (%s, %s) and target (%s, %s) are the same cluster (cluster ID %s): kmirror would read its "+
			"own copies back forever", cfg.Source.Alias, strings.Join(cfg.Source.Bootstrap, ","), cfg.Target.Alias,
			strings.Join(cfg.Target.Bootstrap, ","), srcID)
		c.Fix = "point target.bootstrap at another cluster"
	}
	return []Check{c}
}

// Print writes the verdicts as a table and reports whether all passed.
func Print(w io.Writer, checks []Check) bool {
	ok := true
	for _, c := range checks {
		if c.OK() {
			fmt.Fprintf(w, "%-7s %-28s ok      %s\n", c.Cluster, c.Name, c.Detail)
			continue
		}
		ok = false
		if c.Retry {
			fmt.Fprintf(w, "%-7s %-28s RETRY   %v\n", c.Cluster, c.Name, c.Err)
			fmt.Fprintf(w, "%-7s %-28s         the cluster is in a passing state; run the check again shortly\n", "", "")
			continue
		}
		fmt.Fprintf(w, "%-7s %-28s FAILED  %v\n", c.Cluster, c.Name, c.Err)
		if c.Fix != "" {
			fmt.Fprintf(w, "%-7s %-28s         fix: %s\n", "", "", c.Fix)
		}
	}
	if ok {
		fmt.Fprintln(w, "verdict: both clusters allow everything kmirror needs")
	} else {
		fmt.Fprintln(w, "verdict: FAILED — kmirror would not be able to mirror; fix the lines above")
	}
	return ok
}

type session struct {
	ctx    context.Context
	key    string
	cl     *cluster.Cluster
	client sarama.Client
	admin  sarama.ClusterAdmin

	mu      sync.Mutex
	checks  []Check
	current string // the check under way
	done    bool
	id      string // the cluster ID the brokers report, once reached
	// topicIDs (source: the matched topics' IDs) and positions (target: the topic ID stored
	// with each topic's positions) are read in exactly_once, for shared.
	topicIDs  map[string]string
	positions map[string]string
}

func (s *session) add(name string, err error, detail, fix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, Check{Cluster: s.key, Name: name, Err: err, Detail: detail, Fix: fix, Retry: passing(err)})
	return err == nil
}

// doing notes the check under way, for the report if the deadline passes during it.
func (s *session) doing(name string) {
	s.mu.Lock()
	s.current = name
	s.mu.Unlock()
}

// finish returns the verdicts so far, with the check under way reported as unanswered if the
// cluster's checks did not complete.
func (s *session) finish(ctx context.Context) []Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Check(nil), s.checks...)
	if !s.done {
		name := s.current
		if name == "" {
			name = "reach, TLS, authenticate"
		}
		out = append(out, Check{Cluster: s.key, Name: name, Retry: true,
			Err: fmt.Errorf("no answer within the time allowed (%v): a broker accepted the connection but did not reply, "+
				"or the cluster is overloaded", context.Cause(ctx))})
	}
	return out
}

// attempt runs op until it succeeds, fails for good, or the checks' time is up: a passing state
// of the cluster (a coordinator still loading right after a start, a leader moving) is retried
// as kmirror itself would retry it, and reported as RETRY only if it outlasts the time allowed.
func (s *session) attempt(op func() error) error {
	for i := 0; ; i++ {
		err := op()
		if err == nil || !passing(err) {
			return err
		}
		select {
		case <-s.ctx.Done():
			return err
		case <-time.After(min(250*time.Millisecond<<min(i, 4), 2*time.Second)):
		}
	}
}

// passing reports whether err is a state of the cluster that passes by itself.
func passing(err error) bool {
	return errors.Is(err, sarama.ErrOffsetsLoadInProgress) || errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable) ||
		errors.Is(err, sarama.ErrNotCoordinatorForConsumer) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrRequestTimedOut) ||
		errors.Is(err, sarama.ErrNotController) || errors.Is(err, sarama.ErrRebalanceInProgress)
}

func connect(s *session, cc config.Cluster) {
	key := s.key
	s.doing("reach, TLS, authenticate")
	cl, err := cluster.New(key, cc)
	if !s.add("settings (TLS files, secrets)", err, "readable", "") {
		return
	}
	s.cl = cl
	sc := cl.Config("preflight")
	sc.Metadata.Retry.Max = 1
	client, err := sarama.NewClient(cl.Bootstrap(), sc)
	detail := ""
	if err == nil {
		var addrs []string
		for _, b := range client.Brokers() {
			addrs = append(addrs, b.Addr())
		}
		detail = fmt.Sprintf("%d brokers: %s", len(addrs), strings.Join(addrs, ", "))
		if cc.TLS.Enabled {
			detail += "; TLS handshake ok"
		}
		if cc.SASL.Mechanism != "" {
			detail += "; authenticated with " + cc.SASL.Mechanism
		}
	}
	if !s.add("reach, TLS, authenticate", err, detail, cl.Hint()) {
		return
	}
	s.client = client
	if id, err := cluster.ID(client, cl.Version()); err == nil {
		s.mu.Lock()
		s.id = id
		s.mu.Unlock()
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if !s.add("admin client", err, "", "") {
		return
	}
	s.admin = admin
}

func (s *session) close() {
	if s.admin != nil {
		_ = s.admin.Close() // closes the client too
	} else if s.client != nil {
		_ = s.client.Close()
	}
}

func checkSource(s *session, cfg *config.Config) {
	defer s.complete()
	connect(s, cfg.Source)
	defer s.close()
	if s.admin == nil {
		return
	}
	s.doing("describe topics")
	var all map[string]sarama.TopicDetail
	err := s.attempt(func() (err error) { all, err = s.admin.ListTopics(); return })
	filter, ferr := topics.NewFilter(cfg.Topics.Include, cfg.Topics.Exclude)
	var matched []string
	if err == nil && ferr == nil {
		for t := range all {
			if filter.Match(t) {
				matched = append(matched, t)
			}
		}
	}
	if err == nil {
		err = ferr
	}
	s.add("describe topics", err, fmt.Sprintf("%d topics visible, %d match topics.include", len(all), len(matched)),
		"grant Describe on the topics to mirror (and DescribeConfigs)")
	if err == nil && MayLoop(cfg) {
		s.doing(MirrorBackCheck)
		c := MirrorBack(cfg, all, func(topic string, partition int32, ms int64) (at int64, err error) {
			err = s.attempt(func() (err error) { at, err = s.client.GetOffset(topic, partition, ms); return })
			return at, err
		})
		s.add(c.Name, c.Err, c.Detail, c.Fix)
	}
	if err == nil && cfg.Delivery.Mode == config.ExactlyOnce && len(matched) > 0 {
		var ids map[string]string
		if s.attempt(func() (err error) { ids, err = s.sourceTopicIDs(matched); return }) == nil {
			s.mu.Lock()
			s.topicIDs = ids
			s.mu.Unlock()
		}
	}
	if len(matched) > 0 {
		t := matched[0]
		s.doing("describe topic configs")
		err := s.attempt(func() error {
			_, err := s.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: t})
			return err
		})
		s.add("describe topic configs", err, "on "+t, "grant DescribeConfigs on the topics to mirror")
		s.doing("read (list offsets)")
		err = s.attempt(func() error { _, err := s.client.GetOffset(t, 0, sarama.OffsetNewest); return err })
		s.add("read (list offsets)", err, "on "+t+" partition 0", "grant Read and Describe on the topics to mirror")
	}
	s.doing("consumer group")
	err = s.attempt(func() error {
		groups, err := s.admin.DescribeConsumerGroups([]string{cfg.Consumer.GroupID})
		if err == nil && len(groups) == 1 && !errors.Is(groups[0].Err, sarama.ErrNoError) {
			err = groups[0].Err // the group's own error code, e.g. its coordinator still loading
		}
		return err
	})
	s.add("consumer group", err, "group "+cfg.Consumer.GroupID, fmt.Sprintf("grant Read and Describe on group %q", cfg.Consumer.GroupID))
	if cfg.Heartbeats.Enabled {
		checkHeartbeats(s, cfg)
	}
	if len(cfg.Groups.Include) > 0 {
		s.doing("list consumer groups (group offset sync)")
		n := 0
		err = s.attempt(func() error { gs, err := s.admin.ListConsumerGroups(); n = len(gs); return err })
		s.add("list consumer groups (group offset sync)", err, fmt.Sprintf("%d groups visible", n),
			"grant Describe on the groups to sync (groups.include) and on the cluster")
	}
}

// topicOrCreate checks that topic exists, or else that kmirror may create it (validate only:
// nothing is created), and says which.
func (s *session) topicOrCreate(topic string) (detail string, err error) {
	detail = "exists"
	err = s.attempt(func() error {
		md, err := s.admin.DescribeTopics([]string{topic})
		if err != nil {
			return err
		}
		if len(md) == 1 && errors.Is(md[0].Err, sarama.ErrUnknownTopicOrPartition) {
			detail = "kmirror creates it (validate only: nothing created)"
			err = s.admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true)
			if err != nil && strings.Contains(err.Error(), "replication factor") {
				err = nil // authorized; only the settings were refused
			}
			return err
		}
		if len(md) == 1 && !errors.Is(md[0].Err, sarama.ErrNoError) {
			return md[0].Err
		}
		return nil
	})
	return detail, err
}

// checkHeartbeats checks that kmirror may create the flow's heartbeat topic on the source, or
// that it exists. Writing to it needs Write too, which a check cannot try without writing.
func checkHeartbeats(s *session, cfg *config.Config) {
	topic := cfg.HeartbeatTopic()
	s.doing("heartbeat topic")
	detail, err := s.topicOrCreate(topic)
	s.add("heartbeat topic", err, fmt.Sprintf("%s: %s; kmirror writes a heartbeat to it every %s (needs Write)", topic, detail, cfg.Heartbeats.Interval),
		fmt.Sprintf("grant Create, Describe and Write on topic %q on the source (or create it: one partition, compacted), or set heartbeats.enabled: false", topic))
}

// reverseRecent is how recently a reverse mirror's offset map must have been written for
// checkReverse to take that mirror as running (reverseRecentText says it in words).
const (
	reverseRecent     = 10 * time.Minute
	reverseRecentText = "the last 10 minutes"
)

// MirrorBackCheck names the check MirrorBack makes.
const MirrorBackCheck = "no mirror back (identity)"

// MayLoop reports whether cfg copies records back to where they were written if a mirror runs
// the other way: the identity policy without the provenance header. Only then is MirrorBack
// needed.
func MayLoop(cfg *config.Config) bool {
	return cfg.Topics.ReplicationPolicy == config.PolicyIdentity && !cfg.Topics.ProvenanceHeader
}

// LoopError is MirrorBack's verdict that a kmirror copies target→source right now: with this
// flow beside it, every record would go round between the two clusters forever.
type LoopError struct {
	Source, Target string // the aliases of this flow's source and target
	Map            string // the reverse flow's offset-map topic on this flow's source
}

func (e *LoopError) Error() string {
	return fmt.Sprintf("a kmirror copies %s→%s right now (its offset map %s on the source was written in %s): with "+
		"replication_policy identity and no provenance header, this flow would copy its copies back, and every record would "+
		"go round between the two clusters forever", e.Target, e.Source, e.Map, reverseRecentText)
}

// MirrorBack looks for a mirror running the other way, target→source, beside a flow that MayLoop.
// Such a mirror keeps its offset map on its target, this flow's source, under the default name
// "__kmirror.offset-map.<target alias>"; a map written within reverseRecent says it runs, and the
// check fails with a *LoopError. sourceTopics are the source's topics; offsetAt returns the first
// offset of a partition written at or after a time in Unix milliseconds, -1 if none (sarama's
// Client.GetOffset). What this cannot see: a reverse mirror with offset_map.enabled false or
// another offset_map.topic, one idle for longer than reverseRecent, or another tool (MirrorMaker
// 2) mirroring back. validate --connect reports the check; run refuses to start on a *LoopError.
func MirrorBack(cfg *config.Config, sourceTopics map[string]sarama.TopicDetail, offsetAt func(topic string, partition int32, ms int64) (int64, error)) Check {
	c := Check{Cluster: "source", Name: MirrorBackCheck}
	reverse := config.OffsetMapPrefix + cfg.Target.Alias
	if _, ok := sourceTopics[reverse]; !ok {
		c.Detail = fmt.Sprintf("no %s on the source: no kmirror copies %s→%s", reverse, cfg.Target.Alias, cfg.Source.Alias)
		return c
	}
	at, err := offsetAt(reverse, 0, time.Now().Add(-reverseRecent).UnixMilli())
	if err != nil {
		c.Err, c.Retry = err, passing(err)
		c.Fix = fmt.Sprintf("grant Describe on topic %q, or check that no kmirror copies %s→%s", reverse, cfg.Target.Alias, cfg.Source.Alias)
		return c
	}
	if at < 0 {
		c.Detail = fmt.Sprintf("%s is on the source, not written in %s: a kmirror copied %s→%s before (a failback?); "+
			"if it runs again beside this one, both need topics.provenance_header: true", reverse, reverseRecentText, cfg.Target.Alias, cfg.Source.Alias)
		return c
	}
	c.Err = &LoopError{Source: cfg.Source.Alias, Target: cfg.Target.Alias, Map: reverse}
	c.Fix = "set topics.provenance_header: true on both flows (each then leaves out what came from the other), or " +
		"topics.replication_policy: prefix on both; or stop the other flow first"
	return c
}

// complete marks the session's checks as all answered.
func (s *session) complete() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

func checkTarget(s *session, cfg *config.Config) {
	defer s.complete()
	connect(s, cfg.Target)
	defer s.close()
	if s.admin == nil {
		return
	}
	s.doing("describe cluster")
	err := s.attempt(func() error { _, _, err := s.admin.DescribeCluster(); return err })
	s.add("describe cluster", err, "", "grant Describe on the cluster")
	if cfg.Topics.Create {
		s.doing("create topics (validate only)")
		err := s.attempt(func() error {
			return s.admin.CreateTopic("kmirror-preflight-check", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true)
		})
		if err != nil && strings.Contains(err.Error(), "replication factor") {
			err = nil // the request was authorized; only the validation of the settings refused it
		}
		s.add("create topics (validate only)", err, "nothing created", "grant Create on the topics (or the cluster), or set topics.create: false and create them yourself")
	}
	if cfg.OffsetMap.Enabled {
		topic := cfg.OffsetMapTopic()
		s.doing("offset-map topic")
		detail, err := s.topicOrCreate(topic)
		s.add("offset-map topic", err, topic+": "+detail,
			fmt.Sprintf("grant Create, Describe, Read and Write on topic %q (or create it: compacted, one partition), or set offset_map.enabled: false", topic))
	}
	s.doing("idempotent write")
	detail := ""
	err = s.attempt(func() error {
		pid, err := s.client.InitProducerID()
		if err == nil {
			detail = fmt.Sprintf("producer id %d", pid.ProducerID)
			if pid.Err != sarama.ErrNoError {
				err = pid.Err
			}
		}
		return err
	})
	s.add("idempotent write", err, detail, "grant IdempotentWrite on the cluster and Write on the topics")
	if cfg.Delivery.Mode == config.ExactlyOnce {
		checkTransactions(s, cfg)
	}
}

// checkPositionTopics checks that kmirror may read the mirrored topics on the target: each
// transaction commits the source positions under the target topic's name (TxnOffsetCommit),
// which Kafka allows only with Read on the topic. It fetches from partition 0 of up to five
// target topics that exist and match topics.include (named by the replication policy); a
// topic not created yet cannot be checked.
func checkPositionTopics(s *session, cfg *config.Config) {
	const name = "read target topics (positions)"
	s.doing(name)
	filter, err := topics.NewFilter(cfg.Topics.Include, cfg.Topics.Exclude)
	if err != nil {
		s.add(name, err, "", "fix topics.include / topics.exclude")
		return
	}
	var targets []string
	err = s.attempt(func() error {
		all, err := s.admin.ListTopics()
		if err != nil {
			return err
		}
		prefix := ""
		if cfg.Topics.ReplicationPolicy == config.PolicyPrefix {
			prefix = cfg.Source.Alias + "."
		}
		for _, t := range slices.Sorted(maps.Keys(all)) {
			if src, ok := strings.CutPrefix(t, prefix); ok && !topics.IsInternal(t) && filter.Match(src) && len(targets) < 5 {
				targets = append(targets, t)
			}
		}
		for _, t := range targets {
			leader, err := s.client.Leader(t, 0)
			if err != nil {
				return err
			}
			req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 0, MinBytes: 0, MaxBytes: 1, Isolation: sarama.ReadCommitted}
			req.AddBlock(t, 0, 0, 1, -1)
			resp, err := leader.Fetch(req)
			if err != nil {
				return err
			}
			if b := resp.GetBlock(t, 0); b != nil && errors.Is(b.Err, sarama.ErrTopicAuthorizationFailed) {
				return fmt.Errorf("topic %q: %w", t, b.Err)
			}
		}
		return nil
	})
	detail := fmt.Sprintf("%d existing target topics readable", len(targets))
	if len(targets) == 0 && err == nil {
		detail = "no target topic exists yet: nothing to check"
	}
	s.add(name, err, detail, "grant Read on the target topics: each transaction commits the source positions under the target "+
		"topic's name (TxnOffsetCommit), which needs Read on the topic")
}

// checkTransactions checks what exactly-once delivery needs of the target: transactional ids
// under the prefix, and the group that holds the source positions. The probe initialises an id
// of its own ("<prefix>-validate"), never a slot's: that would fence a running member.
func checkTransactions(s *session, cfg *config.Config) {
	prefix := cfg.Delivery.TransactionalPrefix(cfg.Consumer.GroupID, cfg.Source.Alias)
	id := prefix + "-validate"
	s.doing("transactional write")
	detail := ""
	err := s.attempt(func() error {
		coord, err := s.client.TransactionCoordinator(id)
		if err != nil {
			return err
		}
		resp, err := coord.InitProducerID(&sarama.InitProducerIDRequest{
			Version: 1, TransactionalID: &id, TransactionTimeout: time.Minute,
		})
		if err != nil {
			return err
		}
		if resp.Err != sarama.ErrNoError {
			return resp.Err
		}
		detail = fmt.Sprintf("transactional id %q initialised (producer id %d)", id, resp.ProducerID)
		return nil
	})
	s.add("transactional write", err, detail, fmt.Sprintf("grant Write and Describe on transactional ids with the prefix %q "+
		"(a PREFIXED ACL), IdempotentWrite on the cluster, and Write on the target topics", prefix))
	checkPositionTopics(s, cfg)

	group := cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias)
	s.doing("positions group")
	detail = group
	err = s.attempt(func() error {
		resp, err := s.admin.ListConsumerGroupOffsets(group, nil)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, sarama.ErrNoError) {
			s.mu.Lock()
			s.positions = storedPositions(resp)
			s.mu.Unlock()
		}
		if errors.Is(err, sarama.ErrGroupIDNotFound) {
			detail, err = group+": no positions yet", nil
			s.mu.Lock()
			s.positions = map[string]string{}
			s.mu.Unlock()
		}
		if errors.Is(err, sarama.ErrNoError) {
			err = nil
		}
		return err
	})
	s.add("positions group", err, detail, fmt.Sprintf("grant Read and Describe on group %q on the target", group))
}
